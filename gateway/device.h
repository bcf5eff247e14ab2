/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The devices the gateway has heard from, as its D-Bus API shows them (org.blegate.Device1):
 * one Device per device id, created by the first reading of that id and updated by every later
 * reading and every anomaly event. The manager keeps one DeviceRegistry and feeds it from the
 * pipeline; the bus glue (device-bus.c) only reads it.
 *
 * The registry is bounded: once it holds `max` devices, readings of a new id are still scored
 * and stored by the rest of the pipeline, but that id gets no Device, and each such reading is
 * counted in `untracked`, so a flood of forged ids costs neither unbounded memory nor a bus
 * object each. Devices are never removed while the daemon runs; the BLE source will remove the
 * ones it forgets.
 *
 * Kind: until the BLE source sets it from the profile a device speaks, the kind comes from the
 * type its readings carry: a type that names a kind ("ruuvi", "sensortag", "thingy52",
 * "phone") gives that kind, any other type gives "replay", since a recording replayed is the
 * only source of readings without a profile.
 *
 * Nothing here logs or touches the bus: every function returns a negative errno or a count,
 * and `changed` tells the owner which properties to publish.
 */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "detector.h"
#include "idmap.h"
#include "macro.h"
#include "reading.h"

/* The daemon's bound: far more sensors than one BLE adapter can follow at once. */
#define DEVICES_MAX 1024U

/* The HCI value for "RSSI not available" (Bluetooth Core, HCI LE Advertising Report): a real
 * RSSI is at most +20 dBm. Readings that did not come over the air (replay) have this. */
#define DEVICE_RSSI_UNKNOWN 127

/* "AA:BB:CC:DD:EE:FF" */
#define DEVICE_ADDRESS_MAX 17

typedef enum DeviceKind {
        DEVICE_KIND_RUUVI,
        DEVICE_KIND_SENSORTAG,
        DEVICE_KIND_THINGY52,
        DEVICE_KIND_PHONE,
        DEVICE_KIND_REPLAY,
        _DEVICE_KIND_MAX,
        _DEVICE_KIND_INVALID = -EINVAL,
} DeviceKind;

/* Which properties changed since the owner last published them; the owner clears the bits. */
typedef enum DeviceChange {
        DEVICE_CHANGED_SEEN = 1 << 0,      /* LastSeenUsec, ReadingsReceived */
        DEVICE_CHANGED_ANOMALIES = 1 << 1, /* AnomaliesDetected */
        DEVICE_CHANGED_CHANNELS = 1 << 2,  /* Channels */
        DEVICE_CHANGED_TYPE = 1 << 3,      /* Type, Kind */
        DEVICE_CHANGED_RADIO = 1 << 4,     /* Address, RSSI, Name, Connected */
} DeviceChange;

typedef struct Device {
        char id[DEVICE_ID_MAX + 1];
        char type[DEVICE_ID_MAX + 1];          /* as the latest reading gave it */
        DeviceKind kind;
        char address[DEVICE_ADDRESS_MAX + 1];  /* "" when unknown (replay) */
        char *name;                            /* NULL when unknown (replay) */
        int16_t rssi;                          /* dBm, or DEVICE_RSSI_UNKNOWN */
        bool connected;                        /* a BLE link is open; never for a replay */
        uint64_t last_seen_usec;               /* wall clock of the latest reading's arrival */
        uint64_t readings_received;
        uint64_t anomalies_detected;           /* anomaly events */
        uint32_t channels;                     /* CHANNEL_BIT()s of every channel seen */
        unsigned changed;                      /* DeviceChange bits */
} Device;

typedef struct DeviceRegistry {
        IdMap *devices;
        size_t max;
        uint64_t untracked;                    /* readings of ids refused for lack of room */
} DeviceRegistry;

const char *device_kind_to_string(DeviceKind k);
DeviceKind device_kind_from_string(const char *s);
/* The kind a reading's type implies; see the top of this file. */
DeviceKind device_kind_from_type(const char *type);

/* max: 1 or more. */
int device_registry_new(size_t max, DeviceRegistry **ret);
DeviceRegistry *device_registry_free(DeviceRegistry *reg);
DEFINE_TRIVIAL_CLEANUP_FUNC(DeviceRegistry *, device_registry_free);

/* NULL when id is unknown (or not a device id at all). */
Device *device_registry_get(const DeviceRegistry *reg, const char *id);
size_t device_registry_size(const DeviceRegistry *reg);

/* Counts a reading that arrived at now_usec (wall clock). Returns 1 when its device is new, 0
 * when it was known (*ret is set in both cases if ret is not NULL), -ENOSPC when the device is
 * new and the registry full (the reading is counted in untracked), -EINVAL for a reading
 * without a valid device id, -ENOMEM. */
int device_registry_add_reading(DeviceRegistry *reg, const Reading *r, uint64_t now_usec, Device **ret);
/* Counts an anomaly event for its device: 1 and *ret (if not NULL), or 0 when the device is not
 * tracked. */
int device_registry_add_anomaly(DeviceRegistry *reg, const AnomalyEvent *e, Device **ret);
/* What the radio says of a device heard over the air: its address, RSSI and name (NULL: none
 * known). Marks DEVICE_CHANGED_RADIO when any of them differs. 0, or -ENOMEM (then the name is
 * left as it was). */
int device_set_radio(Device *d, const char *address, int16_t rssi, const char *name);
/* Whether a BLE link to it is up; marks DEVICE_CHANGED_RADIO when that changes. */
void device_set_connected(Device *d, bool connected);

/* Every device, sorted by id, in a malloc'd array of borrowed pointers (free only the array).
 * Returns how many, or -ENOMEM; with 0 devices *ret is NULL. */
int device_registry_list(const DeviceRegistry *reg, Device ***ret);
