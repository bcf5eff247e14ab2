/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The advertisement monitor (see ble-monitor.h). The order of things follows what bluetoothd
 * does with a registration (src/adv_monitor.c, 5.66): RegisterMonitor makes it read our root with
 * GetManagedObjects; it replies only once that read is done, and calls Activate() once the kernel
 * took the patterns. Activate() therefore usually comes after the reply, but comes before it when
 * another client already registered identical patterns (BlueZ merges them), and Release() comes
 * before it when BlueZ finds our monitor invalid. So either call may arrive while RegisterMonitor
 * is pending, and we learn bluetoothd's unique name first (GetNameOwner), send RegisterMonitor to
 * that name, and accept calls from that name only: nobody else can activate or release us.
 *
 * No RSSI properties are exported. With all of them absent bluetoothd adds the monitor without
 * RSSI parameters (MGMT_OP_ADD_ADV_PATTERNS_MONITOR), for which the kernel takes its least
 * constraining defaults, sampling period 0: every matching advert is delivered. Setting only
 * RSSISamplingPeriod=0 would make bluetoothd fill in the thresholds and timeouts itself.
 *
 * Every final report (UNSUPPORTED, FAILED, RELEASED) drops the pending call and the timer and
 * sends UnregisterMonitor when BlueZ may still hold the registration, so BlueZ never keeps a
 * monitor for a caller who has gone back to discovery. The callback is always the last thing a
 * handler does, so the caller may free the monitor from it.
 */

#include <ctype.h>
#include <stdio.h>
#include <systemd/sd-event.h>

#include "ble-monitor.h"
#include "bus-properties.h"

#define BLUEZ_NAME "org.bluez"
#define BLUEZ_MONITOR_MANAGER "org.bluez.AdvertisementMonitorManager1"
#define BLUEZ_MONITOR "org.bluez.AdvertisementMonitor1"
#define BLUEZ_ERROR_NOT_SUPPORTED "org.bluez.Error.NotSupported"

#define BLE_MONITOR_CALL_TIMEOUT_USEC (UINT64_C(10) * 1000 * 1000)
/* From ble_monitor_new() to Activate(): bluetoothd activates as soon as the kernel answers, in
 * milliseconds. Without this a monitor that BlueZ neither activates nor releases would leave the
 * adapter without any scanning. */
#define BLE_MONITOR_ACTIVATE_USEC (UINT64_C(20) * 1000 * 1000)

/* AD types bluetoothd accepts in a pattern (src/shared/ad.c, ad_is_type_valid()). */
#define AD_TYPE_FLAGS 0x01
#define AD_TYPE_LAST 0x3d
#define AD_TYPE_MANUFACTURER_DATA 0xff
#define AD_TYPE_UUID128_ALL 0x07

struct BleMonitor {
        sd_bus *bus;
        sd_event *event;
        BleMonitorCallback cb;
        void *userdata;

        char *adapter_path;
        char *root;
        char *path;                        /* the monitor object: "<root>/0" */
        BleMonitorPattern *patterns;
        size_t n_patterns;

        char *bluez;                       /* bluetoothd's unique name; NULL until GetNameOwner answers */
        sd_bus_slot *object_manager, *object;
        sd_bus_slot *call;                 /* GetNameOwner or RegisterMonitor */
        sd_event_source *timeout;
        bool registered;                   /* BlueZ may hold our registration: unregister when done */
        bool active;                       /* ACTIVE was reported */
        bool done;                         /* a final state was reported: ignore BlueZ from now on */
};

static const char *const state_table[_BLE_MONITOR_STATE_MAX] = {
        [BLE_MONITOR_ACTIVE] = "active",
        [BLE_MONITOR_UNSUPPORTED] = "unsupported",
        [BLE_MONITOR_FAILED] = "failed",
        [BLE_MONITOR_RELEASED] = "released",
};

const char *ble_monitor_state_to_string(BleMonitorState state) {
        if ((unsigned) state >= ELEMENTSOF(state_table))
                return NULL;
        return state_table[state];
}

static void monitor_unregister(BleMonitor *mon) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        int k;

        if (!mon->registered)
                return;
        mon->registered = false;

        /* Nobody waits for the answer: a registration BlueZ no longer has (DoesNotExist) is the
         * outcome we want anyway. */
        k = sd_bus_message_new_method_call(mon->bus, &msg, mon->bluez, mon->adapter_path, BLUEZ_MONITOR_MANAGER,
                                           "UnregisterMonitor");
        if (k >= 0)
                k = sd_bus_message_append(msg, "o", mon->root);
        if (k >= 0)
                k = sd_bus_message_set_expect_reply(msg, 0);
        if (k >= 0)
                (void) sd_bus_send(mon->bus, msg, NULL);
}

/* Reports a final state. The callback comes last: it may free mon. */
static void monitor_finish(BleMonitor *mon, BleMonitorState state, int error, const char *message) {
        mon->done = true;
        mon->call = sd_bus_slot_unref(mon->call);
        mon->timeout = sd_event_source_disable_unref(mon->timeout);
        monitor_unregister(mon);
        mon->cb(mon, state, error, message, mon->userdata);
}

static void monitor_finish_error(BleMonitor *mon, BleMonitorState state, const sd_bus_error *e, int error) {
        char message[256];

        monitor_finish(mon, state, error, bus_error_format(NULL, e, message, sizeof(message)));
}

/* The absence of the manager, in the shapes it takes: no such method or interface on the adapter
 * (bluetoothd without -E, an adapter without LE, BlueZ 5.55 whose manager answers differently),
 * no such object, or BlueZ saying so. */
static bool error_means_unsupported(const sd_bus_error *e) {
        return sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_METHOD) ||
                sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_INTERFACE) ||
                sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT) ||
                sd_bus_error_has_name(e, BLUEZ_ERROR_NOT_SUPPORTED);
}

static int on_register_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        BleMonitor *mon = userdata;

        mon->call = sd_bus_slot_unref(mon->call);
        if (!e)
                /* Registered: Activate() or Release() comes (or came) on its own; the timer covers
                 * neither coming. */
                return 0;

        /* A timeout leaves it open whether BlueZ registered us; any error BlueZ sent means it
         * did not. */
        if (!sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY))
                mon->registered = false;
        monitor_finish_error(mon, error_means_unsupported(e) ? BLE_MONITOR_UNSUPPORTED : BLE_MONITOR_FAILED, e,
                             -sd_bus_message_get_errno(reply));
        return 0;
}

static int on_name_owner_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        BleMonitor *mon = userdata;
        const char *owner;
        int k;

        mon->call = sd_bus_slot_unref(mon->call);
        if (e) {
                /* NameHasNoOwner: bluetoothd is not running, there is nothing to register with. */
                monitor_finish_error(mon, BLE_MONITOR_FAILED, e, -sd_bus_message_get_errno(reply));
                return 0;
        }

        k = sd_bus_message_read(reply, "s", &owner);
        if (k < 0) {
                monitor_finish(mon, BLE_MONITOR_FAILED, k, "cannot read the owner of " BLUEZ_NAME);
                return 0;
        }
        mon->bluez = strdup(owner);
        if (!mon->bluez) {
                monitor_finish(mon, BLE_MONITOR_FAILED, -ENOMEM, "cannot send RegisterMonitor");
                return 0;
        }

        /* To the unique name: if bluetoothd restarted since GetNameOwner, this fails rather than
         * registering with a process whose calls we would refuse. */
        k = sd_bus_message_new_method_call(mon->bus, &msg, mon->bluez, mon->adapter_path, BLUEZ_MONITOR_MANAGER,
                                           "RegisterMonitor");
        if (k >= 0)
                k = sd_bus_message_append(msg, "o", mon->root);
        if (k >= 0)
                k = sd_bus_call_async(mon->bus, &mon->call, msg, on_register_reply, mon,
                                      BLE_MONITOR_CALL_TIMEOUT_USEC);
        if (k < 0) {
                monitor_finish(mon, BLE_MONITOR_FAILED, k, "cannot send RegisterMonitor");
                return 0;
        }
        mon->registered = true;
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        BleMonitor *mon = userdata;

        monitor_finish(mon, BLE_MONITOR_FAILED, -ETIMEDOUT, "BlueZ did not activate the monitor in time");
        return 0;
}

/* 1 when msg comes from the bluetoothd we registered with, 0 when BlueZ's call is stale (a final
 * state was reported), or a negative errno with ret_error set for a caller who is not BlueZ. */
static int monitor_check_sender(BleMonitor *mon, sd_bus_message *msg, sd_bus_error *ret_error) {
        if (!mon->bluez || !streq_ptr(sd_bus_message_get_sender(msg), mon->bluez))
                return sd_bus_error_set(ret_error, SD_BUS_ERROR_ACCESS_DENIED,
                                        "Only BlueZ may call an advertisement monitor.");
        return !mon->done;
}

static int method_activate(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        BleMonitor *mon = userdata;
        int k;

        k = monitor_check_sender(mon, msg, ret_error);
        if (k < 0)
                return k;
        /* Replied first: the callback may free mon. BlueZ sends these without expecting a reply,
         * in which case sd-bus sends none. */
        (void) sd_bus_reply_method_return(msg, NULL);
        if (k == 0 || mon->active)
                return 1;

        mon->active = true;
        /* RegisterMonitor may still be pending (see the top): its reply is still wanted, an error
         * there ends the monitor. */
        mon->timeout = sd_event_source_disable_unref(mon->timeout);
        mon->cb(mon, BLE_MONITOR_ACTIVE, 0, NULL, mon->userdata);
        return 1;
}

static int method_release(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        BleMonitor *mon = userdata;
        int k;

        k = monitor_check_sender(mon, msg, ret_error);
        if (k < 0)
                return k;
        (void) sd_bus_reply_method_return(msg, NULL);
        if (k == 0)
                return 1;

        /* BlueZ drops the monitor but may keep our (now empty) registration, e.g. when the kernel
         * refused the patterns: monitor_finish() unregisters. */
        monitor_finish(mon, BLE_MONITOR_RELEASED, 0, NULL);
        return 1;
}

/* DeviceFound/DeviceLost: the data itself arrives as Device1 PropertiesChanged, which the BlueZ
 * client follows anyway; these only tell which device matched. */
static int method_device(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        BleMonitor *mon = userdata;
        int k;

        k = monitor_check_sender(mon, msg, ret_error);
        if (k < 0)
                return k;
        return sd_bus_reply_method_return(msg, NULL);
}

static int property_get_type(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        return sd_bus_message_append(reply, "s", "or_patterns");
}

static int property_get_patterns(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        BleMonitor *mon = userdata;
        int k;

        k = sd_bus_message_open_container(reply, 'a', "(yyay)");
        for (size_t i = 0; k >= 0 && i < mon->n_patterns; i++) {
                const BleMonitorPattern *p = &mon->patterns[i];

                k = sd_bus_message_open_container(reply, 'r', "yyay");
                if (k >= 0)
                        k = sd_bus_message_append(reply, "yy", p->start, p->ad_type);
                if (k >= 0)
                        k = sd_bus_message_append_array(reply, 'y', p->content, p->size);
                if (k >= 0)
                        k = sd_bus_message_close_container(reply);
        }
        if (k < 0)
                return k;
        return sd_bus_message_close_container(reply);
}

/* Methods are UNPRIVILEGED: sd-bus would otherwise demand CAP_SYS_ADMIN of the caller on the
 * system bus, which bluetoothd (CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE) lacks.
 * monitor_check_sender() is the access check instead. */
static const sd_bus_vtable monitor_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Type", "s", property_get_type, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Patterns", "a(yyay)", property_get_patterns, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD("Release", NULL, NULL, method_release, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Activate", NULL, NULL, method_activate, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("DeviceFound", "o", NULL, method_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("DeviceLost", "o", NULL, method_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

/* What bluetoothd accepts (bt_ad_pattern_new()): anything else would be Released at once. */
static bool pattern_is_valid(const BleMonitorPattern *p) {
        if (p->size < 1 || p->size > BLE_MONITOR_PATTERN_SIZE_MAX)
                return false;
        if ((unsigned) p->start + p->size > BLE_MONITOR_PATTERN_SIZE_MAX)
                return false;
        return (p->ad_type >= AD_TYPE_FLAGS && p->ad_type <= AD_TYPE_LAST) ||
                p->ad_type == AD_TYPE_MANUFACTURER_DATA;
}

int ble_monitor_new(sd_bus *bus, sd_event *event, const char *adapter_path, const char *root, const BleMonitorPattern *patterns,
                    size_t n_patterns, BleMonitorCallback cb, void *userdata, BleMonitor **ret) {
        _cleanup_(ble_monitor_freep) BleMonitor *mon = NULL;
        int k;

        assert(bus);
        assert(cb);
        assert(ret);

        if (!adapter_path || !sd_bus_object_path_is_valid(adapter_path) ||
            !root || !sd_bus_object_path_is_valid(root) || streq(root, "/"))
                return -EINVAL;
        if (n_patterns < 1 || n_patterns > BLE_MONITOR_PATTERNS_MAX || !patterns)
                return -EINVAL;
        for (size_t i = 0; i < n_patterns; i++)
                if (!pattern_is_valid(&patterns[i]))
                        return -EINVAL;

        mon = new0(BleMonitor, 1);
        if (!mon)
                return -ENOMEM;
        mon->bus = sd_bus_ref(bus);
        mon->event = sd_event_ref(event);
        mon->cb = cb;
        mon->userdata = userdata;
        mon->adapter_path = strdup(adapter_path);
        mon->root = strdup(root);
        if (!mon->adapter_path || !mon->root || asprintf(&mon->path, "%s/0", root) < 0)
                return -ENOMEM;
        mon->patterns = new(BleMonitorPattern, n_patterns);
        if (!mon->patterns)
                return -ENOMEM;
        memcpy(mon->patterns, patterns, n_patterns * sizeof(BleMonitorPattern));
        mon->n_patterns = n_patterns;

        /* The objects exist before BlueZ hears of them: it reads them as soon as it gets
         * RegisterMonitor, and a monitor added later would need InterfacesAdded. */
        k = sd_bus_add_object_manager(bus, &mon->object_manager, root);
        if (k < 0)
                return k;
        k = sd_bus_add_object_vtable(bus, &mon->object, mon->path, BLUEZ_MONITOR, monitor_vtable, mon);
        if (k < 0)
                return k;

        k = sd_bus_call_method_async(bus, &mon->call, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "GetNameOwner", on_name_owner_reply, mon, "s",
                                     BLUEZ_NAME);
        if (k < 0)
                return k;
        k = sd_event_add_time_relative(mon->event, &mon->timeout, CLOCK_MONOTONIC, BLE_MONITOR_ACTIVATE_USEC, 0,
                                       on_timeout, mon);
        if (k < 0)
                return k;

        *ret = TAKE_PTR(mon);
        return 0;
}

BleMonitor *ble_monitor_free(BleMonitor *mon) {
        if (!mon)
                return NULL;
        monitor_unregister(mon);
        sd_bus_slot_unref(mon->call);
        sd_bus_slot_unref(mon->object);
        sd_bus_slot_unref(mon->object_manager);
        sd_event_source_disable_unref(mon->timeout);
        free(mon->bluez);
        free(mon->patterns);
        free(mon->path);
        free(mon->root);
        free(mon->adapter_path);
        sd_event_unref(mon->event);
        sd_bus_unref(mon->bus);
        return mfree(mon);
}

void ble_monitor_pattern_company(uint16_t company_id, BleMonitorPattern *ret) {
        *ret = (BleMonitorPattern) {
                .start = 0,
                .ad_type = AD_TYPE_MANUFACTURER_DATA,
                .size = 2,
                .content = { company_id & 0xff, company_id >> 8 },
        };
}

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        c = (char) tolower((unsigned char) c);
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -EINVAL;
}

int ble_monitor_pattern_uuid128(const char *uuid, BleMonitorPattern *ret) {
        uint8_t bytes[16];
        size_t n = 0;

        if (!uuid || strlen(uuid) != 36)
                return -EINVAL;
        for (size_t i = 0; i < 36; ) {
                int hi, lo;

                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (uuid[i] != '-')
                                return -EINVAL;
                        i++;
                        continue;
                }
                hi = hex_value(uuid[i]);
                lo = hex_value(uuid[i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                bytes[n++] = (uint8_t) (hi << 4 | lo);
                i += 2;
        }

        /* The string reads most significant byte first; the air carries it the other way. */
        *ret = (BleMonitorPattern) {
                .start = 0,
                .ad_type = AD_TYPE_UUID128_ALL,
                .size = sizeof(bytes),
        };
        for (size_t i = 0; i < sizeof(bytes); i++)
                ret->content[i] = bytes[sizeof(bytes) - 1 - i];
        return 0;
}
