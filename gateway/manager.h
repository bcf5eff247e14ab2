/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The manager owns the daemon: the event loop, the configuration and every stage of the data
 * flow (sources -> detector -> store -> sinks). It is the one place that logs what the stages
 * report, and the one place that decides when the daemon is done.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "detector.h"
#include "replay.h"
#include "store.h"

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
        Detector *detector;
        Store *store;

        sd_event_source *sighup_source;
        sd_event_source *status_timer;
        sd_event_source *watchdog_timer;
        uint64_t watchdog_usec;

        bool drained;            /* --drain-and-exit has seen everything handled */

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
/* Re-reads the configuration; an invalid one is logged and the running one kept. */
int manager_reload(Manager *m);
