/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The buffer on SQLite. One writer: the store holds an flock() on the database file for as
 * long as it is open, so a second daemon on the same file gets -EBUSY instead of interleaving
 * ids with ours. Readers (sqlite3, the integration tests) may look at the file meanwhile: WAL
 * readers only ever see committed transactions. The flock is taken through a descriptor of our
 * own, which stays open until after sqlite3_close(): closing any descriptor of the file would
 * drop the POSIX locks SQLite holds on it.
 *
 * Everything waiting to be written (readings, anomaly events, devices seen, sink cursors) sits
 * in memory and is written by store_write() in one transaction. A failed transaction is rolled
 * back and leaves the memory state as it was, so a retry is just another store_write(). Ids
 * are assigned at commit time from last_id, which is why the readings in the file always form
 * one range [first_id, last_id] without holes: eviction only ever deletes a prefix of it, and
 * counts and per-reason drop counts are differences of ids, never COUNT(*) scans.
 *
 * The last ids also live in the one-row table `state`, written whenever a deletion could
 * remove the newest row, so ids keep increasing even when every reading has been evicted.
 *
 * Space: max_page_count caps the database file. store_enforce_cap() deletes readings once more
 * than 90% of its pages are in use, down to 88%, so the headroom lets the deletions themselves
 * (which need pages of their own) work even at the cap. The WAL comes on top: it is
 * checkpointed automatically (PASSIVE, every wal_autocheckpoint pages, at most 1000, about
 * 4 MiB; a reader holding an old snapshot only delays it) and then rewritten from its
 * start rather than truncated, down to journal_size_limit (twice that) when a large transaction
 * grew it. On close SQLite checkpoints and removes it. The file system thus needs about
 * max_size + 8 MiB. If it has less and a commit fails for want of space, a chunk of delivered
 * readings is let go (the next commit reuses their pages without growing the file) and the
 * commit retried once; otherwise the store stays degraded until space returns.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "idmap.h"
#include "store.h"

/* "bleg": PRAGMA application_id, so we never adopt somebody else's SQLite file. */
#define STORE_APPLICATION_ID 0x626c6567

#define STORE_PENDING_ANOMALIES_MAX 256U
#define STORE_CACHE_KIB 2000

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

#define READING_COLUMNS "ax, ay, az, gx, gy, gz, mx, my, mz, oa, ob, og"
#define ANOMALY_COLUMNS \
        "id, device, type, channel, start_usec, end_usec, start_seq, end_seq, count, peak_z, peak_value, peak_mean, peak_std"

static const char *const statement_sql[_STMT_MAX] = {
        [STMT_BEGIN] = "BEGIN IMMEDIATE",
        [STMT_COMMIT] = "COMMIT",
        [STMT_ROLLBACK] = "ROLLBACK",
        [STMT_INSERT_READING] = "INSERT INTO readings (id, device, time_usec, seq, channels, " READING_COLUMNS ") "
                                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        [STMT_INSERT_ANOMALY] = "INSERT INTO anomalies (" ANOMALY_COLUMNS ") "
                                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        [STMT_UPSERT_DEVICE] = "INSERT INTO devices (id, name, type, first_seen_usec, last_seen_usec, last_seq) "
                               "VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                               "ON CONFLICT (id) DO UPDATE SET type = excluded.type, "
                               "last_seen_usec = excluded.last_seen_usec, last_seq = excluded.last_seq",
        [STMT_UPSERT_SINK] = "INSERT INTO sinks (name, cursor, enabled) VALUES (?1, ?2, ?3) "
                             "ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, enabled = excluded.enabled",
        [STMT_UPDATE_STATE] = "UPDATE state SET last_reading_id = ?1, last_anomaly_id = ?2",
        [STMT_DELETE_READINGS] = "DELETE FROM readings WHERE id <= ?1",
        [STMT_DELETE_ANOMALIES] = "DELETE FROM anomalies WHERE id <= ?1",
        [STMT_FETCH] = "SELECT id, device, time_usec, seq, channels, " READING_COLUMNS " "
                       "FROM readings WHERE id > ?1 ORDER BY id LIMIT ?2",
        [STMT_OLDEST] = "SELECT time_usec FROM readings WHERE id > ?1 ORDER BY id LIMIT 1",
        [STMT_ANOMALIES_SINCE] = "SELECT " ANOMALY_COLUMNS " FROM anomalies WHERE start_usec >= ?1 "
                                 "ORDER BY start_usec, id LIMIT ?2",
        [STMT_PAGE_COUNT] = "PRAGMA page_count",
        [STMT_FREELIST_COUNT] = "PRAGMA freelist_count",
};

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

        bool degraded;
        uint64_t retry_at_usec;         /* CLOCK_MONOTONIC; for callers without an event loop */
        char *message;                  /* SQLite's message of the last failure */

        StoreStats stats;
};

/* SQLite result codes to negative errno. For I/O errors the errno SQLite saw says more. */
static int store_errno(sqlite3 *db, int rc) {
        int e;

        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EBADMSG;
        case SQLITE_TOOBIG:
                return -E2BIG;
        case SQLITE_CONSTRAINT:
                return -EEXIST;
        case SQLITE_CANTOPEN:
        case SQLITE_IOERR:
                e = db ? sqlite3_system_errno(db) : 0;
                return e > 0 ? -e : -EIO;
        default:
                return -EIO;
        }
}

static int set_error(char **ret_error, int error, const char *format, ...) _printf_(3, 4);
static int set_error(char **ret_error, int error, const char *format, ...) {
        va_list ap;

        if (ret_error) {
                free(*ret_error);
                va_start(ap, format);
                if (vasprintf(ret_error, format, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return error;
}

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        (void) clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000) + (uint64_t) ts.tv_nsec / 1000;
}

static bool sink_name_is_valid(const char *name) {
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n == 0 || n > STORE_SINK_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (name[i] <= ' ' || name[i] > '~')
                        return false;
        return true;
}

/* Copies a TEXT column into buf; false if it is NULL or does not fit. */
static bool column_copy_text(sqlite3_stmt *st, int column, char *buf, size_t size) {
        const unsigned char *t = sqlite3_column_text(st, column);
        int n = sqlite3_column_bytes(st, column);

        if (!t || n < 0 || (size_t) n >= size)
                return false;
        memcpy(buf, t, (size_t) n);
        buf[n] = 0;
        return true;
}

/* SQLite stores a NaN as NULL; where the schema says a value is there, NULL means NaN. */
static double column_double_or_nan(sqlite3_stmt *st, int column) {
        if (sqlite3_column_type(st, column) == SQLITE_NULL)
                return NAN;
        return sqlite3_column_double(st, column);
}

/* Steps a statement that returns no rows (or whose rows are ignored) and resets it. */
static int stmt_run(sqlite3_stmt *st) {
        int rc;

        do
                rc = sqlite3_step(st);
        while (rc == SQLITE_ROW);
        (void) sqlite3_reset(st);
        return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Runs a one-row, one-integer query such as a PRAGMA. */
static int db_query_int64(sqlite3 *db, sqlite3_stmt *prepared, const char *sql, int64_t *ret) {
        sqlite3_stmt *st = prepared;
        int rc;

        if (!st) {
                rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
                if (rc != SQLITE_OK)
                        return rc;
        }
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                *ret = sqlite3_column_int64(st, 0);
                rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE)
                rc = SQLITE_EMPTY;
        if (prepared)
                (void) sqlite3_reset(st);
        else
                (void) sqlite3_finalize(st);
        return rc;
}

/*
 * Schema migrations: migrations[v] brings a database from user_version v to v + 1. Each runs
 * in one transaction together with the new user_version, so a crash leaves either version.
 */
static int store_migrate_to_1(sqlite3 *db) {
        static const char sql[] =
                "CREATE TABLE state ("
                "  id INTEGER PRIMARY KEY CHECK (id = 1),"
                "  last_reading_id INTEGER NOT NULL,"
                "  last_anomaly_id INTEGER NOT NULL);"
                "CREATE TABLE devices ("
                "  id INTEGER PRIMARY KEY,"
                "  name TEXT NOT NULL UNIQUE,"
                "  type TEXT NOT NULL,"
                "  first_seen_usec INTEGER NOT NULL,"
                "  last_seen_usec INTEGER NOT NULL,"
                "  last_seq INTEGER NOT NULL);"
                /* A missing channel is NULL and clear in the mask; NULL with the bit set is a NaN. */
                "CREATE TABLE readings ("
                "  id INTEGER PRIMARY KEY,"
                "  device INTEGER NOT NULL,"
                "  time_usec INTEGER NOT NULL,"
                "  seq INTEGER NOT NULL,"
                "  channels INTEGER NOT NULL,"
                "  ax REAL, ay REAL, az REAL, gx REAL, gy REAL, gz REAL,"
                "  mx REAL, my REAL, mz REAL, oa REAL, ob REAL, og REAL);"
                "CREATE TABLE anomalies ("
                "  id INTEGER PRIMARY KEY,"
                "  device TEXT NOT NULL,"
                "  type TEXT NOT NULL,"
                "  channel TEXT NOT NULL,"
                "  start_usec INTEGER NOT NULL,"
                "  end_usec INTEGER NOT NULL,"
                "  start_seq INTEGER NOT NULL,"
                "  end_seq INTEGER NOT NULL,"
                "  count INTEGER NOT NULL,"
                "  peak_z REAL, peak_value REAL, peak_mean REAL, peak_std REAL);"
                "CREATE INDEX anomalies_start ON anomalies (start_usec);"
                "CREATE TABLE sinks ("
                "  name TEXT PRIMARY KEY,"
                "  cursor INTEGER NOT NULL,"
                "  enabled INTEGER NOT NULL);";
        uint64_t base = now_usec(CLOCK_REALTIME);
        char *insert;
        int rc;

        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return rc;

        /* Ids start at the wall clock in µs: a database made anew after the old one was lost or
         * moved aside never reuses the ids by which sinks have already named what they sent. */
        insert = sqlite3_mprintf("INSERT INTO state VALUES (1, %" PRIu64 ", %" PRIu64 ");"
                                 "PRAGMA application_id = %d;",
                                 base, base, STORE_APPLICATION_ID);
        if (!insert)
                return SQLITE_NOMEM;
        rc = sqlite3_exec(db, insert, NULL, NULL, NULL);
        sqlite3_free(insert);
        return rc;
}

static int (*const migrations[])(sqlite3 *db) = {
        [0] = store_migrate_to_1,
};

static_assert(ELEMENTSOF(migrations) == STORE_SCHEMA_VERSION, "one migration per schema version");

static int store_migrate(sqlite3 *db, int64_t from, char **ret_error) {
        int rc;

        for (int64_t v = from; v < STORE_SCHEMA_VERSION; v++) {
                char sql[64];

                rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
                if (rc == SQLITE_OK)
                        rc = migrations[v](db);
                if (rc == SQLITE_OK) {
                        snprintf(sql, sizeof(sql), "PRAGMA user_version = %" PRIi64, v + 1);
                        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
                }
                if (rc == SQLITE_OK)
                        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
                if (rc != SQLITE_OK) {
                        int k = store_errno(db, rc);

                        (void) set_error(ret_error, k, "Failed to upgrade the schema from version %" PRIi64 " to %" PRIi64 ": %s",
                                         v, v + 1, sqlite3_errmsg(db));
                        if (!sqlite3_get_autocommit(db))
                                (void) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
                        return k;
                }
        }
        return 0;
}

static StoreDevice *store_device_by_index(const Store *s, int64_t index) {
        size_t lo = 0, hi = s->n_devices;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (s->devices[mid]->index == index)
                        return s->devices[mid];
                if (s->devices[mid]->index < index)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

/* Takes d; the caller keeps devices sorted by index. */
static int store_device_add(Store *s, StoreDevice *d) {
        int k;

        if (s->n_devices == s->n_devices_allocated) {
                size_t n = MAX(s->n_devices_allocated * 2, (size_t) 16);
                StoreDevice **a = reallocarray(s->devices, n, sizeof(StoreDevice *));

                if (!a) {
                        free(d);
                        return -ENOMEM;
                }
                s->devices = a;
                s->n_devices_allocated = n;
        }

        k = idmap_put(s->devices_by_name, d->name, d);
        if (k < 0) {
                free(d);
                return k;
        }
        s->devices[s->n_devices++] = d;
        return 0;
}

static int store_load_devices(Store *s, char **ret_error) {
        sqlite3_stmt *st = NULL;
        int rc, k = 0;

        rc = sqlite3_prepare_v2(s->db,
                                "SELECT id, name, type, first_seen_usec, last_seen_usec, last_seq FROM devices ORDER BY id",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
                return set_error(ret_error, store_errno(s->db, rc), "Failed to read the devices: %s", sqlite3_errmsg(s->db));

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                StoreDevice *d = new0(StoreDevice, 1);

                if (!d) {
                        k = -ENOMEM;
                        break;
                }
                d->index = sqlite3_column_int64(st, 0);
                d->first_seen_usec = (uint64_t) sqlite3_column_int64(st, 3);
                d->last_seen_usec = (uint64_t) sqlite3_column_int64(st, 4);
                d->last_seq = (uint64_t) sqlite3_column_int64(st, 5);
                if (!column_copy_text(st, 1, d->name, sizeof(d->name)) ||
                    !device_id_is_valid(d->name, strlen(d->name)) ||
                    !column_copy_text(st, 2, d->type, sizeof(d->type)) ||
                    idmap_get(s->devices_by_name, d->name)) {
                        free(d);
                        k = set_error(ret_error, -EBADMSG, "Table devices holds an invalid row (id %" PRIi64 ")",
                                      (int64_t) sqlite3_column_int64(st, 0));
                        break;
                }
                k = store_device_add(s, d);
                if (k < 0)
                        break;
        }
        if (k == 0 && rc != SQLITE_DONE)
                k = set_error(ret_error, store_errno(s->db, rc), "Failed to read the devices: %s", sqlite3_errmsg(s->db));
        (void) sqlite3_finalize(st);
        return k;
}

static int store_load_sinks(Store *s, char **ret_error) {
        sqlite3_stmt *st = NULL;
        int rc, k = 0;

        rc = sqlite3_prepare_v2(s->db, "SELECT name, cursor, enabled FROM sinks ORDER BY name", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return set_error(ret_error, store_errno(s->db, rc), "Failed to read the sinks: %s", sqlite3_errmsg(s->db));

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                Sink *a = reallocarray(s->sinks, s->n_sinks + 1, sizeof(Sink)), *sink;

                if (!a) {
                        k = -ENOMEM;
                        break;
                }
                s->sinks = a;
                sink = s->sinks + s->n_sinks;
                *sink = (Sink) {
                        .cursor = (uint64_t) sqlite3_column_int64(st, 1),
                        .enabled = sqlite3_column_int64(st, 2) != 0,
                };
                if (!column_copy_text(st, 0, sink->name, sizeof(sink->name)) || !sink_name_is_valid(sink->name)) {
                        k = set_error(ret_error, -EBADMSG, "Table sinks holds an invalid row");
                        break;
                }
                sink->handed_out = sink->cursor;
                s->n_sinks++;
        }
        if (k == 0 && rc != SQLITE_DONE)
                k = set_error(ret_error, store_errno(s->db, rc), "Failed to read the sinks: %s", sqlite3_errmsg(s->db));
        (void) sqlite3_finalize(st);
        return k;
}

/* The id ranges, from the rowid b-trees' ends and the state row: no scans. */
static int store_load_ids(Store *s, char **ret_error) {
        int64_t last_reading = 0, last_anomaly = 0, v;
        sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(s->db, "SELECT last_reading_id, last_anomaly_id FROM state WHERE id = 1", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        last_reading = sqlite3_column_int64(st, 0);
                        last_anomaly = sqlite3_column_int64(st, 1);
                        rc = SQLITE_OK;
                } else if (rc == SQLITE_DONE)
                        rc = SQLITE_CORRUPT;
        }
        (void) sqlite3_finalize(st);
        if (rc != SQLITE_OK)
                return set_error(ret_error, store_errno(s->db, rc), "Failed to read the state: %s",
                                 rc == SQLITE_CORRUPT ? "no state row" : sqlite3_errmsg(s->db));

        s->last_id = (uint64_t) MAX(last_reading, 0);
        rc = db_query_int64(s->db, NULL, "SELECT max(id) FROM readings", &v);
        if (rc == SQLITE_OK)
                s->last_id = MAX(s->last_id, (uint64_t) MAX(v, 0));
        s->first_id = s->last_id + 1;
        if (rc == SQLITE_OK)
                rc = db_query_int64(s->db, NULL, "SELECT coalesce(min(id), 0) FROM readings", &v);
        if (rc == SQLITE_OK && v > 0)
                s->first_id = (uint64_t) v;

        s->last_anomaly_id = (uint64_t) MAX(last_anomaly, 0);
        if (rc == SQLITE_OK)
                rc = db_query_int64(s->db, NULL, "SELECT coalesce(max(id), 0) FROM anomalies", &v);
        if (rc == SQLITE_OK)
                s->last_anomaly_id = MAX(s->last_anomaly_id, (uint64_t) MAX(v, 0));
        s->first_anomaly_id = s->last_anomaly_id + 1;
        if (rc == SQLITE_OK)
                rc = db_query_int64(s->db, NULL, "SELECT coalesce(min(id), 0) FROM anomalies", &v);
        if (rc == SQLITE_OK && v > 0)
                s->first_anomaly_id = (uint64_t) v;

        if (rc != SQLITE_OK)
                return set_error(ret_error, store_errno(s->db, rc), "Failed to read the id ranges: %s",
                                 sqlite3_errmsg(s->db));
        return 0;
}

static int store_refresh_pages(Store *s) {
        int64_t pages, free_pages;
        int rc;

        rc = db_query_int64(s->db, s->stmt[STMT_PAGE_COUNT], NULL, &pages);
        if (rc == SQLITE_OK)
                rc = db_query_int64(s->db, s->stmt[STMT_FREELIST_COUNT], NULL, &free_pages);
        if (rc != SQLITE_OK)
                return store_errno(s->db, rc);
        s->page_count = (uint64_t) MAX(pages, 0);
        s->freelist_count = (uint64_t) MAX(free_pages, 0);
        return 0;
}

static uint64_t store_used_pages(const Store *s) {
        return s->page_count > s->freelist_count ? s->page_count - s->freelist_count : 0;
}

/* Opens s->path and makes it a current database. -EBADMSG means corrupt or not a database. */
static int store_open_db(Store *s, char **ret_error) {
        static const char pragmas[] =
                "PRAGMA synchronous = FULL;"
                "PRAGMA foreign_keys = OFF;"
                "PRAGMA secure_delete = OFF;" /* evicting must not rewrite the pages it frees */
                "PRAGMA temp_store = MEMORY;";
        sqlite3_stmt *st = NULL;
        const char *mode;
        int64_t app_id, version, objects, page_size, v;
        char sql[128];
        int rc, k;

        rc = sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
                k = store_errno(s->db, rc);
                return set_error(ret_error, k, "Failed to open %s: %s", s->path,
                                 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        }
        (void) sqlite3_extended_result_codes(s->db, 1);

        /* SQLite has created the file if it was missing. */
        s->lock_fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (s->lock_fd < 0) {
                k = negative_errno();
                return set_error(ret_error, k, "Failed to open %s: %s", s->path, strerror(-k));
        }
        if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                k = errno == EWOULDBLOCK ? -EBUSY : negative_errno();
                return set_error(ret_error, k, "%s is in use by another process", s->path);
        }

        rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                mode = (const char *) sqlite3_column_text(st, 0);
                rc = mode && strcasecmp(mode, "wal") == 0 ? SQLITE_OK : SQLITE_MISUSE;
        }
        (void) sqlite3_finalize(st);
        if ((rc & 0xff) == SQLITE_BUSY)
                return set_error(ret_error, -EBUSY, "%s is in use by another process", s->path);
        if (rc == SQLITE_MISUSE)
                return set_error(ret_error, -EOPNOTSUPP, "%s: cannot switch to WAL mode", s->path);
        if (rc != SQLITE_OK)
                return set_error(ret_error, store_errno(s->db, rc), "%s: %s", s->path, sqlite3_errmsg(s->db));

        /* Reads every page, but checks no index against its table: what the size of our files
         * allows at every start. quick_check(1) stops at the first problem. */
        rc = sqlite3_prepare_v2(s->db, "PRAGMA quick_check(1)", -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                const char *result = (const char *) sqlite3_column_text(st, 0);

                if (!result || strcmp(result, "ok") != 0) {
                        k = set_error(ret_error, -EBADMSG, "%s fails quick_check: %s", s->path, strempty(result));
                        /* SQLite's report spans lines; the log wants one. */
                        for (char *p = ret_error ? *ret_error : NULL; p && *p; p++)
                                if (*p == '\n')
                                        *p = ' ';
                        (void) sqlite3_finalize(st);
                        return k;
                }
                rc = SQLITE_OK;
        }
        (void) sqlite3_finalize(st);
        if (rc != SQLITE_OK)
                return set_error(ret_error, store_errno(s->db, rc), "%s: %s", s->path, sqlite3_errmsg(s->db));

        rc = db_query_int64(s->db, NULL, "PRAGMA application_id", &app_id);
        if (rc == SQLITE_OK)
                rc = db_query_int64(s->db, NULL, "PRAGMA user_version", &version);
        if (rc == SQLITE_OK)
                rc = db_query_int64(s->db, NULL, "SELECT count(*) FROM sqlite_schema", &objects);
        if (rc != SQLITE_OK)
                return set_error(ret_error, store_errno(s->db, rc), "%s: %s", s->path, sqlite3_errmsg(s->db));

        if (app_id != STORE_APPLICATION_ID && (app_id != 0 || objects > 0))
                return set_error(ret_error, -EMEDIUMTYPE,
                                 "%s is an SQLite database but not a blegate buffer (application_id 0x%08" PRIx64 "), "
                                 "refusing to touch it",
                                 s->path, (uint64_t) app_id);
        if (version > STORE_SCHEMA_VERSION)
                return set_error(ret_error, -EPROTONOSUPPORT,
                                 "%s has schema version %" PRIi64 ", newer than the %d this blegated knows; "
                                 "refusing to touch it (run a newer blegated, or move the file away)",
                                 s->path, version, STORE_SCHEMA_VERSION);
        if (version < 0)
                return set_error(ret_error, -EBADMSG, "%s has an invalid schema version %" PRIi64, s->path, version);

        k = store_migrate(s->db, version, ret_error);
        if (k < 0)
                return k;

        rc = sqlite3_exec(s->db, pragmas, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
                rc = db_query_int64(s->db, NULL, "PRAGMA page_size", &page_size);
        if (rc != SQLITE_OK)
                return set_error(ret_error, store_errno(s->db, rc), "%s: %s", s->path, sqlite3_errmsg(s->db));

        s->page_size = (uint64_t) MAX(page_size, 512);
        s->max_pages = s->settings.max_size / s->page_size;
        s->high_pages = s->max_pages - s->max_pages / 10;
        s->low_pages = s->high_pages - MAX(s->max_pages / 50, (uint64_t) 1);

        /* A checkpoint every 1000 pages (SQLite's default), fewer for a small cap so the WAL
         * stays small beside it; the WAL file is truncated back to twice that when a large
         * transaction has grown it. SQLite keeps max_page_count at least the current size. */
        v = (int64_t) MIN(MAX(s->max_pages / 16, (uint64_t) 100), (uint64_t) 1000);
        snprintf(sql, sizeof(sql),
                 "PRAGMA cache_size = -%d; PRAGMA wal_autocheckpoint = %" PRIi64 "; PRAGMA journal_size_limit = %" PRIu64 ";",
                 STORE_CACHE_KIB, v, (uint64_t) v * 2 * s->page_size);
        rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK) {
                snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %" PRIu64, s->max_pages);
                rc = db_query_int64(s->db, NULL, sql, &v);
        }
        if (rc != SQLITE_OK)
                return set_error(ret_error, store_errno(s->db, rc), "%s: %s", s->path, sqlite3_errmsg(s->db));

        for (StoreStatement i = 0; i < _STMT_MAX; i++) {
                rc = sqlite3_prepare_v3(s->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL);
                /* SQLITE_ERROR: a table or column is missing, the file is not what it claims. */
                if (rc != SQLITE_OK)
                        return set_error(ret_error, rc == SQLITE_ERROR ? -EBADMSG : store_errno(s->db, rc),
                                         "%s: failed to prepare \"%s\": %s", s->path, statement_sql[i],
                                         sqlite3_errmsg(s->db));
        }

        k = store_load_ids(s, ret_error);
        if (k >= 0)
                k = store_load_devices(s, ret_error);
        if (k >= 0)
                k = store_load_sinks(s, ret_error);
        if (k >= 0) {
                k = store_refresh_pages(s);
                if (k < 0)
                        (void) set_error(ret_error, k, "%s: %s", s->path, sqlite3_errmsg(s->db));
        }
        return k;
}

/* Drops what store_open_db() built, so that it can be called again. */
static void store_close_db(Store *s) {
        for (StoreStatement i = 0; i < _STMT_MAX; i++)
                s->stmt[i] = (sqlite3_finalize(s->stmt[i]), NULL);
        if (s->db)
                (void) sqlite3_close(s->db);
        s->db = NULL;
        s->lock_fd = safe_close(s->lock_fd);

        for (size_t i = 0; i < s->n_devices; i++)
                (void) idmap_remove(s->devices_by_name, s->devices[i]->name);
        for (size_t i = 0; i < s->n_devices; i++)
                free(s->devices[i]);
        s->n_devices = 0;
        s->sinks = mfree(s->sinks);
        s->n_sinks = 0;
}

/* Renames the database and its -wal and -shm files to "<path>.corrupt-<UTC time>[.N]". */
static int store_move_aside(const char *path, char **ret_path) {
        static const char *const suffixes[] = { "-wal", "-shm" };
        _cleanup_free_ char *aside = NULL;
        char stamp[32];
        struct tm tm;
        time_t t = time(NULL);

        if (!gmtime_r(&t, &tm) || strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) == 0)
                return -EINVAL;

        for (unsigned n = 0;; n++) {
                aside = mfree(aside);
                if ((n == 0 ? asprintf(&aside, "%s.corrupt-%s", path, stamp)
                            : asprintf(&aside, "%s.corrupt-%s.%u", path, stamp, n)) < 0) {
                        aside = NULL;
                        return -ENOMEM;
                }
                if (renameat2(AT_FDCWD, path, AT_FDCWD, aside, RENAME_NOREPLACE) >= 0)
                        break;
                if (errno != EEXIST || n >= 100)
                        return negative_errno();
        }

        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                _cleanup_free_ char *from = NULL, *to = NULL;

                if (asprintf(&from, "%s%s", path, suffixes[i]) < 0 || asprintf(&to, "%s%s", aside, suffixes[i]) < 0)
                        return -ENOMEM;
                if (rename(from, to) < 0 && errno != ENOENT)
                        return negative_errno();
        }

        *ret_path = TAKE_PTR(aside);
        return 0;
}

static void store_set_message(Store *s) {
        free(s->message);
        s->message = strdup(sqlite3_errmsg(s->db));
}

/* The highest id every enabled sink has acknowledged; 0 with no enabled sink: then nothing is
 * delivered. */
static uint64_t store_delivered_upto(const Store *s) {
        uint64_t upto = UINT64_MAX;
        bool any = false;

        for (size_t i = 0; i < s->n_sinks; i++)
                if (s->sinks[i].enabled) {
                        upto = MIN(upto, s->sinks[i].cursor);
                        any = true;
                }
        return any ? upto : 0;
}

static uint64_t store_buffered(const Store *s) {
        return s->last_id >= s->first_id ? s->last_id - s->first_id + 1 : 0;
}

static void store_arm_timer(Store *s, uint64_t delay_usec) {
        uint64_t now;

        if (!s->timer)
                return;
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_usec(CLOCK_MONOTONIC);
        (void) sd_event_source_set_time(s->timer, now + delay_usec);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
        s->timer_armed = true;
}

/* Something is queued: make sure a commit comes within commit_interval_usec. While degraded,
 * the retry timer is already armed. */
static void store_schedule(Store *s) {
        if (!s->timer_armed && !s->degraded)
                store_arm_timer(s, s->settings.commit_interval_usec);
}

/* Deletes the rows up to an id from readings or anomalies in one transaction, recording the
 * last ids in the state row first, since the deletion may take the newest row. */
/* Commits the open transaction if everything in it went well (rc), else rolls it back; returns
 * 0 or the negative errno of the failure, with the store's message set. */
static int store_end_transaction(Store *s, int rc) {
        if (rc == SQLITE_OK)
                rc = stmt_run(s->stmt[STMT_COMMIT]);
        if (rc != SQLITE_OK) {
                int k = store_errno(s->db, rc);

                store_set_message(s);
                /* After SQLITE_FULL or an I/O error SQLite may already have rolled back. */
                if (!sqlite3_get_autocommit(s->db))
                        (void) stmt_run(s->stmt[STMT_ROLLBACK]);
                return k;
        }
        return 0;
}

static int store_delete_upto(Store *s, StoreStatement delete, uint64_t upto) {
        sqlite3_stmt *state = s->stmt[STMT_UPDATE_STATE];
        int rc;

        rc = stmt_run(s->stmt[STMT_BEGIN]);
        if (rc == SQLITE_OK) {
                (void) sqlite3_bind_int64(state, 1, (sqlite3_int64) s->last_id);
                (void) sqlite3_bind_int64(state, 2, (sqlite3_int64) s->last_anomaly_id);
                rc = stmt_run(state);
        }
        if (rc == SQLITE_OK) {
                (void) sqlite3_bind_int64(s->stmt[delete], 1, (sqlite3_int64) upto);
                rc = stmt_run(s->stmt[delete]);
        }
        return store_end_transaction(s, rc);
}

/* Deletes the oldest n readings (fewer if delivered_only and not all of them are delivered),
 * counting each as delivered or not. Returns how many were deleted, or a negative errno. */
static int64_t store_evict_readings(Store *s, uint64_t n, bool delivered_only) {
        uint64_t delivered = store_delivered_upto(s), upto, d;
        int k;

        n = MIN(n, store_buffered(s));
        if (n == 0)
                return 0;
        upto = s->first_id + n - 1;
        if (delivered_only)
                upto = MIN(upto, delivered);
        if (upto < s->first_id)
                return 0;

        k = store_delete_upto(s, STMT_DELETE_READINGS, upto);
        if (k < 0)
                return k;

        d = delivered >= s->first_id ? MIN(delivered, upto) - s->first_id + 1 : 0;
        n = upto - s->first_id + 1;
        s->stats.evicted_delivered += d;
        s->stats.evicted_undelivered += n - d;
        s->first_id = upto + 1;
        return (int64_t) n;
}

static uint64_t store_anomaly_count(const Store *s) {
        return s->last_anomaly_id >= s->first_anomaly_id ? s->last_anomaly_id - s->first_anomaly_id + 1 : 0;
}

/* The same for anomaly events, for a file that holds nothing else any more. */
static int64_t store_evict_anomalies(Store *s, uint64_t n) {
        int k;

        n = MIN(n, store_anomaly_count(s));
        if (n == 0)
                return 0;

        k = store_delete_upto(s, STMT_DELETE_ANOMALIES, s->first_anomaly_id + n - 1);
        if (k < 0)
                return k;

        s->stats.anomalies_dropped += n;
        s->first_anomaly_id += n;
        return (int64_t) n;
}

/* Deletes the oldest readings, delivered ones first, until at most target pages are in use.
 * How many rows that takes is estimated from the average row size; a few rounds correct the
 * estimate. Once no reading is left, the oldest anomaly events go. */
static int store_evict_to(Store *s, uint64_t target) {
        int k;

        for (unsigned round = 0; round < 16 && store_used_pages(s) > target; round++) {
                uint64_t used = store_used_pages(s), excess = used - target, rows = store_buffered(s), n;
                uint64_t delivered = store_delivered_upto(s);
                int64_t m;

                if (rows > 0) {
                        n = MAX((rows * excess + used - 1) / used, (uint64_t) 1);
                        /* Delivered readings go first, even if that is fewer than wanted. */
                        if (delivered >= s->first_id && delivered - s->first_id + 1 < n)
                                n = delivered - s->first_id + 1;
                        m = store_evict_readings(s, n, false);
                } else {
                        rows = store_anomaly_count(s);
                        m = store_evict_anomalies(s, MAX((rows * excess + used - 1) / used, (uint64_t) 1));
                }
                if (m < 0)
                        return (int) m;
                if (m == 0)
                        break;
                k = store_refresh_pages(s);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* After each commit: above 90% of the cap, make room down to 88%. */
static int store_enforce_cap(Store *s) {
        int k;

        k = store_refresh_pages(s);
        if (k < 0)
                return k;
        if (store_used_pages(s) <= s->high_pages)
                return 0;
        return store_evict_to(s, s->low_pages);
}

/* After a commit failed for want of space. If the file is at its cap, the queued batch was
 * larger than the headroom (a long degraded spell with a small cap): make room for it, and a
 * margin. Otherwise the file system is full: let go of a chunk of delivered readings, whose
 * pages the next attempt can reuse without growing the file. */
static void store_make_room(Store *s) {
        uint64_t used, rows, chunk, need;

        if (store_refresh_pages(s) < 0)
                return;
        used = MAX(store_used_pages(s), (uint64_t) 1);
        rows = store_buffered(s);

        if (s->page_count >= s->high_pages) {
                /* Pages per reading as the file holds them, at least 1/64. */
                need = rows > 0 ? (s->n_pending * used + rows - 1) / rows : s->n_pending / 64 + 1;
                need += s->max_pages - s->low_pages;
                (void) store_evict_to(s, s->max_pages > need ? MIN(s->max_pages - need, s->low_pages) : 0);
                return;
        }

        chunk = rows * MAX(s->max_pages / 50, (uint64_t) 1) / used;
        (void) store_evict_readings(s, MAX(chunk, (uint64_t) 1), true);
}

static void bind_text(sqlite3_stmt *st, int i, const char *t) {
        (void) sqlite3_bind_text(st, i, t, -1, SQLITE_STATIC);
}

/* Writes everything queued in one transaction. On failure everything is rolled back and the
 * memory state is untouched; on success the caller updates it (store_written()). */
static int store_write(Store *s) {
        sqlite3_stmt *st;
        uint64_t id = s->last_id, aid = s->last_anomaly_id;
        int rc;

        rc = stmt_run(s->stmt[STMT_BEGIN]);

        st = s->stmt[STMT_INSERT_READING];
        for (size_t i = 0; rc == SQLITE_OK && i < s->n_pending; i++) {
                const PendingReading *p = s->pending + (s->pending_head + i) % s->settings.max_pending;

                (void) sqlite3_bind_int64(st, 1, (sqlite3_int64) ++id);
                (void) sqlite3_bind_int64(st, 2, p->device->index);
                (void) sqlite3_bind_int64(st, 3, (sqlite3_int64) p->time_usec);
                (void) sqlite3_bind_int64(st, 4, (sqlite3_int64) p->seq);
                (void) sqlite3_bind_int64(st, 5, p->channels);
                for (Channel c = 0; c < _CHANNEL_MAX; c++)
                        if (p->channels & CHANNEL_BIT(c))
                                (void) sqlite3_bind_double(st, 6 + c, p->values[c]);
                        else
                                (void) sqlite3_bind_null(st, 6 + c);
                rc = stmt_run(st);
        }

        st = s->stmt[STMT_INSERT_ANOMALY];
        for (size_t i = 0; rc == SQLITE_OK && i < s->n_pending_anomalies; i++) {
                const AnomalyEvent *e = s->pending_anomalies + i;

                (void) sqlite3_bind_int64(st, 1, (sqlite3_int64) ++aid);
                bind_text(st, 2, e->device);
                bind_text(st, 3, e->type);
                bind_text(st, 4, channel_to_string(e->channel));
                (void) sqlite3_bind_int64(st, 5, (sqlite3_int64) e->start_usec);
                (void) sqlite3_bind_int64(st, 6, (sqlite3_int64) e->end_usec);
                (void) sqlite3_bind_int64(st, 7, (sqlite3_int64) e->start_seq);
                (void) sqlite3_bind_int64(st, 8, (sqlite3_int64) e->end_seq);
                (void) sqlite3_bind_int64(st, 9, e->count);
                /* A NaN becomes NULL: SQLite has no NaN. */
                (void) sqlite3_bind_double(st, 10, e->peak_z);
                (void) sqlite3_bind_double(st, 11, e->peak_value);
                (void) sqlite3_bind_double(st, 12, e->peak_mean);
                (void) sqlite3_bind_double(st, 13, e->peak_std);
                rc = stmt_run(st);
        }

        /* Old anomaly events beyond the bound go in the same transaction; the state row keeps
         * the last id in case the deletion takes them all. */
        if (rc == SQLITE_OK && aid >= s->first_anomaly_id && aid - s->first_anomaly_id + 1 > s->settings.max_anomalies) {
                (void) sqlite3_bind_int64(s->stmt[STMT_UPDATE_STATE], 1, (sqlite3_int64) id);
                (void) sqlite3_bind_int64(s->stmt[STMT_UPDATE_STATE], 2, (sqlite3_int64) aid);
                rc = stmt_run(s->stmt[STMT_UPDATE_STATE]);
                if (rc == SQLITE_OK) {
                        (void) sqlite3_bind_int64(s->stmt[STMT_DELETE_ANOMALIES], 1,
                                                  (sqlite3_int64) (aid - s->settings.max_anomalies));
                        rc = stmt_run(s->stmt[STMT_DELETE_ANOMALIES]);
                }
        }

        st = s->stmt[STMT_UPSERT_DEVICE];
        for (size_t i = 0; rc == SQLITE_OK && i < s->n_devices; i++) {
                const StoreDevice *d = s->devices[i];

                if (!d->dirty)
                        continue;
                (void) sqlite3_bind_int64(st, 1, d->index);
                bind_text(st, 2, d->name);
                bind_text(st, 3, d->type);
                (void) sqlite3_bind_int64(st, 4, (sqlite3_int64) d->first_seen_usec);
                (void) sqlite3_bind_int64(st, 5, (sqlite3_int64) d->last_seen_usec);
                (void) sqlite3_bind_int64(st, 6, (sqlite3_int64) d->last_seq);
                rc = stmt_run(st);
        }

        st = s->stmt[STMT_UPSERT_SINK];
        for (size_t i = 0; rc == SQLITE_OK && i < s->n_sinks; i++) {
                const Sink *sink = s->sinks + i;

                if (!sink->dirty)
                        continue;
                bind_text(st, 1, sink->name);
                (void) sqlite3_bind_int64(st, 2, (sqlite3_int64) sink->cursor);
                (void) sqlite3_bind_int64(st, 3, sink->enabled);
                rc = stmt_run(st);
        }

        return store_end_transaction(s, rc);
}

static void store_written(Store *s) {
        uint64_t aid = s->last_anomaly_id + s->n_pending_anomalies;

        s->last_id += s->n_pending;
        s->stats.committed += s->n_pending;
        s->pending_head = s->n_pending = 0;

        s->last_anomaly_id = aid;
        s->stats.anomalies_committed += s->n_pending_anomalies;
        s->n_pending_anomalies = 0;
        if (aid >= s->first_anomaly_id && aid - s->first_anomaly_id + 1 > s->settings.max_anomalies) {
                s->stats.anomalies_dropped += aid - s->settings.max_anomalies + 1 - s->first_anomaly_id;
                s->first_anomaly_id = aid - s->settings.max_anomalies + 1;
        }

        for (size_t i = 0; i < s->n_devices; i++)
                s->devices[i]->dirty = false;
        for (size_t i = 0; i < s->n_sinks; i++)
                s->sinks[i].dirty = false;
        s->stats.commits++;
}

int store_commit(Store *s) {
        int k;

        assert(s);

        if (store_is_idle(s))
                return 0;

        k = store_write(s);
        if (k == -ENOSPC) {
                store_make_room(s);
                k = store_write(s);
        }
        if (k < 0) {
                s->stats.commit_failures++;
                s->retry_at_usec = now_usec(CLOCK_MONOTONIC) + s->settings.retry_usec;
                store_arm_timer(s, s->settings.retry_usec);
                if (!s->degraded) {
                        s->degraded = true;
                        if (s->settings.on_state_changed)
                                s->settings.on_state_changed(s, k, s->message, s->settings.userdata);
                }
                return k;
        }

        store_written(s);
        if (s->timer) {
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
                s->timer_armed = false;
        }
        /* A failure here shows up as a failed commit soon enough. */
        (void) store_enforce_cap(s);

        if (s->degraded) {
                s->degraded = false;
                if (s->settings.on_state_changed)
                        s->settings.on_state_changed(s, 0, NULL, s->settings.userdata);
        }
        if (s->settings.on_committed)
                s->settings.on_committed(s, s->last_id, s->settings.userdata);
        return 0;
}

static int store_on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        Store *s = userdata;

        s->timer_armed = false;
        (void) store_commit(s);
        return 0;
}

static StoreDevice *store_device_new(Store *s, const Reading *r) {
        StoreDevice *d = new0(StoreDevice, 1);

        if (!d)
                return NULL;
        memcpy(d->name, r->device, sizeof(d->name));
        d->index = s->n_devices > 0 ? s->devices[s->n_devices - 1]->index + 1 : 1;
        d->first_seen_usec = r->time_usec;
        if (store_device_add(s, d) < 0)
                return NULL;
        return d;
}

/* While degraded, the timer retries; without an event loop, the next append after retry_usec. */
static bool store_retry_is_due(const Store *s) {
        return s->degraded && !s->timer && now_usec(CLOCK_MONOTONIC) >= s->retry_at_usec;
}

bool store_has_reading(const Store *s, const Reading *r) {
        const StoreDevice *d;

        assert(s);
        assert(r);

        d = idmap_get(s->devices_by_name, r->device);
        return d && r->seq <= d->last_seq;
}

int store_append(Store *s, const Reading *r) {
        PendingReading *p;
        StoreDevice *d;
        size_t n;

        assert(s);
        assert(r);

        n = strnlen(r->device, sizeof(r->device));
        if (n >= sizeof(r->device) || !device_id_is_valid(r->device, n) ||
            strnlen(r->type, sizeof(r->type)) >= sizeof(r->type) || (r->channels & ~CHANNELS_ALL))
                return -EINVAL;

        d = idmap_get(s->devices_by_name, r->device);
        if (!d) {
                d = store_device_new(s, r);
                if (!d)
                        return -ENOMEM;
        } else if (r->seq <= d->last_seq) {
                s->stats.duplicates++;
                return 0;
        }

        /* The queue is full only while degraded: if a retry is due, try it before dropping. */
        if (s->n_pending == s->settings.max_pending && store_retry_is_due(s))
                (void) store_commit(s);
        if (s->n_pending == s->settings.max_pending) {
                /* Give up the oldest reading rather than the newest. */
                s->pending_head = (s->pending_head + 1) % s->settings.max_pending;
                s->n_pending--;
                s->stats.write_failed++;
        }
        p = s->pending + (s->pending_head + s->n_pending) % s->settings.max_pending;
        p->device = d;
        p->time_usec = r->time_usec;
        p->seq = r->seq;
        p->channels = r->channels;
        memcpy(p->values, r->values, sizeof(p->values));
        s->n_pending++;
        s->stats.appended++;

        d->last_seq = r->seq;
        d->last_seen_usec = MAX(d->last_seen_usec, r->time_usec);
        if (!streq(d->type, r->type))
                memcpy(d->type, r->type, sizeof(d->type));
        d->dirty = true;

        if (s->n_pending >= s->settings.commit_readings) {
                if (!s->degraded || store_retry_is_due(s))
                        (void) store_commit(s);
        } else
                store_schedule(s);
        return 1;
}

int store_append_anomaly(Store *s, const AnomalyEvent *e) {
        size_t n;

        assert(s);
        assert(e);

        n = strnlen(e->device, sizeof(e->device));
        if (n >= sizeof(e->device) || !device_id_is_valid(e->device, n) ||
            strnlen(e->type, sizeof(e->type)) >= sizeof(e->type) || !channel_to_string(e->channel))
                return -EINVAL;

        if (s->n_pending_anomalies == STORE_PENDING_ANOMALIES_MAX) {
                memmove(s->pending_anomalies, s->pending_anomalies + 1,
                        (STORE_PENDING_ANOMALIES_MAX - 1) * sizeof(AnomalyEvent));
                s->n_pending_anomalies--;
                s->stats.anomalies_dropped++;
        }
        s->pending_anomalies[s->n_pending_anomalies++] = *e;
        s->stats.anomalies_appended++;
        store_schedule(s);
        return 0;
}

static int store_settings_resolve(StoreSettings *t, const StoreSettings *settings) {
        *t = *settings;
        if (!t->path || !t->path[0])
                return -EINVAL;
        if (t->max_size == 0)
                t->max_size = STORE_MAX_SIZE_DEFAULT;
        if (t->commit_readings == 0)
                t->commit_readings = STORE_COMMIT_READINGS_DEFAULT;
        if (t->commit_interval_usec == 0)
                t->commit_interval_usec = STORE_COMMIT_INTERVAL_USEC_DEFAULT;
        if (t->max_pending == 0)
                t->max_pending = MAX(STORE_MAX_PENDING_DEFAULT, t->commit_readings);
        if (t->retry_usec == 0)
                t->retry_usec = STORE_RETRY_USEC_DEFAULT;
        if (t->max_anomalies == 0)
                t->max_anomalies = STORE_MAX_ANOMALIES_DEFAULT;

        if (t->max_size < STORE_MAX_SIZE_MIN || t->max_size > (UINT64_C(1) << 46) ||
            t->max_pending < t->commit_readings || t->max_pending > (1U << 24))
                return -EINVAL;
        return 0;
}

/* The directory must exist: creating it is systemd's job (StateDirectory=), and a missing one
 * more likely means a wrong path than a first start. */
static int store_check_directory(const char *path, char **ret_error) {
        _cleanup_free_ char *dir = NULL;
        const char *slash = strrchr(path, '/');
        struct stat st;

        if (!slash)
                return 0;
        dir = slash == path ? strdup("/") : strndup(path, (size_t) (slash - path));
        if (!dir)
                return -ENOMEM;
        if (stat(dir, &st) < 0) {
                int k = negative_errno();

                return set_error(ret_error, k, "Directory %s of the buffer %s: %s", dir, path, strerror(-k));
        }
        if (!S_ISDIR(st.st_mode))
                return set_error(ret_error, -ENOTDIR, "%s, the directory of the buffer %s, is not a directory", dir, path);
        return 0;
}

int store_open(sd_event *e, const StoreSettings *settings, Store **ret, char **ret_error) {
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_free_ char *error = NULL, *aside = NULL;
        StoreSettings t;
        int k, moved = 0;

        assert(settings);
        assert(ret);

        if (ret_error)
                *ret_error = NULL;

        k = store_settings_resolve(&t, settings);
        if (k < 0)
                return set_error(ret_error, k, "Invalid buffer settings");

        k = store_check_directory(t.path, ret_error);
        if (k < 0)
                return k;

        s = new0(Store, 1);
        if (!s)
                return -ENOMEM;
        s->lock_fd = -EBADF;
        s->settings = t;
        s->path = strdup(t.path);
        if (!s->path)
                return -ENOMEM;
        s->settings.path = s->path;

        k = idmap_new(&s->devices_by_name);
        if (k < 0)
                return k;
        /* Virtual until used: while healthy only the first commit_readings entries are touched. */
        s->pending = new(PendingReading, t.max_pending);
        s->pending_anomalies = new(AnomalyEvent, STORE_PENDING_ANOMALIES_MAX);
        if (!s->pending || !s->pending_anomalies)
                return -ENOMEM;

        k = store_open_db(s, &error);
        if (k == -EBADMSG) {
                store_close_db(s);
                k = store_move_aside(s->path, &aside);
                if (k < 0)
                        return set_error(ret_error, k, "%s; failed to move it aside: %s", strempty(error), strerror(-k));
                moved = 1;
                k = store_open_db(s, ret_error);
        } else if (k < 0 && ret_error)
                *ret_error = TAKE_PTR(error);
        if (k < 0)
                return k;

        if (e) {
                s->event = sd_event_ref(e);
                k = sd_event_add_time(e, &s->timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, store_on_timer, s);
                if (k < 0)
                        return set_error(ret_error, k, "Failed to add the commit timer: %s", strerror(-k));
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
                (void) sd_event_source_set_description(s->timer, "store-commit");
        }

        if (moved)
                (void) set_error(ret_error, 1, "%s; moved it to %s and started an empty buffer", strempty(error), aside);

        *ret = TAKE_PTR(s);
        return moved;
}

Store *store_free(Store *s) {
        if (!s)
                return NULL;

        /* The caller may be half torn down: no callbacks from here on. */
        s->settings.on_committed = NULL;
        s->settings.on_state_changed = NULL;
        if (s->db)
                (void) store_commit(s);
        sd_event_source_disable_unref(s->timer);
        sd_event_unref(s->event);
        store_close_db(s);
        idmap_free(s->devices_by_name);
        free(s->devices);
        free(s->pending);
        free(s->pending_anomalies);
        free(s->message);
        free(s->path);
        return mfree(s);
}

bool store_is_degraded(const Store *s) {
        return s->degraded;
}

bool store_is_idle(const Store *s) {
        if (s->n_pending > 0 || s->n_pending_anomalies > 0)
                return false;
        for (size_t i = 0; i < s->n_sinks; i++)
                if (s->sinks[i].dirty)
                        return false;
        return true;
}

void store_get_stats(const Store *s, StoreStats *ret) {
        uint64_t delivered = store_delivered_upto(s);

        *ret = s->stats;
        ret->last_id = s->last_id;
        ret->buffered = store_buffered(s);
        ret->undelivered = ret->buffered > 0 ? s->last_id - MAX(delivered, s->first_id - 1) : 0;
        ret->pending = s->n_pending;
        ret->anomalies = store_anomaly_count(s);
        ret->size = s->page_count * s->page_size;
        ret->max_size = s->max_pages * s->page_size;
}

int store_get_oldest_undelivered(Store *s, uint64_t *ret_usec) {
        sqlite3_stmt *st = s->stmt[STMT_OLDEST];
        int rc, k = 0;

        (void) sqlite3_bind_int64(st, 1, (sqlite3_int64) store_delivered_upto(s));
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                *ret_usec = (uint64_t) sqlite3_column_int64(st, 0);
                k = 1;
        } else if (rc != SQLITE_DONE)
                k = store_errno(s->db, rc);
        (void) sqlite3_reset(st);
        return k;
}

int store_get_anomalies(Store *s, uint64_t since_usec, StoredAnomaly *ret, size_t max) {
        sqlite3_stmt *st = s->stmt[STMT_ANOMALIES_SINCE];
        size_t n = 0;
        int rc = SQLITE_DONE;

        assert(ret || max == 0);

        max = MIN(max, (size_t) INT_MAX);
        (void) sqlite3_bind_int64(st, 1, (sqlite3_int64) MIN(since_usec, (uint64_t) INT64_MAX));
        (void) sqlite3_bind_int64(st, 2, (sqlite3_int64) max);
        while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                StoredAnomaly *a = ret + n;
                char channel[8];

                *a = (StoredAnomaly) { .id = (uint64_t) sqlite3_column_int64(st, 0) };
                if (!column_copy_text(st, 1, a->event.device, sizeof(a->event.device)) ||
                    !column_copy_text(st, 2, a->event.type, sizeof(a->event.type)) ||
                    !column_copy_text(st, 3, channel, sizeof(channel)))
                        continue;
                a->event.channel = channel_from_string(channel);
                if (a->event.channel < 0)
                        continue;
                a->event.start_usec = (uint64_t) sqlite3_column_int64(st, 4);
                a->event.end_usec = (uint64_t) sqlite3_column_int64(st, 5);
                a->event.start_seq = (uint64_t) sqlite3_column_int64(st, 6);
                a->event.end_seq = (uint64_t) sqlite3_column_int64(st, 7);
                a->event.count = (unsigned) sqlite3_column_int64(st, 8);
                a->event.peak_z = column_double_or_nan(st, 9);
                a->event.peak_value = column_double_or_nan(st, 10);
                a->event.peak_mean = column_double_or_nan(st, 11);
                a->event.peak_std = column_double_or_nan(st, 12);
                n++;
        }
        if (n < max && rc != SQLITE_DONE) {
                int k = store_errno(s->db, rc);

                (void) sqlite3_reset(st);
                return k;
        }
        (void) sqlite3_reset(st);
        return (int) n;
}

static Sink *store_sink_find(const Store *s, const char *name) {
        if (!name)
                return NULL;
        for (size_t i = 0; i < s->n_sinks; i++)
                if (streq(s->sinks[i].name, name))
                        return s->sinks + i;
        return NULL;
}

int store_sink_add(Store *s, const char *name) {
        Sink *sink, *a;

        assert(s);

        if (!sink_name_is_valid(name))
                return -EINVAL;

        sink = store_sink_find(s, name);
        if (sink) {
                if (!sink->enabled) {
                        sink->enabled = true;
                        sink->handed_out = sink->cursor;
                        sink->dirty = true;
                        store_schedule(s);
                }
                return 0;
        }

        a = reallocarray(s->sinks, s->n_sinks + 1, sizeof(Sink));
        if (!a)
                return -ENOMEM;
        s->sinks = a;
        sink = s->sinks + s->n_sinks++;
        *sink = (Sink) {
                .cursor = s->last_id,
                .handed_out = s->last_id,
                .enabled = true,
                .dirty = true,
        };
        strcpy(sink->name, name);
        store_schedule(s);
        return 1;
}

int store_set_sinks(Store *s, char *const *names) {
        int k;

        assert(s);

        for (char *const *n = names; n && *n; n++)
                if (!sink_name_is_valid(*n))
                        return -EINVAL;

        for (size_t i = 0; i < s->n_sinks; i++) {
                Sink *sink = s->sinks + i;
                bool named = false;

                for (char *const *n = names; n && *n && !named; n++)
                        named = streq(*n, sink->name);
                if (sink->enabled && !named) {
                        sink->enabled = false;
                        sink->dirty = true;
                        store_schedule(s);
                }
        }

        for (char *const *n = names; n && *n; n++) {
                k = store_sink_add(s, *n);
                if (k < 0)
                        return k;
        }
        return 0;
}

int store_sink_fetch(Store *s, const char *name, StoredReading *ret, size_t max) {
        sqlite3_stmt *st = s->stmt[STMT_FETCH];
        Sink *sink;
        size_t n = 0;
        int rc = SQLITE_DONE;

        assert(s);
        assert(ret || max == 0);

        sink = store_sink_find(s, name);
        if (!sink)
                return -ENOENT;
        if (!sink->enabled)
                return -ESTALE;

        max = MIN(max, (size_t) INT_MAX);
        (void) sqlite3_bind_int64(st, 1, (sqlite3_int64) sink->handed_out);
        (void) sqlite3_bind_int64(st, 2, (sqlite3_int64) max);
        while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                StoredReading *out = ret + n++;
                Reading *r = &out->reading;
                const StoreDevice *d = store_device_by_index(s, sqlite3_column_int64(st, 1));

                out->id = (uint64_t) sqlite3_column_int64(st, 0);
                memset(r, 0, sizeof(*r));
                if (d) {
                        memcpy(r->device, d->name, sizeof(r->device));
                        memcpy(r->type, d->type, sizeof(r->type));
                }
                r->time_usec = (uint64_t) sqlite3_column_int64(st, 2);
                r->seq = (uint64_t) sqlite3_column_int64(st, 3);
                r->channels = (uint32_t) sqlite3_column_int64(st, 4) & CHANNELS_ALL;
                for (Channel c = 0; c < _CHANNEL_MAX; c++)
                        if (r->channels & CHANNEL_BIT(c))
                                r->values[c] = column_double_or_nan(st, 5 + c);
                sink->handed_out = out->id;
        }
        if (n < max && rc != SQLITE_DONE) {
                int k = store_errno(s->db, rc);

                (void) sqlite3_reset(st);
                return n > 0 ? (int) n : k;
        }
        (void) sqlite3_reset(st);
        return (int) n;
}

int store_sink_ack(Store *s, const char *name, uint64_t upto_id) {
        Sink *sink;

        assert(s);

        sink = store_sink_find(s, name);
        if (!sink)
                return -ENOENT;
        if (upto_id > s->last_id)
                return -EINVAL;
        if (upto_id <= sink->cursor)
                return 0;

        sink->cursor = upto_id;
        sink->handed_out = MAX(sink->handed_out, upto_id);
        sink->dirty = true;
        store_schedule(s);
        return 0;
}

int store_sink_rewind(Store *s, const char *name) {
        Sink *sink;

        assert(s);

        sink = store_sink_find(s, name);
        if (!sink)
                return -ENOENT;
        sink->handed_out = sink->cursor;
        return 0;
}

int store_sink_get(const Store *s, const char *name, StoreSinkInfo *ret) {
        const Sink *sink;

        assert(s);
        assert(ret);

        sink = store_sink_find(s, name);
        if (!sink)
                return -ENOENT;
        *ret = (StoreSinkInfo) {
                .cursor = sink->cursor,
                .handed_out = sink->handed_out,
                .backlog = s->last_id >= s->first_id ? s->last_id - MAX(sink->cursor, s->first_id - 1) : 0,
                .enabled = sink->enabled,
        };
        return 0;
}
