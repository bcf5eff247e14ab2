/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What blegatectl's bus commands share: the connection to the daemon, D-Bus errors turned
 * into one clear message and an exit code a script can trust, reading a set of properties into
 * a struct, the TIME arguments, and the plain-text tables the commands print.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <systemd/sd-bus.h>

#include "macro.h"

static inline bool isempty(const char *s) {
        return !s || !*s;
}

/* Opens the system bus (DBUS_SYSTEM_BUS_ADDRESS is honoured). On failure logs why and returns
 * the exit code: EXIT_NOT_RUNNING, since then no daemon can be reached either. */
int ctl_bus_open(sd_bus **ret);
/* Logs why a call to `what` (e.g. "flush", "list the devices") failed and returns the exit
 * code for it: EXIT_NOT_RUNNING when nothing owns the bus name, EXIT_ACCESS_DENIED,
 * EXIT_USAGE when the daemon refused an argument (InvalidArgs), or EXIT_FAILURE. `changes`
 * says the call changes the gateway, which only root may do. */
int ctl_bus_log_error(const char *what, bool changes, const sd_bus_error *error, int r);

/* One property to read into a struct: types s (char * field, malloc'd), t (uint64_t),
 * u (uint32_t), n (int16_t), d (double), b (bool). Others are skipped. */
typedef struct CtlProperty {
        const char *name;
        char type;
        size_t offset;
} CtlProperty;

/* Reads the entries of an a{sv} at the current position of m into ret by map; properties not
 * in the map, or of another type than the map says, are skipped. */
int ctl_bus_read_properties(sd_bus_message *m, const CtlProperty *map, size_t n_map, void *ret);
/* GetAll of one interface of one object of the daemon into ret. */
int ctl_bus_get_all(sd_bus *bus, const char *path, const char *interface, const CtlProperty *map, size_t n_map,
                    void *ret, sd_bus_error *error);

/*
 * A point in time from the command line, as µs since the epoch:
 *   epoch milliseconds      1515542400000
 *   ISO 8601, UTC           2018-01-10, 2018-01-10T00:00:05, 2018-01-10 00:00:05.250Z, ...+00:00
 *   relative to now_usec    -10min, -2h, -30s, -1d, -500ms (units us ms s min h d w), "now"
 * Returns 0 or -EINVAL.
 */
int ctl_parse_time(const char *s, uint64_t now_usec, uint64_t *ret);

/* "12s ago", "5min ago", "3h ago" relative to now_usec; "-" for 0. */
char *ctl_format_ago(uint64_t usec, uint64_t now_usec, char *buf, size_t size);
/* "512 B", "112.0 KiB", "1.5 GiB". */
char *ctl_format_bytes(uint64_t bytes, char *buf, size_t size);

/* A plain-text table: a header row and rows of cells, columns two spaces apart, the columns in
 * right_aligned (a bit mask) aligned right. */
typedef struct Table Table;

int table_new(const char *const *headers, size_t n_columns, uint32_t right_aligned, Table **ret);
Table *table_free(Table *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Table *, table_free);
/* Adds a row of n_columns cells; NULL prints as "-". 0 or -ENOMEM. */
int table_add_row(Table *t, const char *const *cells);
size_t table_rows(const Table *t);
void table_print(const Table *t, FILE *f);
