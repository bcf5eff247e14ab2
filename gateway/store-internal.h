/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the store's files share and nobody else may see: the Store itself, its in-memory
 * devices, queue and sinks, the prepared statements, and the helpers used across files.
 * Only store.c, store-schema.c and store-sink.c include this.
 */

#include <sqlite3.h>
#include <time.h>

#include "idmap.h"
#include "store.h"

typedef struct StoreDevice {
        char name[DEVICE_ID_MAX + 1];
        char type[DEVICE_ID_MAX + 1];
        int64_t index;                  /* devices.id, what readings.device holds */
        uint64_t first_seen_usec, last_seen_usec;
        uint64_t last_seq;              /* highest seq accepted, committed or queued */
        bool dirty;                     /* the row needs writing */
} StoreDevice;

typedef struct PendingReading {
        StoreDevice *device;
        uint64_t time_usec;
        uint64_t seq;
        uint32_t channels;
        double values[_CHANNEL_MAX];
} PendingReading;

typedef struct Sink {
        char name[STORE_SINK_NAME_MAX + 1];
        uint64_t cursor;                /* highest id acknowledged */
        uint64_t handed_out;            /* highest id handed out, >= cursor */
        bool enabled;
        bool dirty;
} Sink;

typedef enum StoreStatement {
        STMT_BEGIN,
        STMT_COMMIT,
        STMT_ROLLBACK,
        STMT_INSERT_READING,
        STMT_INSERT_ANOMALY,
        STMT_UPSERT_DEVICE,
        STMT_UPSERT_SINK,
        STMT_UPDATE_STATE,
        STMT_DELETE_READINGS,
        STMT_DELETE_ANOMALIES,
        STMT_FETCH,
        STMT_OLDEST,
        STMT_ANOMALIES_SINCE,
        STMT_PAGE_COUNT,
        STMT_FREELIST_COUNT,
        _STMT_MAX,
} StoreStatement;
struct Store {
        sqlite3 *db;
        int lock_fd;                    /* holds the flock() */
        sqlite3_stmt *stmt[_STMT_MAX];
        char *path;
        StoreSettings settings;         /* defaults resolved; .path points at path */

        sd_event *event;
        sd_event_source *timer;         /* batch deadline, or the next retry while degraded */
        bool timer_armed;

        uint64_t page_size;
        uint64_t max_pages;             /* the cap */
        uint64_t high_pages;            /* evict above this many pages in use */
        uint64_t low_pages;             /* ... down to this many */
        uint64_t page_count, freelist_count;

        IdMap *devices_by_name;
        StoreDevice **devices;          /* sorted by index */
        size_t n_devices, n_devices_allocated;

        PendingReading *pending;        /* ring of settings.max_pending */
        size_t pending_head, n_pending;
        AnomalyEvent *pending_anomalies;
        size_t n_pending_anomalies;

        Sink *sinks;
        size_t n_sinks;

        /* The readings in the file are [first_id, last_id]; empty when first_id > last_id. */
        uint64_t first_id, last_id;
        uint64_t first_anomaly_id, last_anomaly_id;
        uint64_t written_anomaly_id;    /* by the last store_write(): events already stored take no id */

        bool degraded;
        uint64_t retry_at_usec;         /* CLOCK_MONOTONIC; for callers without an event loop */
        char *message;                  /* SQLite's message of the last failure */

        StoreStats stats;
};

/* store.c */
int store_errno(sqlite3 *db, int rc);
int store_set_error(char **ret_error, int error, const char *format, ...) _printf_(3, 4);
uint64_t store_now_usec(clockid_t clock);
bool store_column_copy_text(sqlite3_stmt *st, int column, char *buf, size_t size);
double store_column_double_or_nan(sqlite3_stmt *st, int column);
int store_db_query_int64(sqlite3 *db, sqlite3_stmt *prepared, const char *sql, int64_t *ret);
int store_device_add(Store *s, StoreDevice *d);
int store_refresh_pages(Store *s);
void store_schedule(Store *s);

/* store-schema.c */
int store_open_db(Store *s, char **ret_error);
void store_close_db(Store *s);
int store_move_aside(const char *path, char **ret_path);

/* store-sink.c */
bool store_sink_name_is_valid(const char *name);
