/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The manager's D-Bus face: the connection to the system bus, org.blegate.Gateway1 on
 * BUS_PATH_GATEWAY, the ObjectManager at BUS_PATH_ROOT under which device-bus.c and
 * sink-bus.c hang their objects, and the publishing of what changed. docs/org.blegate.*.md
 * document the API; this file is glue only: every change of state goes through manager.h.
 *
 * Connection: the system bus (DBUS_SYSTEM_BUS_ADDRESS is honoured, which the tests and the demo
 * use), attached to the manager's loop, the name requested asynchronously; READY=1 waits for
 * the answer. The gateway's job is collecting data, not serving its API: when the bus cannot
 * be reached, the name is refused or taken, or the bus goes away, we log a warning (once, until
 * it works again), run on without the API and try again after 1 s, 2 s, 4 s... up to a minute.
 *
 * Publishing: State and the detector settings are emitted where they change. The counters
 * change with every reading, so a timer publishes them at most once a second, only the ones
 * that changed since the last time, and the same for every device and sink marked changed.
 * InterfacesAdded goes out when a device first appears, AnomalyDetected for every event.
 *
 * Access: the D-Bus policy lets anyone call us. Read-only methods carry
 * SD_BUS_VTABLE_UNPRIVILEGED; Flush, Reload and the writable properties do not, so sd-bus
 * itself refuses them with AccessDenied to a caller that is neither root nor our own user.
 * Arguments are checked here, InvalidArgs with a message naming the range.
 */

#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <sys/socket.h>

#include "bus-names.h"
#include "config-paths.h"
#include "device-bus.h"
#include "log.h"
#include "manager-bus.h"
#include "sink-bus.h"

#define BUS_RETRY_MIN_USEC (UINT64_C(1) * 1000 * 1000)
#define BUS_RETRY_MAX_USEC (UINT64_C(60) * 1000 * 1000)
#define BUS_PUBLISH_INTERVAL_USEC (UINT64_C(1) * 1000 * 1000)

/* RequestName()'s answers (the D-Bus specification). */
#define NAME_PRIMARY_OWNER 1U
#define NAME_ALREADY_OWNER 4U

/* The counters and where they live in GatewayCounters: the getters and the publishing timer
 * both go by this table. */
static const struct {
        const char *name;
        size_t offset;
} gateway_counters[] = {
        { "ReadingsReceived",      offsetof(GatewayCounters, readings_received)       },
        { "ReadingsStored",        offsetof(GatewayCounters, readings_stored)         },
        { "BufferedReadings",      offsetof(GatewayCounters, buffered_readings)       },
        { "UndeliveredReadings",   offsetof(GatewayCounters, undelivered_readings)    },
        { "BufferBytes",           offsetof(GatewayCounters, buffer_bytes)            },
        { "OldestUndeliveredUsec", offsetof(GatewayCounters, oldest_undelivered_usec) },
        { "ReadingsDropped",       offsetof(GatewayCounters, readings_dropped)        },
        { "AnomaliesDetected",     offsetof(GatewayCounters, anomalies_detected)      },
        { "UntrackedReadings",     offsetof(GatewayCounters, untracked_readings)      },
        { "GattLinks",             offsetof(GatewayCounters, gatt_links)              },
        { "BluetoothRecoveries",   offsetof(GatewayCounters, bluetooth_recoveries)    },
};

static uint64_t counter_get(const GatewayCounters *c, size_t i) {
        return *(const uint64_t *) ((const uint8_t *) c + gateway_counters[i].offset);
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static int property_get_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", gateway_state_to_string(manager_get_state(userdata)));
}

static int property_get_counter(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        GatewayCounters c;

        manager_get_counters(userdata, &c);
        for (size_t i = 0; i < ELEMENTSOF(gateway_counters); i++)
                if (streq(property, gateway_counters[i].name))
                        return sd_bus_message_append(reply, "t", counter_get(&c, i));
        return -ENOENT;
}

static int property_get_setting(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        DetectorSettings s = manager_get_detector_settings(userdata);

        if (streq(property, "Threshold"))
                return sd_bus_message_append(reply, "d", s.threshold);
        if (streq(property, "Window"))
                return sd_bus_message_append(reply, "u", s.window);
        if (streq(property, "MinSamples"))
                return sd_bus_message_append(reply, "u", s.min_samples);
        return sd_bus_message_append(reply, "d", s.min_stddev);
}

static const char *bus_caller(sd_bus_message *m) {
        return sd_bus_message_get_sender(m) ?: "?";
}

static int property_set_threshold(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *value, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        DetectorSettings s = manager_get_detector_settings(m);
        double z;
        int k;

        k = sd_bus_message_read(value, "d", &z);
        if (k < 0)
                return k;
        if (!isfinite(z) || z <= 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Threshold must be a finite number > 0, not %g.", z);

        s.threshold = z;
        k = manager_set_detector_settings(m, &s);
        if (k < 0)
                return sd_bus_error_set_errnof(error, k, "Failed to apply Threshold=%g: %m", z);
        log_notice("Detector Threshold= set to %g over D-Bus by %s, until the next reload re-reads the configuration.",
                   z, bus_caller(sd_bus_get_current_message(bus)));
        return 1;
}

static int property_set_window(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *value, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        DetectorSettings s = manager_get_detector_settings(m);
        uint32_t n;
        int k;

        k = sd_bus_message_read(value, "u", &n);
        if (k < 0)
                return k;
        if (n < CONFIG_WINDOW_MIN || n > CONFIG_WINDOW_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Window must be in %u..%u, not %" PRIu32 ".",
                                         CONFIG_WINDOW_MIN, CONFIG_WINDOW_MAX, n);

        /* MinSamples follows the window when it equals it (the default, "MinSamples=" unset),
         * and can never exceed it. */
        if (s.min_samples == s.window || s.min_samples > n)
                s.min_samples = n;
        s.window = n;
        k = manager_set_detector_settings(m, &s);
        if (k < 0)
                return sd_bus_error_set_errnof(error, k, "Failed to apply Window=%" PRIu32 ": %m", n);
        log_notice("Detector Window= set to %" PRIu32 " (MinSamples=%u) over D-Bus by %s, until the next reload "
                   "re-reads the configuration.", n, s.min_samples, bus_caller(sd_bus_get_current_message(bus)));
        return 1;
}

static int method_list_devices(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ Device **list = NULL;
        Manager *m = userdata;
        int n, k;

        n = device_registry_list(m->devices, &list);
        if (n < 0)
                return n;

        k = sd_bus_message_new_method_return(message, &reply);
        if (k < 0)
                return k;
        k = sd_bus_message_open_container(reply, 'a', "(osssssnbtttas)");
        if (k < 0)
                return k;
        for (int i = 0; i < n; i++) {
                k = device_bus_append(reply, list[i]);
                if (k < 0)
                        return k;
        }
        k = sd_bus_message_close_container(reply);
        if (k < 0)
                return k;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_get_anomalies(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ StoredAnomaly *list = NULL;
        Manager *m = userdata;
        uint64_t since;
        uint32_t max;
        int n, k;

        k = sd_bus_message_read(message, "tu", &since, &max);
        if (k < 0)
                return k;
        /* Refused rather than clamped: a caller asking for more would take a short answer for
         * all there is. */
        if (max < 1 || max > BUS_ANOMALIES_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "max must be in 1..%u, not %" PRIu32 "; ask again from the last start "
                                         "for more.", BUS_ANOMALIES_MAX, max);

        list = new(StoredAnomaly, max);
        if (!list)
                return -ENOMEM;
        n = store_get_anomalies(m->store, since, list, max);
        if (n < 0)
                return sd_bus_error_setf(error, BUS_ERROR_STORE_FAILED,
                                         "Failed to read the anomaly events from the store: %s", strerror(-n));

        k = sd_bus_message_new_method_return(message, &reply);
        if (k < 0)
                return k;
        k = sd_bus_message_open_container(reply, 'a', "(ssttudd)");
        if (k < 0)
                return k;
        for (int i = 0; i < n; i++) {
                const AnomalyEvent *e = &list[i].event;

                k = sd_bus_message_append(reply, "(ssttudd)", e->device, channel_to_string(e->channel),
                                          e->start_usec, e->end_usec, (uint32_t) e->count, e->peak_value, e->peak_z);
                if (k < 0)
                        return k;
        }
        k = sd_bus_message_close_container(reply);
        if (k < 0)
                return k;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_flush(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int k;

        log_info("Flush requested over D-Bus by %s.", bus_caller(message));
        k = store_commit(m->store);
        if (k < 0)
                return sd_bus_error_setf(error, BUS_ERROR_STORE_FAILED, "Failed to commit to the store: %s",
                                         strerror(-k));
        return sd_bus_reply_method_return(message, NULL);
}

static int method_reload(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_free_ char *why = NULL;
        Manager *m = userdata;
        int k;

        log_info("Reload requested over D-Bus by %s.", bus_caller(message));
        k = manager_reload(m, &why);
        if (k < 0)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_CONFIGURATION,
                                         "The configuration is invalid, the running one is kept: %s",
                                         why ?: strerror(-k));
        return sd_bus_reply_method_return(message, NULL);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),

        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ReadingsReceived", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ReadingsStored", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BufferedReadings", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("UndeliveredReadings", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BufferBytes", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("OldestUndeliveredUsec", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ReadingsDropped", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("AnomaliesDetected", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("UntrackedReadings", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("GattLinks", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BluetoothRecoveries", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_WRITABLE_PROPERTY("Threshold", "d", property_get_setting, property_set_threshold, 0,
                                 SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_WRITABLE_PROPERTY("Window", "u", property_get_setting, property_set_window, 0,
                                 SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("MinSamples", "u", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("MinStdDev", "d", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),

        SD_BUS_METHOD_WITH_NAMES("ListDevices",
                                 NULL,,
                                 "a(osssssnbtttas)",
                                 SD_BUS_PARAM(devices),
                                 method_list_devices,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetAnomalies",
                                 "tu",
                                 SD_BUS_PARAM(since_usec)
                                 SD_BUS_PARAM(max),
                                 "a(ssttudd)",
                                 SD_BUS_PARAM(anomalies),
                                 method_get_anomalies,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Flush", NULL, NULL, method_flush, 0),
        SD_BUS_METHOD("Reload", NULL, NULL, method_reload, 0),

        SD_BUS_SIGNAL_WITH_NAMES("AnomalyDetected",
                                 "ssttudd",
                                 SD_BUS_PARAM(device)
                                 SD_BUS_PARAM(channel)
                                 SD_BUS_PARAM(start_usec)
                                 SD_BUS_PARAM(end_usec)
                                 SD_BUS_PARAM(readings)
                                 SD_BUS_PARAM(peak_value)
                                 SD_BUS_PARAM(peak_z),
                                 0),

        SD_BUS_VTABLE_END
};

/* Between a disconnection and the retry that drops it, m->bus is there but closed. */
static bool manager_bus_is_open(Manager *m) {
        return m->bus && sd_bus_is_open(m->bus) > 0;
}

static void manager_bus_close(Manager *m) {
        manager_detach_ble(m);
        m->bus_changes_timer = sd_event_source_disable_unref(m->bus_changes_timer);
        m->bus_loop = bus_loop_detach(m->bus_loop);
        m->bus = sd_bus_flush_close_unref(m->bus);
        m->bus_requesting_name = false;
}

static int manager_on_bus_retry(sd_event_source *s, uint64_t usec, void *userdata);

/* The connection failed, was refused its name, or went away: run without it and try again
 * later. Called from bus callbacks too, so the connection is only dropped from the retry timer,
 * outside of the bus's own dispatch. */
static int manager_bus_retry_later(Manager *m) {
        int k;

        if (m->stopping)
                return 0;

        if (!m->bus_retry_timer)
                k = sd_event_add_time_relative(m->event, &m->bus_retry_timer, CLOCK_MONOTONIC, m->bus_retry_usec, 0,
                                               manager_on_bus_retry, m);
        else
                k = sd_event_source_set_time_relative(m->bus_retry_timer, m->bus_retry_usec);
        if (k >= 0)
                k = sd_event_source_set_enabled(m->bus_retry_timer, SD_EVENT_ONESHOT);
        if (k < 0)
                return log_warning_errno(k, "Failed to schedule the next attempt to connect to the bus, giving up "
                                         "on D-Bus: %m");

        m->bus_retry_usec = MIN(m->bus_retry_usec * 2, BUS_RETRY_MAX_USEC);
        return 0;
}

/* Logged at warning level once per outage, at debug level for every further attempt. */
static int manager_bus_log_level(Manager *m) {
        int level = m->bus_warned ? LOG_DEBUG : LOG_WARNING;

        m->bus_warned = true;
        return level;
}

static int manager_on_name_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        Manager *m = userdata;
        bool acquired = false;
        uint32_t answer = 0;
        int k;

        m->bus_requesting_name = false;

        if (e)
                log_full(manager_bus_log_level(m), "Failed to acquire the bus name " BUS_NAME " (%s), running "
                         "without the D-Bus API and retrying in the background.", e->message ?: e->name);
        else if ((k = sd_bus_message_read(reply, "u", &answer)) < 0)
                log_full_errno(manager_bus_log_level(m), k, "Bad answer to the request for " BUS_NAME ", running "
                               "without the D-Bus API and retrying in the background: %m");
        else if (answer != NAME_PRIMARY_OWNER && answer != NAME_ALREADY_OWNER)
                log_full(manager_bus_log_level(m), "Another process owns the bus name " BUS_NAME ", running without "
                         "the D-Bus API and retrying in the background.");
        else
                acquired = true;

        if (acquired) {
                log_info("Acquired the bus name " BUS_NAME " on the system bus.");
                m->bus_warned = false;
                m->bus_retry_usec = BUS_RETRY_MIN_USEC;
        } else
                (void) manager_bus_retry_later(m);

        /* Answered either way: the gateway is up, with or without its API. */
        manager_notify_ready(m);
        return 0;
}

static int manager_on_bus_disconnected(sd_bus_message *message, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;

        if (m->stopping)
                return 0;
        log_full(manager_bus_log_level(m), "Lost the connection to the system bus, running without the D-Bus API "
                 "until it is back.");
        m->bus_requesting_name = false;
        (void) manager_bus_retry_later(m);
        manager_notify_ready(m);
        return 0;
}

static void manager_bus_publish(Manager *m) {
        const char *names[ELEMENTSOF(gateway_counters) + 1];
        GatewayCounters c;
        Device *d;
        size_t n = 0;
        int k;

        manager_bus_publish_state(m);

        manager_get_counters(m, &c);
        for (size_t i = 0; i < ELEMENTSOF(gateway_counters); i++)
                if (counter_get(&c, i) != counter_get(&m->bus_counters, i))
                        names[n++] = gateway_counters[i].name;
        names[n] = NULL;
        m->bus_counters = c;
        if (n > 0) {
                k = sd_bus_emit_properties_changed_strv(m->bus, BUS_PATH_GATEWAY, BUS_INTERFACE_GATEWAY,
                                                        (char **) names);
                if (k < 0)
                        log_debug_errno(k, "Failed to emit the gateway's PropertiesChanged, ignoring: %m");
        }

        IDMAP_FOREACH(d, m->devices->devices) {
                k = device_bus_publish(m->bus, d);
                if (k < 0)
                        log_debug_errno(k, "Failed to emit PropertiesChanged for device %s, ignoring: %m", d->id);
        }
        for (size_t i = 0; i < m->n_sinks; i++) {
                k = sink_bus_publish(m->bus, m->sinks[i]);
                if (k < 0)
                        log_debug_errno(k, "Failed to emit PropertiesChanged for sink %s, ignoring: %m",
                                        m->sinks[i]->name);
        }
}

static int manager_on_bus_publish(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (manager_bus_is_open(m))
                manager_bus_publish(m);
        (void) sd_event_source_set_time_relative(s, BUS_PUBLISH_INTERVAL_USEC);
        return 0;
}

static int manager_bus_setup(Manager *m, sd_bus *bus) {
        int k;

        k = sd_bus_add_object_manager(bus, NULL, BUS_PATH_ROOT);
        if (k < 0)
                return k;
        k = sd_bus_add_object_vtable(bus, NULL, BUS_PATH_GATEWAY, BUS_INTERFACE_GATEWAY, manager_vtable, m);
        if (k < 0)
                return k;
        k = sd_bus_add_fallback_vtable(bus, NULL, BUS_PATH_DEVICES, BUS_INTERFACE_DEVICE, device_vtable,
                                       device_object_find, m->devices);
        if (k < 0)
                return k;
        k = sd_bus_add_node_enumerator(bus, NULL, BUS_PATH_DEVICES, device_node_enumerator, m->devices);
        if (k < 0)
                return k;
        k = sd_bus_add_fallback_vtable(bus, NULL, BUS_PATH_SINKS, BUS_INTERFACE_SINK, sink_vtable,
                                       sink_object_find, m);
        if (k < 0)
                return k;
        k = sd_bus_add_node_enumerator(bus, NULL, BUS_PATH_SINKS, sink_node_enumerator, m);
        if (k < 0)
                return k;

        k = sd_bus_match_signal_async(bus, NULL, "org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local",
                                      "org.freedesktop.DBus.Local", "Disconnected", manager_on_bus_disconnected,
                                      NULL, m);
        if (k < 0)
                return k;

        /* Coalesced: BlueZ's notifications come over this connection too (bus-loop.h). */
        k = bus_loop_attach(bus, m->event, &m->bus_loop);
        if (k < 0)
                return k;

        return sd_bus_request_name_async(bus, NULL, BUS_NAME, 0, manager_on_name_reply, m);
}

static int manager_bus_try_connect(Manager *m) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int k;

        k = sd_bus_open_system(&bus);
        if (k < 0)
                return log_full_errno(manager_bus_log_level(m), k, "Failed to connect to the system bus, running "
                                      "without the D-Bus API and retrying in the background: %m");

        k = manager_bus_setup(m, bus);
        if (k < 0)
                return log_full_errno(manager_bus_log_level(m), k, "Failed to set up the D-Bus API, running "
                                      "without it and retrying in the background: %m");

        k = sd_event_add_time_relative(m->event, &m->bus_changes_timer, CLOCK_MONOTONIC, BUS_PUBLISH_INTERVAL_USEC,
                                       0, manager_on_bus_publish, m);
        if (k < 0)
                return log_full_errno(manager_bus_log_level(m), k, "Failed to set up the publishing of changes on "
                                      "D-Bus, running without it and retrying in the background: %m");
        (void) sd_event_source_set_enabled(m->bus_changes_timer, SD_EVENT_ON);
        (void) sd_event_source_set_description(m->bus_changes_timer, "bus-publish");

        /* Clients read the current values when they connect: publish only what changes after. */
        manager_get_counters(m, &m->bus_counters);
        m->bus_state = manager_get_state(m);
        m->bus = TAKE_PTR(bus);
        m->bus_requesting_name = true;
        manager_attach_ble(m);
        return 0;
}

static int manager_on_bus_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        manager_bus_close(m);
        if (m->stopping)
                return 0;
        if (manager_bus_try_connect(m) < 0) {
                manager_bus_close(m);
                (void) manager_bus_retry_later(m);
        }
        return 0;
}

int manager_connect_bus(Manager *m) {
        m->bus_retry_usec = BUS_RETRY_MIN_USEC;
        if (manager_bus_try_connect(m) < 0) {
                manager_bus_close(m);
                return manager_bus_retry_later(m);
        }
        return 0;
}

void manager_disconnect_bus(Manager *m) {
        m->bus_retry_timer = sd_event_source_disable_unref(m->bus_retry_timer);
        manager_bus_close(m);
}

void manager_bus_add_device(Manager *m, Device *d) {
        int k;

        if (!manager_bus_is_open(m))
                return;
        k = device_bus_announce(m->bus, d);
        if (k < 0)
                log_debug_errno(k, "Failed to announce device %s on D-Bus, ignoring: %m", d->id);
}

void manager_bus_send_anomaly(Manager *m, const AnomalyEvent *e) {
        int k;

        if (!manager_bus_is_open(m))
                return;
        k = sd_bus_emit_signal(m->bus, BUS_PATH_GATEWAY, BUS_INTERFACE_GATEWAY, "AnomalyDetected", "ssttudd",
                               e->device, channel_to_string(e->channel), e->start_usec, e->end_usec,
                               (uint32_t) e->count, e->peak_value, e->peak_z);
        if (k < 0)
                log_debug_errno(k, "Failed to emit AnomalyDetected, ignoring: %m");
}

void manager_bus_publish_state(Manager *m) {
        GatewayState s;
        int k;

        if (!manager_bus_is_open(m))
                return;
        s = manager_get_state(m);
        if (s == m->bus_state)
                return;
        m->bus_state = s;
        k = sd_bus_emit_properties_changed(m->bus, BUS_PATH_GATEWAY, BUS_INTERFACE_GATEWAY, "State", NULL);
        if (k < 0)
                log_debug_errno(k, "Failed to emit the change of State, ignoring: %m");
}

void manager_bus_publish_settings(Manager *m, char **names) {
        int k;

        if (!manager_bus_is_open(m))
                return;
        k = sd_bus_emit_properties_changed_strv(m->bus, BUS_PATH_GATEWAY, BUS_INTERFACE_GATEWAY, names);
        if (k < 0)
                log_debug_errno(k, "Failed to emit the change of the detector settings, ignoring: %m");
}

static int on_introspect_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        sd_bus_message **ret = userdata;

        *ret = sd_bus_message_ref(reply);
        return 0;
}

int bus_introspect(const char *interface, char **ret) {
        static const struct {
                const char *interface;
                const sd_bus_vtable *vtable;
        } table[] = {
                { BUS_INTERFACE_GATEWAY, manager_vtable },
                { BUS_INTERFACE_DEVICE,  device_vtable  },
                { BUS_INTERFACE_SINK,    sink_vtable    },
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *server = NULL, *client = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_close_ int server_fd = -EBADF, client_fd = -EBADF;
        const sd_bus_vtable *vtable = NULL;
        const char *xml;
        sd_id128_t id;
        int fds[2], k;

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (streq(interface, table[i].interface))
                        vtable = table[i].vtable;
        if (!vtable)
                return -ENOENT;

        /* Both ends of a socket pair in this process: the vtable on one, Introspect() from the
         * other, each driven by hand, since a blocking call would wait for itself. */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0)
                return negative_errno();
        server_fd = fds[0];
        client_fd = fds[1];

        k = sd_bus_new(&server);
        if (k < 0)
                return k;
        k = sd_bus_set_fd(server, server_fd, server_fd);
        if (k < 0)
                return k;
        TAKE_FD(server_fd);
        k = sd_bus_new(&client);
        if (k < 0)
                return k;
        k = sd_bus_set_fd(client, client_fd, client_fd);
        if (k < 0)
                return k;
        TAKE_FD(client_fd);

        k = sd_id128_randomize(&id);
        if (k >= 0)
                k = sd_bus_set_server(server, true, id);
        if (k >= 0)
                k = sd_bus_start(server);
        if (k >= 0)
                k = sd_bus_start(client);
        if (k >= 0)
                k = sd_bus_add_object_vtable(server, NULL, BUS_PATH_GATEWAY, interface, vtable, NULL);
        if (k >= 0)
                k = sd_bus_call_method_async(client, NULL, NULL, BUS_PATH_GATEWAY,
                                             "org.freedesktop.DBus.Introspectable", "Introspect",
                                             on_introspect_reply, &reply, NULL);
        if (k < 0)
                return k;

        for (unsigned i = 0; !reply; i++) {
                int a, b;

                if (i >= 1000)
                        return -ETIMEDOUT;
                a = sd_bus_process(server, NULL);
                b = sd_bus_process(client, NULL);
                if (a < 0 || b < 0)
                        return a < 0 ? a : b;
                if (a == 0 && b == 0)
                        (void) sd_bus_wait(client, 10 * 1000);
        }

        if (sd_bus_message_is_method_error(reply, NULL))
                return -sd_bus_message_get_errno(reply) ?: -EIO;
        k = sd_bus_message_read(reply, "s", &xml);
        if (k < 0)
                return k;
        *ret = strdup(xml);
        return *ret ? 0 : -ENOMEM;
}
