/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The BlueZ client: adapters, scanning, passive Ruuvi adverts and the GATT links of streaming
 * sensors, on a bus connection the caller owns (the manager's system bus). It follows org.bluez's
 * ObjectManager (one GetManagedObjects, then InterfacesAdded/InterfacesRemoved/PropertiesChanged)
 * and keeps each selected adapter scanning: passively through an AdvertisementMonitor when
 * BlueZ offers one and PassiveScan= allows, else with SetDiscoveryFilter {Transport=le,
 * DuplicateData=true} + StartDiscovery. Every advert carrying manufacturer data 0x0499 becomes
 * a Reading through profile_ruuvi_decode(); every device advertising a GATT profile's service
 * (SensorTag, Thingy:52, phone) gets a Link (link.h), at most MaxConnections= per adapter
 * streaming at once, the others queued in the order they asked.
 *
 * Self-healing: bluetoothd leaving the bus and coming back (NameOwnerChanged), adapters removed
 * and re-added, powered off and on, discovery that stops by itself or goes quiet for
 * StallTimeout= (restarted, then the adapter power-cycled): each re-sends the filter and
 * StartDiscovery, with a delay that doubles on repeated failure so an adapter that keeps
 * refusing costs nothing, and links come back with their own backoff. Every step goes to
 * on_event() once, for the caller to log, and is counted. BlueZ absent at start is not an
 * error: the client waits for the name.
 *
 * Devices are keyed by their address, not by object path (BlueZ drops and re-creates paths of
 * temporary devices), and their sequence state outlives BlueZ restarts and adapter removal, so
 * the same measurement heard again after a restart is still recognised (sequence.h). Allow= and
 * Deny= select devices by address or kind; anything else is ignored before any state is kept.
 *
 * Library-like: nothing here logs. Freeing the Ble cancels its matches, calls and timers, and
 * disconnects the links it made.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "profile.h"
#include "reading.h"

/* Far more tags than one adapter hears; adverts of further devices are counted, not read. */
#define BLE_DEVICES_MAX 1024U

typedef struct Ble Ble;

typedef enum BleEvent {
        BLE_BLUEZ_MISSING,       /* org.bluez is not on the bus (at start): waiting for it */
        BLE_BLUEZ_APPEARED,      /* org.bluez is on the bus (the first time): enumerating its objects */
        BLE_BLUEZ_RETURNED,      /* bluetoothd is back after leaving: enumerating again */
        BLE_BLUEZ_VANISHED,      /* bluetoothd left the bus: its state dropped, waiting for it */
        BLE_ENUMERATE_FAILED,    /* GetManagedObjects failed (error): retried after a delay */
        BLE_ADAPTER_FOUND,       /* a selected adapter, in BlueZ's objects when they were read */
        BLE_ADAPTER_ADDED,       /* a selected adapter appeared later (plugged in, re-added) */
        BLE_ADAPTER_REMOVED,
        BLE_ADAPTER_POWERED_OFF, /* BlueZ dropped our filter and discovery with it */
        BLE_ADAPTER_POWERED_ON,  /* filter and discovery re-sent */
        BLE_DISCOVERY_STARTED,
        BLE_DISCOVERY_STOPPED,   /* Discovering went false without us: restarting it shortly */
        BLE_DISCOVERY_FAILED,    /* SetDiscoveryFilter or StartDiscovery failed (error, message): retried */
        BLE_DISCOVERY_STALLED,   /* discovering, but nothing heard for StallTimeout=: restarting it */
        BLE_ADAPTER_POWER_CYCLE, /* restarting discovery did not help: powering the adapter off and on */
        BLE_ADAPTER_POWER_ON,    /* PowerOn=: a selected adapter found off is powered on */
        BLE_PASSIVE_SCANNING,    /* passive scanning through an advertisement monitor */
        BLE_PASSIVE_UNAVAILABLE, /* no usable monitor (message): discovery instead */
        BLE_LINK_STREAMING,      /* a link is set up (object: address, kind, device) */
        BLE_LINK_QUEUED,         /* a link waits for a free slot on its adapter */
        BLE_LINK_LOST,           /* the link dropped: reconnecting after retry_usec */
        BLE_LINK_CONNECT_FAILED, /* Connect failed (error, message): retried after retry_usec */
        BLE_LINK_SETUP_FAILED,   /* a GATT setup step failed (error, message): retried after retry_usec */
        BLE_LINK_REFUSED,        /* not usable as its profile says (message): retried after retry_usec */
        BLE_LINK_LATE_CONNECTION, /* a Connect that timed out completed later: disconnected, the link
                                   * queues as before */
        _BLE_EVENT_MAX,
} BleEvent;

/* What the caller may show about the device a reading came from. */
typedef struct BleDeviceInfo {
        const char *address;     /* "AA:BB:CC:DD:EE:FF" */
        int16_t rssi;            /* dBm; BLE_RSSI_UNKNOWN when BlueZ gave none */
        const char *name;        /* as advertised (Device1.Name), NULL when none */
        const char *kind;        /* the profile's name: "ruuvi" */
        bool connected;          /* it came over a GATT link */
} BleDeviceInfo;

/* What happened, for the caller to log. */
typedef struct BleEventInfo {
        BleEvent event;
        const char *object;      /* the adapter's name ("hci0"); for link events the device's address; or NULL */
        int error;               /* negative errno or 0 */
        const char *message;     /* BlueZ's error name and text, or what failed; or NULL */
        const char *kind;        /* link events: the device's profile */
        const char *device;      /* link events: the device id its readings carry */
        uint64_t retry_usec;     /* link events: when it tries again; 0: it does not */
} BleEventInfo;

typedef struct BleConfig {
        const char *adapters;        /* adapter names, space-separated; NULL or "": all */
        const char *allow;           /* addresses and kinds, space-separated; NULL: all */
        const char *deny;            /* the same; NULL: none */
        unsigned max_connections;    /* GATT links per adapter, >= 1 */
        bool power_on;               /* power on a selected adapter found off */
        bool passive;                /* use advertisement monitors where offered */
        uint64_t stall_timeout_usec; /* 0: off */
        ProfileSettings settings;    /* what the links write to the sensors */
} BleConfig;

#define BLE_RSSI_UNKNOWN 127
/* Longer names are not kept: cutting one could split a UTF-8 character. */
#define BLE_NAME_MAX 64

typedef struct BleCallbacks {
        void (*on_reading)(const Reading *r, const BleDeviceInfo *info, void *userdata);
        void (*on_event)(const BleEventInfo *e, void *userdata);
} BleCallbacks;

typedef struct BleStats {
        uint64_t adverts;        /* Ruuvi adverts turned into readings */
        uint64_t duplicates;     /* the same measurement heard again, dropped */
        uint64_t skipped;        /* Ruuvi formats without motion data, skipped */
        uint64_t malformed;      /* manufacturer data 0x0499 that did not decode */
        uint64_t untracked;      /* adverts of devices beyond BLE_DEVICES_MAX */
        uint64_t recoveries;     /* recovery steps: re-enumerations, filters and discoveries re-sent, reconnections */
        uint64_t notifications;  /* GATT values decoded */
        uint64_t notify_malformed; /* GATT values the decoder refused */
        unsigned links;          /* links streaming now */
} BleStats;

/* bus must be driven by event, where the retry timers live too. Starts asynchronously: the
 * first callbacks come from the loop. */
int ble_new(sd_bus *bus, sd_event *event, const BleConfig *config, const BleCallbacks *cb, void *userdata, Ble **ret);
Ble *ble_free(Ble *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(Ble *, ble_free);

void ble_get_stats(const Ble *b, BleStats *ret);

/* "AA:BB:CC:DD:EE:FF", hex digits in any case. */
bool ble_address_is_valid(const char *s);
