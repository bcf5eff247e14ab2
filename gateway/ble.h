/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The BlueZ client: adapters, discovery and passive Ruuvi adverts, on a bus connection the
 * caller owns (the manager's system bus). It follows org.bluez's ObjectManager (one
 * GetManagedObjects, then InterfacesAdded/InterfacesRemoved/PropertiesChanged), keeps each
 * selected adapter powered-on-and-discovering with SetDiscoveryFilter {Transport=le,
 * DuplicateData=true} + StartDiscovery, and turns every advert carrying manufacturer data
 * 0x0499 into a Reading through profile_ruuvi_decode().
 *
 * Self-healing: bluetoothd leaving the bus and coming back (NameOwnerChanged), adapters removed
 * and re-added, powered off and on, discovery that stops by itself: each re-sends the filter and
 * StartDiscovery, with a delay that doubles on repeated failure so an adapter that keeps
 * refusing costs nothing. Every step goes to on_event() once, for the caller to log, and is
 * counted. BlueZ absent at start is not an error: the client waits for the name.
 *
 * Devices are keyed by their address, not by object path (BlueZ drops and re-creates paths of
 * temporary devices), and their sequence state outlives BlueZ restarts and adapter removal, so
 * the same measurement heard again after a restart is still recognised. A reading's seq is the
 * Ruuvi measurement sequence unwrapped into an increasing 64-bit number, starting at the
 * receipt time in µs the first time a device is heard in this process, so that it also stays
 * above what an earlier run stored (the store skips a seq that is not above the last). The
 * same measurement heard twice in a row (DuplicateData) is dropped here and counted.
 *
 * Library-like: nothing here logs. Freeing the Ble cancels its matches, calls and timers.
 */

#include <stdint.h>
#include <systemd/sd-bus.h>

#include "macro.h"
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
        _BLE_EVENT_MAX,
} BleEvent;

/* What the caller may show about the device a reading came from. */
typedef struct BleDeviceInfo {
        const char *address;     /* "AA:BB:CC:DD:EE:FF" */
        int16_t rssi;            /* dBm; BLE_RSSI_UNKNOWN when BlueZ gave none */
        const char *name;        /* as advertised (Device1.Name), NULL when none */
        const char *kind;        /* the profile's name: "ruuvi" */
} BleDeviceInfo;

#define BLE_RSSI_UNKNOWN 127
/* Longer names are not kept: cutting one could split a UTF-8 character. */
#define BLE_NAME_MAX 64

typedef struct BleCallbacks {
        void (*on_reading)(const Reading *r, const BleDeviceInfo *info, void *userdata);
        /* object: the adapter's name ("hci0") or NULL; error: negative errno or 0; message: BlueZ's
         * error name and text, or NULL. */
        void (*on_event)(BleEvent event, const char *object, int error, const char *message, void *userdata);
} BleCallbacks;

typedef struct BleStats {
        uint64_t adverts;        /* Ruuvi adverts turned into readings */
        uint64_t duplicates;     /* the same measurement heard again, dropped */
        uint64_t skipped;        /* Ruuvi formats without motion data, skipped */
        uint64_t malformed;      /* manufacturer data 0x0499 that did not decode */
        uint64_t untracked;      /* adverts of devices beyond BLE_DEVICES_MAX */
        uint64_t recoveries;     /* recovery steps: re-enumerations, filters and discoveries re-sent */
} BleStats;

/* adapters: space-separated adapter names to use, NULL or "" for all. bus must be attached to
 * an sd-event loop (the retry timers live there). Starts asynchronously: the first callbacks
 * come from the loop. */
int ble_new(sd_bus *bus, const char *adapters, const BleCallbacks *cb, void *userdata, Ble **ret);
Ble *ble_free(Ble *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(Ble *, ble_free);

void ble_get_stats(const Ble *b, BleStats *ret);
