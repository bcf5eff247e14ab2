/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The manager owns the daemon: the event loop, the configuration and every stage of the data
 * flow (sources -> detector -> store -> sinks). It is the one place that logs what the stages
 * report, and the one place that decides when the daemon is done. Its D-Bus face lives in
 * manager-bus.c, device-bus.c and sink-bus.c, which read the manager's state and call back into
 * it for what a caller may change.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "ble.h"
#include "bus-loop.h"
#include "config.h"
#include "detector.h"
#include "device.h"
#include "replay.h"
#include "store.h"

/* What org.blegate.Gateway1's State says. */
typedef enum GatewayState {
        GATEWAY_STARTING,   /* until READY=1: the stages are up, the bus name not yet answered */
        GATEWAY_RUNNING,
        GATEWAY_DEGRADED,   /* running, but the store cannot commit and keeps readings in memory */
        GATEWAY_STOPPING,
        _GATEWAY_STATE_MAX,
        _GATEWAY_STATE_INVALID = -EINVAL,
} GatewayState;

const char *gateway_state_to_string(GatewayState s);

/* The gateway's counters, as org.blegate.Gateway1 publishes them. */
typedef struct GatewayCounters {

        uint64_t readings_received;       /* taken in from every source since start */
        uint64_t readings_stored;         /* committed to the store since start */
        uint64_t buffered_readings;       /* in the store now */
        uint64_t undelivered_readings;    /* of those, not yet taken by every sink */
        uint64_t buffer_bytes;            /* the store's size */
        uint64_t oldest_undelivered_usec; /* time of the oldest undelivered reading, 0: none */
        uint64_t readings_dropped;        /* lost since start: evicted undelivered, or dropped on
                                           * write failures */
        uint64_t anomalies_detected;      /* anomaly events since start */
        uint64_t untracked_readings;      /* of devices beyond DEVICES_MAX */
        uint64_t gatt_links;              /* BLE links streaming now */
        uint64_t bluetooth_recoveries;    /* steps that healed the BLE stack since start */
} GatewayCounters;

/* A sink as the bus shows it (org.blegate.Sink1). The sinks of later issues (MQTT, CouchDB)
 * each fill one and list it in Manager.sinks; `name` is also their cursor's name in the store,
 * where Pending comes from. None exist yet. */
typedef struct SinkStatus {
        char name[STORE_SINK_NAME_MAX + 1];
        const char *kind;                 /* "mqtt", "couch" */
        bool connected;
        uint64_t delivered;               /* readings acknowledged since start */
        uint64_t last_delivery_usec;      /* wall clock, 0: never */
        char *last_error;                 /* NULL: none */
        bool changed;                     /* publish Connected, Delivered, LastError, ... */
} SinkStatus;

typedef struct ManagerOptions {
        const char *config_path; /* NULL: the default path, which may be missing */
        const char *replay_path; /* overrides [Replay] File= */
        double replay_speed;     /* overrides [Replay] Speed= when >= 0 */
        bool drain_and_exit;     /* exit once the replay has ended and everything is handled */
} ManagerOptions;

typedef struct Manager {
        sd_event *event;
        ManagerOptions options;
        char *config_path;
        bool config_must_exist;
        Config *config;

        Replay *replay;
        Ble *ble;                /* while the bus is up and [BLE] Enable=yes */
        Detector *detector;
        Store *store;
        DeviceRegistry *devices;
        SinkStatus **sinks;
        size_t n_sinks;

        sd_event_source *sighup_source;
        sd_event_source *stop_source;      /* manager_stop() asked for; runs once */
        int exit_code;
        sd_event_source *status_timer;
        sd_event_source *watchdog_timer;
        uint64_t watchdog_usec;

        bool drained;            /* --drain-and-exit has seen everything handled */
        bool ready;              /* READY=1 sent */
        bool stopping;

        /* D-Bus, managed by manager-bus.c. */
        sd_bus *bus;                       /* NULL while not connected */
        BusLoop *bus_loop;                 /* drives bus */
        bool bus_requesting_name;          /* READY=1 waits for the answer */
        bool bus_warned;                   /* this outage was logged as a warning: the next attempts log at debug */
        sd_event_source *bus_retry_timer;
        uint64_t bus_retry_usec;           /* the next retry's delay, doubling up to a cap */
        sd_event_source *bus_changes_timer;
        GatewayCounters bus_counters;      /* as last published */
        GatewayState bus_state;            /* as last published */

        uint64_t readings_received;
        uint64_t anomaly_events;
        uint64_t status_last_readings;
        uint64_t status_last_usec;
} Manager;

int manager_new(const ManagerOptions *options, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Loads the configuration and starts every stage; logs why on failure. */
int manager_start(Manager *m);
/* Runs the loop until a signal or the drain ends it; returns the exit code. */
int manager_run(Manager *m);
/* Re-reads the configuration; an invalid one is logged and the running one kept. On failure,
 * *ret_error (if ret_error is not NULL) says why in one line, for a D-Bus caller. */
int manager_reload(Manager *m, char **ret_error);
/* Applies detector settings, from a reload or a D-Bus property write: logs what changed, keeps
 * them in the configuration in force (until the next reload re-reads the file), and publishes
 * what changed on the bus. 0, or -EINVAL for settings the detector refuses. */
int manager_set_detector_settings(Manager *m, const DetectorSettings *s);
DetectorSettings manager_get_detector_settings(const Manager *m);

GatewayState manager_get_state(const Manager *m);
void manager_get_counters(Manager *m, GatewayCounters *ret);
/* The BLE source lives on the manager's bus connection: manager-bus.c calls these when the
 * connection is up and before it closes. Failures are logged; the gateway runs on without BLE. */
void manager_attach_ble(Manager *m);
void manager_detach_ble(Manager *m);

/* Sends READY=1 (once) and publishes the state: the stages are up and the bus name answered. */
void manager_notify_ready(Manager *m);
