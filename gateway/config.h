/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The daemon's configuration: /etc/blegate/blegate.conf and its drop-ins, INI in systemd's
 * style, read into one Config. Loading is all or nothing: every problem in every file is
 * handed to the caller's report function with its file and line, and a config with any
 * problem is never returned, so a reload with a broken file leaves the running config alone.
 * This module does not log; the report function does. blegate.conf(5) documents the keys.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "macro.h"

/* Window= and MinSamples= limits, shared with whatever else sets them (the D-Bus API), so a
 * value set there survives the next reload's validation. */
#define CONFIG_WINDOW_MIN 2U
#define CONFIG_WINDOW_MAX 100000U

typedef struct Config {
        char *store_path;
        uint64_t store_max_size;          /* bytes */
        double store_commit_interval;     /* seconds */
        unsigned store_commit_readings;
        unsigned window;
        double threshold;
        double min_stddev;
        unsigned min_samples;      /* resolved: never 0 after config_load() */
        char *replay_file;         /* NULL when unset */
        double replay_speed;
        double status_interval;    /* seconds, 0 = off */
        bool ble_enable;
        char *ble_adapters;        /* space-separated adapter names ("hci0 hci1"); NULL: all */
        bool ble_power_on;         /* power on a selected adapter found off */
        bool ble_passive;          /* passive scanning through BlueZ's monitors when offered */
        unsigned ble_max_connections; /* GATT links per adapter */
        char *ble_allow;           /* space-separated addresses ("AA:BB:...", upper case) and kinds; NULL: all */
        char *ble_deny;            /* the same; NULL: none */
        double ble_stall_timeout;  /* seconds of silence while discovering before a restart, 0 = off */
} Config;

/* One problem in one file. line is 0 when the problem is with the file as a whole (it cannot
 * be opened or read); message has no "file:line: " prefix and no trailing newline. */
typedef void (*ConfigReportFunc)(const char *file, unsigned line, const char *message, void *userdata);

/* A Config with every key at its default (min_samples is 0 there: "same as Window"). */
int config_new(Config **ret);
Config *config_free(Config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_free);

/* Parses one INI stream into c, reporting every problem; returns 0, or -EINVAL if anything was
 * reported (c may then be partially updated: callers parse into a scratch Config), or the
 * error that stopped reading (-ENOMEM, a read error). name is only used in reports. report
 * may be NULL. Cross-key checks and the resolution of MinSamples are config_load()'s job. */
int config_parse(Config *c, FILE *f, const char *name, ConfigReportFunc report, void *userdata);

/* Loads defaults, then `path`, then `<path>.d/ *.conf` in lexical (strcmp) order, later keys
 * win. If `path` is missing: error -ENOENT when must_exist, else defaults are used (drop-ins
 * are still read). Unreadable files, unknown sections/keys, malformed values: each reported
 * via report() with file and line; returns -EINVAL (or the I/O error) and *ret untouched if
 * anything was reported. */
int config_load(const char *path, bool must_exist, ConfigReportFunc report, void *userdata, Config **ret);
