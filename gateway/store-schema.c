/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Opening the buffer file: the flock, WAL mode, quick_check, the application id and schema
 * version, the migrations that create and upgrade the schema, the space pragmas, the prepared
 * statements, and loading the id ranges, devices and sink cursors into the Store. A file that
 * is corrupt or not a database (-EBADMSG) is renamed aside by store_move_aside(), so that
 * store_open() can start an empty one. The design is described at the top of store.c.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <strings.h>
#include <sys/file.h>
#include <time.h>

#include "store-internal.h"

/* "bleg": PRAGMA application_id, so we never adopt somebody else's SQLite file. */
#define STORE_APPLICATION_ID 0x626c6567
#define STORE_CACHE_KIB 2000

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
                                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) "
                                "ON CONFLICT (device, channel, start_seq) DO NOTHING",
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
                /* An event is its first reading on one channel: the same one detected again
                 * (a replay read again after a crash) is stored once. */
                "CREATE UNIQUE INDEX anomalies_event ON anomalies (device, channel, start_seq);"
                "CREATE TABLE sinks ("
                "  name TEXT PRIMARY KEY,"
                "  cursor INTEGER NOT NULL,"
                "  enabled INTEGER NOT NULL);";
        uint64_t base = store_now_usec(CLOCK_REALTIME);
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

                        (void) store_set_error(ret_error, k,
                                               "Failed to upgrade the schema from version %" PRIi64 " to %" PRIi64 ": %s",
                                               v, v + 1, sqlite3_errmsg(db));
                        if (!sqlite3_get_autocommit(db))
                                (void) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
                        return k;
                }
        }
        return 0;
}

static int store_load_devices(Store *s, char **ret_error) {
        sqlite3_stmt *st = NULL;
        int rc, k = 0;

        rc = sqlite3_prepare_v2(s->db,
                                "SELECT id, name, type, first_seen_usec, last_seen_usec, last_seq FROM devices ORDER BY id",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_set_error(ret_error, store_errno(s->db, rc), "Failed to read the devices: %s",
                                       sqlite3_errmsg(s->db));

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
                if (!store_column_copy_text(st, 1, d->name, sizeof(d->name)) ||
                    !device_id_is_valid(d->name, strlen(d->name)) ||
                    !store_column_copy_text(st, 2, d->type, sizeof(d->type)) ||
                    idmap_get(s->devices_by_name, d->name)) {
                        free(d);
                        k = store_set_error(ret_error, -EBADMSG, "Table devices holds an invalid row (id %" PRIi64 ")",
                                            (int64_t) sqlite3_column_int64(st, 0));
                        break;
                }
                k = store_device_add(s, d);
                if (k < 0)
                        break;
        }
        if (k == 0 && rc != SQLITE_DONE)
                k = store_set_error(ret_error, store_errno(s->db, rc), "Failed to read the devices: %s", sqlite3_errmsg(s->db));
        (void) sqlite3_finalize(st);
        return k;
}

static int store_load_sinks(Store *s, char **ret_error) {
        sqlite3_stmt *st = NULL;
        int rc, k = 0;

        rc = sqlite3_prepare_v2(s->db, "SELECT name, cursor, enabled FROM sinks ORDER BY name", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_set_error(ret_error, store_errno(s->db, rc), "Failed to read the sinks: %s", sqlite3_errmsg(s->db));

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
                if (!store_column_copy_text(st, 0, sink->name, sizeof(sink->name)) || !store_sink_name_is_valid(sink->name)) {
                        k = store_set_error(ret_error, -EBADMSG, "Table sinks holds an invalid row");
                        break;
                }
                sink->handed_out = sink->cursor;
                s->n_sinks++;
        }
        if (k == 0 && rc != SQLITE_DONE)
                k = store_set_error(ret_error, store_errno(s->db, rc), "Failed to read the sinks: %s", sqlite3_errmsg(s->db));
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
                return store_set_error(ret_error, store_errno(s->db, rc), "Failed to read the state: %s",
                                       rc == SQLITE_CORRUPT ? "no state row" : sqlite3_errmsg(s->db));

        s->last_id = (uint64_t) MAX(last_reading, 0);
        rc = store_db_query_int64(s->db, NULL, "SELECT max(id) FROM readings", &v);
        if (rc == SQLITE_OK)
                s->last_id = MAX(s->last_id, (uint64_t) MAX(v, 0));
        s->first_id = s->last_id + 1;
        if (rc == SQLITE_OK)
                rc = store_db_query_int64(s->db, NULL, "SELECT coalesce(min(id), 0) FROM readings", &v);
        if (rc == SQLITE_OK && v > 0)
                s->first_id = (uint64_t) v;

        s->last_anomaly_id = (uint64_t) MAX(last_anomaly, 0);
        if (rc == SQLITE_OK)
                rc = store_db_query_int64(s->db, NULL, "SELECT coalesce(max(id), 0) FROM anomalies", &v);
        if (rc == SQLITE_OK)
                s->last_anomaly_id = MAX(s->last_anomaly_id, (uint64_t) MAX(v, 0));
        s->first_anomaly_id = s->last_anomaly_id + 1;
        if (rc == SQLITE_OK)
                rc = store_db_query_int64(s->db, NULL, "SELECT coalesce(min(id), 0) FROM anomalies", &v);
        if (rc == SQLITE_OK && v > 0)
                s->first_anomaly_id = (uint64_t) v;

        if (rc != SQLITE_OK)
                return store_set_error(ret_error, store_errno(s->db, rc), "Failed to read the id ranges: %s",
                                       sqlite3_errmsg(s->db));
        return 0;
}

/* Opens s->path and makes it a current database. -EBADMSG means corrupt or not a database. */
int store_open_db(Store *s, char **ret_error) {
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
                return store_set_error(ret_error, k, "Failed to open %s: %s", s->path,
                                       s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        }
        (void) sqlite3_extended_result_codes(s->db, 1);

        /* SQLite has created the file if it was missing. */
        s->lock_fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (s->lock_fd < 0) {
                k = negative_errno();
                return store_set_error(ret_error, k, "Failed to open %s: %s", s->path, strerror(-k));
        }
        if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                k = errno == EWOULDBLOCK ? -EBUSY : negative_errno();
                return store_set_error(ret_error, k, "%s is in use by another process", s->path);
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
                return store_set_error(ret_error, -EBUSY, "%s is in use by another process", s->path);
        if (rc == SQLITE_MISUSE)
                return store_set_error(ret_error, -EOPNOTSUPP, "%s: cannot switch to WAL mode", s->path);
        if (rc != SQLITE_OK)
                return store_set_error(ret_error, store_errno(s->db, rc), "%s: %s", s->path, sqlite3_errmsg(s->db));

        /* Reads every page, but checks no index against its table: what the size of our files
         * allows at every start. quick_check(1) stops at the first problem. */
        rc = sqlite3_prepare_v2(s->db, "PRAGMA quick_check(1)", -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                const char *result = (const char *) sqlite3_column_text(st, 0);

                if (!result || strcmp(result, "ok") != 0) {
                        k = store_set_error(ret_error, -EBADMSG, "%s fails quick_check: %s", s->path, strempty(result));
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
                return store_set_error(ret_error, store_errno(s->db, rc), "%s: %s", s->path, sqlite3_errmsg(s->db));

        rc = store_db_query_int64(s->db, NULL, "PRAGMA application_id", &app_id);
        if (rc == SQLITE_OK)
                rc = store_db_query_int64(s->db, NULL, "PRAGMA user_version", &version);
        if (rc == SQLITE_OK)
                rc = store_db_query_int64(s->db, NULL, "SELECT count(*) FROM sqlite_schema", &objects);
        if (rc != SQLITE_OK)
                return store_set_error(ret_error, store_errno(s->db, rc), "%s: %s", s->path, sqlite3_errmsg(s->db));

        if (app_id != STORE_APPLICATION_ID && (app_id != 0 || objects > 0))
                return store_set_error(ret_error, -EMEDIUMTYPE,
                                       "%s is an SQLite database but not a blegate buffer (application_id 0x%08" PRIx64 "), "
                                       "refusing to touch it",
                                       s->path, (uint64_t) app_id);
        if (version > STORE_SCHEMA_VERSION)
                return store_set_error(ret_error, -EPROTONOSUPPORT,
                                       "%s has schema version %" PRIi64 ", newer than the %d this blegated knows; "
                                       "refusing to touch it (run a newer blegated, or move the file away)",
                                       s->path, version, STORE_SCHEMA_VERSION);
        if (version < 0)
                return store_set_error(ret_error, -EBADMSG, "%s has an invalid schema version %" PRIi64, s->path, version);

        k = store_migrate(s->db, version, ret_error);
        if (k < 0)
                return k;

        rc = sqlite3_exec(s->db, pragmas, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
                rc = store_db_query_int64(s->db, NULL, "PRAGMA page_size", &page_size);
        if (rc != SQLITE_OK)
                return store_set_error(ret_error, store_errno(s->db, rc), "%s: %s", s->path, sqlite3_errmsg(s->db));

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
                rc = store_db_query_int64(s->db, NULL, sql, &v);
        }
        if (rc != SQLITE_OK)
                return store_set_error(ret_error, store_errno(s->db, rc), "%s: %s", s->path, sqlite3_errmsg(s->db));

        for (StoreStatement i = 0; i < _STMT_MAX; i++) {
                rc = sqlite3_prepare_v3(s->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL);
                /* SQLITE_ERROR: a table or column is missing, the file is not what it claims. */
                if (rc != SQLITE_OK)
                        return store_set_error(ret_error, rc == SQLITE_ERROR ? -EBADMSG : store_errno(s->db, rc),
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
                        (void) store_set_error(ret_error, k, "%s: %s", s->path, sqlite3_errmsg(s->db));
        }
        return k;
}

/* Drops what store_open_db() built, so that it can be called again. */
void store_close_db(Store *s) {
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
int store_move_aside(const char *path, char **ret_path) {
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
