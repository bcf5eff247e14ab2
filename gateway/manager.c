/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The daemon's life: load the configuration, build the stages, run one sd-event loop, reload
 * on SIGHUP, stop on SIGTERM/SIGINT. Readings from any source go through manager_on_reading(),
 * the single entry of the pipeline: each is scored by the detector, then appended to the store.
 * Every stage reports to the manager through callbacks, and only the manager logs, so each
 * event is logged exactly once.
 *
 * Watchdog: instead of letting sd-event ping on its own, a timer at half the interval runs
 * manager_check_health() first, so a loop that runs but cannot do its job stops pinging and
 * systemd restarts us.
 *
 * D-Bus: the manager keeps the device registry and the state the bus shows, and tells
 * manager-bus.c when something worth a signal happens; everything that changes state through
 * the bus (settings, reload, flush) comes back through the functions of manager.h, so a
 * property write and a SIGHUP reload take the same path.
 */

#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <systemd/sd-daemon.h>

#include "config-paths.h"
#include "log.h"
#include "manager-bus.h"
#include "manager.h"
#include "timestamp.h"

#define DEFAULT_CONFIG_PATH SYSCONFDIR "/blegate/blegate.conf"

static const char *const gateway_state_table[_GATEWAY_STATE_MAX] = {
        [GATEWAY_STARTING] = "starting",
        [GATEWAY_RUNNING] = "running",
        [GATEWAY_DEGRADED] = "degraded",
        [GATEWAY_STOPPING] = "stopping",
};

const char *gateway_state_to_string(GatewayState s) {
        if (s < 0 || s >= _GATEWAY_STATE_MAX)
                return NULL;
        return gateway_state_table[s];
}

typedef struct ConfigReport {
        int level;
        char *first;        /* the first problem, "file:line: message", for a D-Bus caller */
        unsigned n;
} ConfigReport;

static void manager_on_config_report(const char *file, unsigned line, const char *message, void *userdata) {
        ConfigReport *report = userdata;

        if (line > 0)
                log_full(report->level, "%s:%u: %s", file, line, message);
        else
                log_full(report->level, "%s: %s", file, message);

        if (report->n++ == 0) {
                int k = line > 0 ? asprintf(&report->first, "%s:%u: %s", file, line, message)
                                 : asprintf(&report->first, "%s: %s", file, message);
                if (k < 0)
                        report->first = NULL;
        }
}

static int manager_load_config(Manager *m, int level, Config **ret, char **ret_error) {
        _cleanup_free_ char *first = NULL;
        ConfigReport report = { .level = level };
        int k;

        k = config_load(m->config_path, m->config_must_exist, manager_on_config_report, &report, ret);
        first = report.first;
        if (k < 0 && ret_error) {
                if (report.n <= 1)
                        *ret_error = TAKE_PTR(first);
                else if (asprintf(ret_error, "%s (and %u more problem%s)", strempty(first), report.n - 1,
                                  report.n == 2 ? "" : "s") < 0)
                        *ret_error = NULL;
        }
        return k;
}

static DetectorSettings manager_detector_settings(const Config *c) {
        return (DetectorSettings) {
                .window = c->window,
                .min_samples = c->min_samples,
                .threshold = c->threshold,
                .min_stddev = c->min_stddev,
        };
}

static void manager_log_settings(const Config *c) {
        log_info("Detector: Window=%u MinSamples=%u Threshold=%g MinStdDev=%g", c->window, c->min_samples,
                 c->threshold, c->min_stddev);
}

static void manager_on_anomaly(const AnomalyEvent *e, void *userdata) {
        Manager *m = userdata;
        char start[TIMESTAMP_MAX], end[TIMESTAMP_MAX];
        int k;

        m->anomaly_events++;
        (void) device_registry_add_anomaly(m->devices, e, NULL);
        k = store_append_anomaly(m->store, e);
        if (k < 0)
                log_warning_errno(k, "Failed to queue the anomaly event of %s for the store, ignoring: %m", e->device);
        manager_bus_send_anomaly(m, e);
        log_notice("Anomaly on %s %s from %s to %s (%u reading%s): peak z=%.2f at %.4g (mean %.4g, std %.4g)",
                   e->device, channel_to_string(e->channel), timestamp_format(e->start_usec, start),
                   timestamp_format(e->end_usec, end), e->count, e->count == 1 ? "" : "s", e->peak_z,
                   e->peak_value, e->peak_mean, e->peak_std);
}

/* info: where a BLE reading came from, NULL for other sources. A new device gets its address
 * and RSSI before it is announced on the bus. */
static void manager_track_device(Manager *m, const Reading *r, const BleDeviceInfo *info) {
        uint64_t now = 0;
        Device *d;
        int k;

        (void) sd_event_now(m->event, CLOCK_REALTIME, &now);
        k = device_registry_add_reading(m->devices, r, now, &d);
        if (k >= 0 && info) {
                if (device_set_radio(d, info->address, info->rssi, info->name) < 0)
                        log_oom();
                device_set_connected(d, info->connected);
        }
        if (k > 0)
                manager_bus_add_device(m, d);
        else if (k == -ENOSPC && m->devices->untracked == 1)
                log_warning("Device %s is one more than the %zu devices the gateway keeps track of: its readings "
                            "are scored and stored, but it gets no D-Bus object. Further ones are only counted.",
                            r->device, m->devices->max);
        else if (k < 0 && k != -ENOSPC && k != -EINVAL)
                log_warning_errno(k, "Failed to track device %s, ignoring: %m", r->device);
}

static void manager_feed(Manager *m, const Reading *r, const BleDeviceInfo *info) {
        int k;

        m->readings_received++;
        manager_track_device(m, r, info);

        /* Scored first, then queued. A reading the store has already (a replay read again
         * after a crash) still goes to the detector, to rebuild its windows; the store skips
         * it, and the events it closes, which it stored before. */
        k = detector_feed(m->detector, r, NULL);
        if (k < 0)
                log_warning_errno(k, "Failed to score reading %" PRIu64 " of %s, ignoring: %m", r->seq, r->device);

        /* Queued even when it could not be scored: losing nothing comes first. */
        k = store_append(m->store, r);
        if (k < 0)
                log_warning_errno(k, "Failed to queue reading %" PRIu64 " of %s for the store, dropping it: %m",
                                  r->seq, r->device);
}

static void manager_on_reading(const Reading *r, void *userdata) {
        manager_feed(userdata, r, NULL);
}

static void manager_on_ble_reading(const Reading *r, const BleDeviceInfo *info, void *userdata) {
        manager_feed(userdata, r, info);
}

/* "in 1.2 s" for a retry delay. */
static const char *format_retry(uint64_t usec, char buf[static 32]) {
        snprintf(buf, 32, "in %.1f s", (double) usec / 1e6);
        return buf;
}

/* A link's state shows as the device's Connected property. */
static void manager_set_connected(Manager *m, const char *id, bool connected) {
        Device *d = id ? device_registry_get(m->devices, id) : NULL;

        if (d)
                device_set_connected(d, connected);
}

/* Each BLE event is logged once here. Recoveries are notices, so "journalctl -p notice" shows
 * every time the BLE stack had to be healed. */
static void manager_on_ble_event(const BleEventInfo *e, void *userdata) {
        const char *object = e->object, *message = e->message;
        Manager *m = userdata;
        char retry[32];
        BleStats st;
        int error = e->error;

        ble_get_stats(m->ble, &st);
        switch (e->event) {
        case BLE_BLUEZ_MISSING:
                log_info("BlueZ (org.bluez) is not on the bus, waiting for it; readings from other sources go on.");
                break;
        case BLE_BLUEZ_APPEARED:
                log_info("BlueZ is on the bus, reading its adapters.");
                break;
        case BLE_BLUEZ_RETURNED:
                log_notice("BlueZ is back on the bus, re-reading its adapters (recovery %" PRIu64 ").", st.recoveries);
                break;
        case BLE_BLUEZ_VANISHED:
                log_warning("BlueZ left the bus, waiting for it to come back.");
                break;
        case BLE_ENUMERATE_FAILED:
                log_warning_errno(error, "Failed to read BlueZ's objects (%s), retrying: %m", strempty(message));
                break;
        case BLE_ADAPTER_FOUND:
                log_info("Adapter %s found%s%s.", object, message ? ", " : "", strempty(message));
                break;
        case BLE_ADAPTER_ADDED:
                log_notice("Adapter %s added%s%s, starting discovery (recovery %" PRIu64 ").", object,
                           message ? ", " : "", strempty(message), st.recoveries);
                break;
        case BLE_ADAPTER_REMOVED:
                log_warning("Adapter %s removed, waiting for it to come back.", object);
                break;
        case BLE_ADAPTER_POWERED_OFF:
                log_warning("Adapter %s powered off, waiting for it to come back.", object);
                break;
        case BLE_ADAPTER_POWERED_ON:
                log_notice("Adapter %s powered on again, restarting discovery (recovery %" PRIu64 ").", object,
                           st.recoveries);
                break;
        case BLE_DISCOVERY_STARTED:
                log_info("Discovery started on %s.", object);
                break;
        case BLE_DISCOVERY_STOPPED:
                log_notice("Discovery stopped by itself on %s, restarting it (recovery %" PRIu64 ").", object,
                           st.recoveries);
                break;
        case BLE_DISCOVERY_FAILED:
                log_warning_errno(error, "Failed to start discovery on %s (%s), retrying: %m", object,
                                  strempty(message));
                break;
        case BLE_DISCOVERY_STALLED:
                log_notice("Discovery on %s heard nothing for too long, restarting it (recovery %" PRIu64 ").",
                           object, st.recoveries);
                break;
        case BLE_ADAPTER_POWER_CYCLE:
                log_notice("Discovery on %s is still silent, power-cycling the adapter (recovery %" PRIu64 ").",
                           object, st.recoveries);
                break;
        case BLE_ADAPTER_POWER_ON:
                log_info("Adapter %s is off, powering it on (PowerOn=yes).", object);
                break;
        case BLE_PASSIVE_SCANNING:
                log_info("Passive scanning on %s through an advertisement monitor.", object);
                break;
        case BLE_PASSIVE_UNAVAILABLE:
                log_info("No advertisement monitor on %s (%s), using discovery.", object, strempty(message));
                break;
        case BLE_LINK_STREAMING:
                manager_set_connected(m, e->device, true);
                log_info("Link to %s (%s) streaming as %s.", object, e->kind, e->device);
                break;
        case BLE_LINK_QUEUED:
                log_info("Link to %s (%s) queued: %s has MaxConnections=%u links.", object, e->kind, message,
                         m->config->ble_max_connections);
                break;
        case BLE_LINK_LOST:
                manager_set_connected(m, e->device, false);
                log_notice("Link to %s (%s) lost (%s), reconnecting %s (recovery %" PRIu64 ").", object, e->kind,
                           strempty(message), format_retry(e->retry_usec, retry), st.recoveries);
                break;
        case BLE_LINK_CONNECT_FAILED:
                log_warning("Failed to connect to %s (%s): %s; retrying %s.", object, e->kind, strempty(message),
                            format_retry(e->retry_usec, retry));
                break;
        case BLE_LINK_SETUP_FAILED:
                manager_set_connected(m, e->device, false);
                log_warning("Failed to set up %s (%s): %s; retrying %s.", object, e->kind, strempty(message),
                            format_retry(e->retry_usec, retry));
                break;
        case BLE_LINK_REFUSED:
                manager_set_connected(m, e->device, false);
                log_warning("Device %s does not behave as a %s: %s; trying again %s.", object, e->kind,
                            strempty(message), format_retry(e->retry_usec, retry));
                break;
        case BLE_LINK_LATE_CONNECTION:
                log_notice("Connect to %s (%s) went through after it had timed out, disconnecting it (recovery %"
                           PRIu64 ").", object, e->kind, st.recoveries);
                break;
        default:
                break;
        }
}

void manager_attach_ble(Manager *m) {
        static const BleCallbacks callbacks = {
                .on_reading = manager_on_ble_reading,
                .on_event = manager_on_ble_event,
        };
        BleConfig bc;
        int k;

        if (m->ble || !m->bus || !m->config || !m->config->ble_enable)
                return;
        bc = (BleConfig) {
                .adapters = m->config->ble_adapters,
                .allow = m->config->ble_allow,
                .deny = m->config->ble_deny,
                .max_connections = m->config->ble_max_connections,
                .power_on = m->config->ble_power_on,
                .passive = m->config->ble_passive,
                .stall_timeout_usec = (uint64_t) (m->config->ble_stall_timeout * 1e6),
                .settings = PROFILE_SETTINGS_DEFAULTS,
        };
        k = ble_new(m->bus, m->event, &bc, &callbacks, m, &m->ble);
        if (k < 0)
                log_warning_errno(k, "Failed to set up BLE, running without it until the bus reconnects: %m");
}

void manager_detach_ble(Manager *m) {
        m->ble = ble_free(m->ble);
}

/* True once every reading taken in has been handled by every stage downstream: the replay has
 * ended and the store holds nothing uncommitted. */
static bool manager_is_drained(Manager *m) {
        return (!m->replay || replay_is_done(m->replay)) && store_is_idle(m->store);
}

/* Every way out goes through here, while the bus is still up: State goes to "stopping", the BLE
 * links are let go (BlueZ keeps a link whose client leaves), and the anomaly events still open
 * are closed now rather than after the loop, so that AnomalyDetected goes out for them too
 * before the bus is flushed and closed: sd-bus closes it when the loop exits. */
static int on_stop(sd_event_source *s, void *userdata) {
        Manager *m = userdata;

        manager_detach_ble(m);
        manager_bus_publish_state(m);
        if (m->detector)
                detector_flush(m->detector);
        (void) sd_event_exit(m->event, m->exit_code);
        return 0;
}

/* The stop itself runs from the loop, never inside the callback that asked for it: a reading's
 * own callback may be what decided to stop (a damaged store), and stopping frees the BLE links. */
static void manager_stop(Manager *m, int code) {
        m->exit_code = code;
        if (m->stopping)
                return;
        m->stopping = true;
        if (sd_event_add_defer(m->event, &m->stop_source, on_stop, m) < 0)
                (void) on_stop(NULL, m);
}

static void manager_exit_if_drained(Manager *m) {
        StoreStats st;

        if (!m->options.drain_and_exit || m->drained || !manager_is_drained(m))
                return;
        m->drained = true;

        store_get_stats(m->store, &st);
        log_info("Replay drained: %" PRIu64 " readings, %" PRIu64 " malformed lines, %" PRIu64
                 " anomaly events, %" PRIu64 " readings committed, %" PRIu64 " duplicates skipped, %" PRIu64
                 " evicted delivered, %" PRIu64 " evicted undelivered, %" PRIu64 " dropped on write errors; exiting.",
                 m->readings_received, m->replay ? replay_malformed(m->replay) : 0, m->anomaly_events,
                 st.committed, st.duplicates, st.evicted_delivered, st.evicted_undelivered, st.write_failed);
        manager_stop(m, EXIT_SUCCESS);
}

static void manager_on_store_committed(Store *s, uint64_t last_id, void *userdata) {
        manager_exit_if_drained(userdata);
}

static void manager_on_store_state(Store *s, int error, const char *message, void *userdata) {
        Manager *m = userdata;
        StoreStats st;

        store_get_stats(s, &st);
        if (error == -EBADMSG) {
                /* Damage found while running: retrying cannot mend it, a restart's check moves the
                 * file aside and starts a fresh one. systemd restarts us. */
                log_crit_errno(error, "Store damaged while running (%s), exiting so that a restart replaces it.",
                               strempty(message));
                manager_stop(m, EXIT_FAILURE);
        } else if (error < 0)
                log_error_errno(error, "Store degraded (%s: %m): keeping new readings in memory and retrying.",
                                strempty(message));
        else
                log_notice("Store recovered: %" PRIu64 " readings committed, %" PRIu64 " dropped while degraded.",
                           st.committed, st.write_failed);
        manager_bus_publish_state(m);
}

static int manager_open_store(Manager *m) {
        StoreSettings settings = {
                .path = m->config->store_path,
                .max_size = m->config->store_max_size,
                .commit_readings = m->config->store_commit_readings,
                .commit_interval_usec = (uint64_t) (m->config->store_commit_interval * 1e6),
                .on_committed = manager_on_store_committed,
                .on_state_changed = manager_on_store_state,
                .userdata = m,
        };
        _cleanup_free_ char *error = NULL;
        StoreStats st;
        int k;

        k = store_open(m->event, &settings, &m->store, &error);
        if (k < 0)
                return log_error_errno(k, "Failed to open the store %s: %s", settings.path, error ?: strerror(-k));
        if (k > 0)
                log_crit("Store %s was damaged: %s. Started a fresh one.", settings.path, strempty(error));

        store_get_stats(m->store, &st);
        log_info("Store %s: %" PRIu64 " readings buffered, %" PRIu64 " undelivered, %" PRIu64 " of %" PRIu64
                 " bytes used.",
                 settings.path, st.buffered, st.undelivered, st.size, st.max_size);
        return 0;
}

static void manager_on_replay_malformed(const char *file, unsigned line, const char *why, void *userdata) {
        log_warning("%s:%u: %s, skipping line.", file, line, why);
}

static void manager_on_replay_done(int error, void *userdata) {
        Manager *m = userdata;
        int k;

        if (error < 0)
                log_error_errno(error, "Failed to read recording %s, replay stopped: %m", replay_path(m->replay));
        else
                log_info("Replay of %s finished: %" PRIu64 " readings, %" PRIu64 " malformed lines skipped.",
                         replay_path(m->replay), replay_readings(m->replay), replay_malformed(m->replay));

        /* Close open anomaly events: no more readings will come to end them. Then commit now
         * rather than at the end of the batch interval. */
        detector_flush(m->detector);
        k = store_commit(m->store);
        if (k < 0)
                log_warning_errno(k, "Failed to commit the end of the replay, will retry: %m");
        manager_exit_if_drained(m);
}

static int manager_start_replay(Manager *m) {
        static const ReplayCallbacks callbacks = {
                .on_reading = manager_on_reading,
                .on_malformed = manager_on_replay_malformed,
                .on_done = manager_on_replay_done,
        };
        const char *path = m->options.replay_path ?: m->config->replay_file;
        double speed = m->options.replay_speed >= 0 ? m->options.replay_speed : m->config->replay_speed;
        _cleanup_free_ char *error = NULL;
        int k;

        if (!path) {
                if (m->options.drain_and_exit)
                        return log_error_errno(EINVAL, "--drain-and-exit needs a replay (--replay= or [Replay] File=).");
                return 0;
        }

        k = replay_new(m->event, path, speed, &callbacks, m, &m->replay, &error);
        if (k == -EBADMSG)
                return log_error_errno(k, "%s: %s", path, error);
        if (k < 0)
                return log_error_errno(k, "Failed to open recording %s: %m", path);

        log_info("Replaying %s at %s.", path, speed > 0 ? "recorded pace" : "full speed");
        if (speed > 0 && speed != 1)
                log_info("Replay speed factor %g.", speed);
        return 0;
}

static int manager_on_status_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        uint64_t readings = m->readings_received - m->status_last_readings;
        double secs = (double) (usec - m->status_last_usec) / 1e6;

        char ble[160] = "";
        StoreStats st;

        store_get_stats(m->store, &st);
        if (m->ble) {
                BleStats bs;

                ble_get_stats(m->ble, &bs);
                snprintf(ble, sizeof(ble), "; BLE: %" PRIu64 " adverts, %" PRIu64 " repeats dropped, %" PRIu64
                         " skipped, %" PRIu64 " malformed, %" PRIu64 " recoveries, %u links, %" PRIu64
                         " notifications, %" PRIu64 " malformed",
                         bs.adverts, bs.duplicates, bs.skipped, bs.malformed, bs.recoveries, bs.links,
                         bs.notifications, bs.notify_malformed);
        }
        log_info("Status: %" PRIu64 " readings (%.0f/s), %zu devices, %" PRIu64 " anomaly events, %" PRIu64
                 " buffered%s%s.",
                 m->readings_received, secs > 0 ? (double) readings / secs : 0.0,
                 detector_device_count(m->detector), m->anomaly_events, st.buffered,
                 store_is_degraded(m->store) ? ", store degraded" : "", ble);

        m->status_last_readings = m->readings_received;
        m->status_last_usec = usec;
        (void) sd_event_source_set_time_relative(s, (uint64_t) (m->config->status_interval * 1e6));
        return 0;
}

static int manager_setup_status(Manager *m) {
        uint64_t now;
        int k;

        m->status_timer = sd_event_source_disable_unref(m->status_timer);
        if (m->config->status_interval <= 0)
                return 0;

        k = sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        if (k < 0)
                return k;
        m->status_last_usec = now;
        m->status_last_readings = m->readings_received;

        k = sd_event_add_time_relative(m->event, &m->status_timer, CLOCK_MONOTONIC,
                                       (uint64_t) (m->config->status_interval * 1e6), 0,
                                       manager_on_status_timer, m);
        if (k < 0)
                return k;
        (void) sd_event_source_set_enabled(m->status_timer, SD_EVENT_ON);
        return 0;
}

/* Whether the daemon can still do its job. A degraded store is not a failure here: it retries
 * by itself, and a restart would not bring disk space back. */
static bool manager_check_health(Manager *m) {
        return m->detector && m->store;
}

static int manager_on_watchdog(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (manager_check_health(m))
                (void) sd_notify(false, "WATCHDOG=1");
        else
                log_warning("Health check failed, not pinging the watchdog.");

        (void) sd_event_source_set_time_relative(s, m->watchdog_usec / 2);
        return 0;
}

static int manager_setup_watchdog(Manager *m) {
        int k;

        k = sd_watchdog_enabled(false, &m->watchdog_usec);
        if (k <= 0)
                return k;

        k = sd_event_add_time_relative(m->event, &m->watchdog_timer, CLOCK_MONOTONIC, m->watchdog_usec / 2, 0,
                                       manager_on_watchdog, m);
        if (k < 0)
                return k;
        (void) sd_event_source_set_enabled(m->watchdog_timer, SD_EVENT_ON);
        (void) sd_event_source_set_description(m->watchdog_timer, "watchdog");
        return 0;
}

DetectorSettings manager_get_detector_settings(const Manager *m) {
        return manager_detector_settings(m->config);
}

int manager_set_detector_settings(Manager *m, const DetectorSettings *s) {
        const char *changed[5];
        size_t n = 0;
        int k;

        k = detector_set_settings(m->detector, s);
        if (k < 0)
                return k;

        if (s->window != m->config->window) {
                log_notice("Detector Window= changed from %u to %u: every window restarts empty.",
                           m->config->window, s->window);
                changed[n++] = "Window";
        }
        if (s->threshold != m->config->threshold)
                changed[n++] = "Threshold";
        if (s->min_samples != m->config->min_samples)
                changed[n++] = "MinSamples";
        if (s->min_stddev != m->config->min_stddev)
                changed[n++] = "MinStdDev";
        changed[n] = NULL;

        m->config->window = s->window;
        m->config->min_samples = s->min_samples;
        m->config->threshold = s->threshold;
        m->config->min_stddev = s->min_stddev;
        if (n > 0)
                manager_bus_publish_settings(m, (char **) changed);
        return 0;
}

int manager_reload(Manager *m, char **ret_error) {
        _cleanup_(config_freep) Config *c = NULL;
        DetectorSettings settings;
        int k;

        log_info("Reloading configuration from %s.", m->config_path);
        (void) sd_notify(false, "RELOADING=1");

        k = manager_load_config(m, LOG_ERR, &c, ret_error);
        if (k < 0) {
                log_error_errno(k, "Configuration is invalid, keeping the running one.");
                goto finish;
        }

        settings = manager_detector_settings(c);
        k = manager_set_detector_settings(m, &settings);
        if (k < 0) {
                log_error_errno(k, "Failed to apply the detector settings, keeping the running configuration: %m");
                if (ret_error)
                        *ret_error = strdup("The detector refused the settings.");
                goto finish;
        }
        if (!streq_ptr(c->store_path, m->config->store_path) || c->store_max_size != m->config->store_max_size ||
            c->store_commit_interval != m->config->store_commit_interval ||
            c->store_commit_readings != m->config->store_commit_readings ||
            !streq_ptr(c->replay_file, m->config->replay_file) || c->replay_speed != m->config->replay_speed ||
            c->ble_enable != m->config->ble_enable || !streq_ptr(c->ble_adapters, m->config->ble_adapters) ||
            c->ble_power_on != m->config->ble_power_on || c->ble_passive != m->config->ble_passive ||
            c->ble_max_connections != m->config->ble_max_connections ||
            !streq_ptr(c->ble_allow, m->config->ble_allow) || !streq_ptr(c->ble_deny, m->config->ble_deny) ||
            c->ble_stall_timeout != m->config->ble_stall_timeout)
                log_notice("[Store], [Replay] and [BLE] settings take effect on restart.");

        config_free(m->config);
        m->config = TAKE_PTR(c);
        manager_log_settings(m->config);

        k = manager_setup_status(m);
        if (k < 0)
                log_warning_errno(k, "Failed to set up the status timer, ignoring: %m");
        log_info("Configuration reloaded.");
        k = 0;
finish:
        (void) sd_notify(false, "READY=1");
        return k;
}

static int manager_on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        (void) manager_reload(userdata, NULL);
        return 0;
}

static int manager_on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        log_info("Received %s, stopping.", strsignal((int) si->ssi_signo));
        manager_stop(m, EXIT_SUCCESS);
        return 0;
}

int manager_new(const ManagerOptions *options, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int k;

        m = new0(Manager, 1);
        if (!m)
                return log_oom();
        m->options = *options;
        m->config_must_exist = options->config_path != NULL;
        m->config_path = strdup(options->config_path ?: DEFAULT_CONFIG_PATH);
        if (!m->config_path)
                return log_oom();

        k = sd_event_default(&m->event);
        if (k < 0)
                return log_error_errno(k, "Failed to allocate the event loop: %m");

        /* The signals are blocked process-wide by main() before any thread exists. */
        k = sd_event_add_signal(m->event, NULL, SIGTERM, manager_on_exit_signal, m);
        if (k >= 0)
                k = sd_event_add_signal(m->event, NULL, SIGINT, manager_on_exit_signal, m);
        if (k >= 0)
                k = sd_event_add_signal(m->event, &m->sighup_source, SIGHUP, manager_on_sighup, m);
        if (k < 0)
                return log_error_errno(k, "Failed to watch signals: %m");

        *ret = TAKE_PTR(m);
        return 0;
}

int manager_start(Manager *m) {
        DetectorSettings settings;
        int k;

        k = manager_load_config(m, LOG_ERR, &m->config, NULL);
        if (k < 0)
                return log_error_errno(k, "Configuration %s is invalid, refusing to start.", m->config_path);
        manager_log_settings(m->config);

        k = manager_open_store(m);
        if (k < 0)
                return k;

        settings = manager_detector_settings(m->config);
        k = detector_new(&settings, manager_on_anomaly, m, &m->detector);
        if (k < 0)
                return log_error_errno(k, "Failed to set up the detector: %m");

        k = device_registry_new(DEVICES_MAX, &m->devices);
        if (k < 0)
                return log_error_errno(k, "Failed to set up the device registry: %m");

        k = manager_start_replay(m);
        if (k < 0)
                return k;

        k = manager_setup_status(m);
        if (k < 0)
                return log_error_errno(k, "Failed to set up the status timer: %m");

        k = manager_setup_watchdog(m);
        if (k < 0)
                return log_error_errno(k, "Failed to set up the watchdog: %m");

        /* Last, so that the bus never shows a gateway that is not there yet. Without a bus the
         * gateway keeps collecting data: this only fails when the loop itself does. */
        k = manager_connect_bus(m);
        if (k < 0)
                return log_error_errno(k, "Failed to set up the D-Bus connection: %m");

        return 0;
}

GatewayState manager_get_state(const Manager *m) {
        if (m->stopping)
                return GATEWAY_STOPPING;
        if (!m->ready)
                return GATEWAY_STARTING;
        if (m->store && store_is_degraded(m->store))
                return GATEWAY_DEGRADED;
        return GATEWAY_RUNNING;
}

void manager_get_counters(Manager *m, GatewayCounters *ret) {
        BleStats bs = {};
        StoreStats st;
        uint64_t oldest = 0;

        store_get_stats(m->store, &st);
        if (store_get_oldest_undelivered(m->store, &oldest) <= 0)
                oldest = 0;
        if (m->ble)
                ble_get_stats(m->ble, &bs);

        *ret = (GatewayCounters) {
                .readings_received = m->readings_received,
                .readings_stored = st.committed,
                .buffered_readings = st.buffered,
                .undelivered_readings = st.undelivered,
                .buffer_bytes = st.size,
                .oldest_undelivered_usec = oldest,
                .readings_dropped = st.evicted_undelivered + st.write_failed,
                .anomalies_detected = m->anomaly_events,
                .untracked_readings = m->devices->untracked,
                .gatt_links = bs.links,
                .bluetooth_recoveries = bs.recoveries,
        };
}

void manager_notify_ready(Manager *m) {
        if (m->ready)
                return;
        m->ready = true;
        (void) sd_notify(false, "READY=1\nSTATUS=Running.");
        log_info("blegated " PACKAGE_VERSION " running.");
        manager_bus_publish_state(m);
}

int manager_run(Manager *m) {
        int k;

        /* With a bus, READY=1 waits until the name request is answered, so that a unit ordered
         * after us finds the API; manager-bus.c sends it then. */
        if (!m->bus_requesting_name)
                manager_notify_ready(m);

        k = sd_event_loop(m->event);

        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping.");
        if (k < 0)
                return log_error_errno(k, "Event loop failed: %m");
        /* What is still open or queued goes to disk before we go. */
        if (m->detector)
                detector_flush(m->detector);
        if (m->store) {
                int r = store_commit(m->store);
                if (r < 0)
                        log_error_errno(r, "Failed to commit the last readings on the way out, they are lost: %m");
        }
        return k;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        /* The bus first: its callbacks point into the stages. */
        manager_disconnect_bus(m);
        replay_free(m->replay);
        detector_free(m->detector);
        store_free(m->store);
        device_registry_free(m->devices);
        free(m->sinks); /* the sinks own their SinkStatus */
        sd_event_source_disable_unref(m->status_timer);
        sd_event_source_disable_unref(m->watchdog_timer);
        sd_event_source_disable_unref(m->sighup_source);
        sd_event_source_disable_unref(m->stop_source);
        sd_event_unref(m->event);
        config_free(m->config);
        free(m->config_path);
        return mfree(m);
}
