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
 *
 * This file holds the write path (the queue, commits, eviction, degraded and retry) and the
 * lifecycle. store-schema.c opens the file, creates and migrates the schema and moves a damaged
 * file aside; store-sink.c keeps the sink cursors; store-internal.h holds what they share.
 */

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "store-internal.h"

#define STORE_PENDING_ANOMALIES_MAX 256U

/* SQLite result codes to negative errno. For I/O errors the errno SQLite saw says more. */
int store_errno(sqlite3 *db, int rc) {
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

int store_set_error(char **ret_error, int error, const char *format, ...) {
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

uint64_t store_now_usec(clockid_t clock) {
        struct timespec ts;

        (void) clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000) + (uint64_t) ts.tv_nsec / 1000;
}

/* Copies a TEXT column into buf; false if it is NULL or does not fit. */
bool store_column_copy_text(sqlite3_stmt *st, int column, char *buf, size_t size) {
        const unsigned char *t = sqlite3_column_text(st, column);
        int n = sqlite3_column_bytes(st, column);

        if (!t || n < 0 || (size_t) n >= size)
                return false;
        memcpy(buf, t, (size_t) n);
        buf[n] = 0;
        return true;
}

/* SQLite stores a NaN as NULL; where the schema says a value is there, NULL means NaN. */
double store_column_double_or_nan(sqlite3_stmt *st, int column) {
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
int store_db_query_int64(sqlite3 *db, sqlite3_stmt *prepared, const char *sql, int64_t *ret) {
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

/* Takes d; the caller keeps devices sorted by index. */
int store_device_add(Store *s, StoreDevice *d) {
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

int store_refresh_pages(Store *s) {
        int64_t pages, free_pages;
        int rc;

        rc = store_db_query_int64(s->db, s->stmt[STMT_PAGE_COUNT], NULL, &pages);
        if (rc == SQLITE_OK)
                rc = store_db_query_int64(s->db, s->stmt[STMT_FREELIST_COUNT], NULL, &free_pages);
        if (rc != SQLITE_OK)
                return store_errno(s->db, rc);
        s->page_count = (uint64_t) MAX(pages, 0);
        s->freelist_count = (uint64_t) MAX(free_pages, 0);
        return 0;
}

static uint64_t store_used_pages(const Store *s) {
        return s->page_count > s->freelist_count ? s->page_count - s->freelist_count : 0;
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
                now = store_now_usec(CLOCK_MONOTONIC);
        (void) sd_event_source_set_time(s->timer, now + delay_usec);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
        s->timer_armed = true;
}

/* Something is queued: make sure a commit comes within commit_interval_usec. While degraded,
 * the retry timer is already armed. */
void store_schedule(Store *s) {
        if (!s->timer_armed && !s->degraded)
                store_arm_timer(s, s->settings.commit_interval_usec);
}

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

/* Deletes the rows up to an id from readings or anomalies in one transaction, recording the
 * last ids in the state row first, since the deletion may take the newest row. */
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
                if (rc == SQLITE_OK && sqlite3_changes(s->db) == 0)
                        aid--; /* stored before: its id stays free, so ids keep counting events */
        }
        s->written_anomaly_id = aid;

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
        uint64_t aid = s->written_anomaly_id, stored = aid - s->last_anomaly_id;

        s->last_id += s->n_pending;
        s->stats.committed += s->n_pending;
        s->pending_head = s->n_pending = 0;

        s->last_anomaly_id = aid;
        s->stats.anomalies_committed += stored;
        s->stats.anomalies_duplicates += s->n_pending_anomalies - stored;
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
                s->retry_at_usec = store_now_usec(CLOCK_MONOTONIC) + s->settings.retry_usec;
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
        return s->degraded && !s->timer && store_now_usec(CLOCK_MONOTONIC) >= s->retry_at_usec;
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

                return store_set_error(ret_error, k, "Directory %s of the buffer %s: %s", dir, path, strerror(-k));
        }
        if (!S_ISDIR(st.st_mode))
                return store_set_error(ret_error, -ENOTDIR, "%s, the directory of the buffer %s, is not a directory", dir, path);
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
                return store_set_error(ret_error, k, "Invalid buffer settings");

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
                        return store_set_error(ret_error, k, "%s; failed to move it aside: %s", strempty(error), strerror(-k));
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
                        return store_set_error(ret_error, k, "Failed to add the commit timer: %s", strerror(-k));
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
                (void) sd_event_source_set_description(s->timer, "store-commit");
        }

        if (moved)
                (void) store_set_error(ret_error, 1, "%s; moved it to %s and started an empty buffer", strempty(error), aside);

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
                if (!store_column_copy_text(st, 1, a->event.device, sizeof(a->event.device)) ||
                    !store_column_copy_text(st, 2, a->event.type, sizeof(a->event.type)) ||
                    !store_column_copy_text(st, 3, channel, sizeof(channel)))
                        continue;
                a->event.channel = channel_from_string(channel);
                if (a->event.channel < 0)
                        continue;
                a->event.start_usec = (uint64_t) sqlite3_column_int64(st, 4);
                a->event.end_usec = (uint64_t) sqlite3_column_int64(st, 5);
                a->event.start_seq = (uint64_t) sqlite3_column_int64(st, 6);
                a->event.end_seq = (uint64_t) sqlite3_column_int64(st, 7);
                a->event.count = (unsigned) sqlite3_column_int64(st, 8);
                a->event.peak_z = store_column_double_or_nan(st, 9);
                a->event.peak_value = store_column_double_or_nan(st, 10);
                a->event.peak_mean = store_column_double_or_nan(st, 11);
                a->event.peak_std = store_column_double_or_nan(st, 12);
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
