/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Passive scanning through BlueZ's AdvertisementMonitorManager1 (experimental, BlueZ >= 5.56):
 * one BleMonitor per adapter exports an ObjectManager at a root path of ours with one
 * org.bluez.AdvertisementMonitor1 object ("or_patterns") below it, and registers that root with
 * the adapter's manager. Once BlueZ calls Activate(), adverts matching any pattern update the
 * Device1 properties as discovery does, without active scanning and without a discovery
 * session. Where the manager is missing (bluetoothd without -E, BlueZ 5.55's older API, no LE)
 * or refuses, the callback says so and the caller falls back to StartDiscovery.
 *
 * Library-like: nothing here logs. Freeing the BleMonitor unregisters it (fire and forget),
 * removes its objects and cancels its call and timer; freeing it from within its own callback
 * is allowed.
 */

#include <stdint.h>
#include <systemd/sd-bus.h>

#include "macro.h"

/* The limits of BlueZ (src/shared/ad.c) and the kernel: more than 16 patterns in one monitor
 * would not fail RegisterMonitor but end in Release() once the kernel refuses them. */
#define BLE_MONITOR_PATTERNS_MAX 16U
#define BLE_MONITOR_PATTERN_SIZE_MAX 31U

typedef struct BleMonitor BleMonitor;

typedef struct BleMonitorPattern {
        uint8_t start;           /* offset within the AD structure's data */
        uint8_t ad_type;         /* 0xFF manufacturer specific, 0x07 complete 128-bit UUIDs, ... */
        uint8_t size;            /* 1..31, and start + size <= 31 */
        uint8_t content[BLE_MONITOR_PATTERN_SIZE_MAX];
} BleMonitorPattern;

typedef enum BleMonitorState {
        BLE_MONITOR_ACTIVE,      /* BlueZ called Activate(): passive scanning runs */
        BLE_MONITOR_UNSUPPORTED, /* the adapter has no usable AdvertisementMonitorManager1: use discovery */
        BLE_MONITOR_FAILED,      /* registration failed otherwise (error, message): use discovery */
        BLE_MONITOR_RELEASED,    /* BlueZ released it (Release()): use discovery until registered again */
        _BLE_MONITOR_STATE_MAX,
} BleMonitorState;

/* Called from the event loop. ACTIVE comes at most once, and first if at all; UNSUPPORTED,
 * FAILED and RELEASED are final: nothing follows them, and BlueZ has been told to forget the
 * registration. FAILED may follow ACTIVE (RegisterMonitor answered an error after Activate()).
 * error: negative errno or 0; message: BlueZ's error name and text, or what went wrong, or NULL.
 * The callback may free the monitor. */
typedef void (*BleMonitorCallback)(BleMonitor *mon, BleMonitorState state, int error, const char *message,
                                   void *userdata);

/* Exports root (e.g. "/org/blegate/monitor/hci0", not "/") with one or_patterns monitor holding
 * patterns (1..BLE_MONITOR_PATTERNS_MAX), then registers it with adapter_path's manager
 * asynchronously. bus must be attached to an sd-event loop. -EINVAL for bad paths or patterns,
 * -EEXIST when root already has a monitor on this bus. */
int ble_monitor_new(sd_bus *bus, sd_event *event, const char *adapter_path, const char *root, const BleMonitorPattern *patterns,
                    size_t n_patterns, BleMonitorCallback cb, void *userdata, BleMonitor **ret);
/* Unregisters (fire and forget, when BlueZ may hold the registration), removes the objects,
 * cancels the pending call and the timer. */
BleMonitor *ble_monitor_free(BleMonitor *mon);
DEFINE_TRIVIAL_CLEANUP_FUNC(BleMonitor *, ble_monitor_free);

const char *ble_monitor_state_to_string(BleMonitorState state);

/* Manufacturer specific data of a company (AD type 0xFF, start 0, the company id little-endian
 * as on the air: 0x0499, Ruuvi, is 99 04). */
void ble_monitor_pattern_company(uint16_t company_id, BleMonitorPattern *ret);
/* A complete list of 128-bit service UUIDs (AD type 0x07) starting with uuid
 * ("6e400001-b5a3-f393-e0a9-e50e24dcca9e", either case): start 0, the 16 bytes little-endian as
 * on the air. It matches only when uuid is the list's first entry; a device advertising an
 * incomplete list needs the same pattern with ad_type 0x06. -EINVAL on a malformed uuid. */
int ble_monitor_pattern_uuid128(const char *uuid, BleMonitorPattern *ret);
