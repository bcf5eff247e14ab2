/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The store-and-forward buffer: every reading the gateway accepts is kept in an SQLite file
 * until every enabled sink has acknowledged it, through crashes, power loss and full disks
 * (DESIGN.md "Store"). It also keeps the anomaly events and the devices it has seen.
 *
 * Writes: store_append() only queues a reading in memory. The queue is committed in one
 * transaction (WAL, synchronous=FULL) when it holds commit_readings readings or when
 * commit_interval_usec has passed since its first reading, from a timer the store owns on the
 * event loop it was given. A reading counts as stored once committed: from then on it survives
 * kill -9 and power loss. Every committed reading gets the next id of one increasing sequence,
 * without gaps; a fresh database starts that sequence at the wall clock in µs, so a database
 * recreated after corruption never reuses ids that sinks have already sent. One store at a
 * time writes a file (a second store_open() gets -EBUSY); other processes may read it meanwhile.
 *
 * Duplicates: the store remembers, per device, the highest seq it has accepted (kept in the
 * devices table, so it survives restarts without scanning the readings) and skips any reading
 * whose seq is not above it. This relies on seq increasing per device, as reading.h requires;
 * a source whose counter can restart must extend it.
 *
 * Failures: when a commit fails (disk full, I/O error, corruption found at run time), the
 * transaction is rolled back, the readings stay queued in memory (at most max_pending; beyond
 * that the oldest are dropped and counted as write_failed), the store reports itself degraded
 * and retries every retry_usec, and it recovers by itself once a commit succeeds again.
 * store_append() keeps accepting meanwhile.
 *
 * Bounds: the file is capped at max_size through max_page_count. When more than 90% of the cap
 * is in use, the oldest readings are deleted in chunks, those every sink has acknowledged
 * first, then the oldest undelivered ones; every deletion is counted. Freed pages are reused,
 * so the file stops growing at the cap without VACUUM.
 *
 * Sinks: each sink has a persistent cursor, the highest id it has acknowledged, and an
 * in-memory position of what it has been handed out. Readings are handed out in id order;
 * after a restart or store_sink_rewind(), what was handed out but not acknowledged is handed
 * out again (at-least-once). An acknowledgement is written with the next commit, at most
 * commit_interval_usec later; if the process dies before that, those readings are handed out
 * once more, which at-least-once delivery allows.
 *
 * The store never logs: functions return negative errno values, the callbacks in
 * StoreSettings report what happened, and the caller logs.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "detector.h"
#include "macro.h"
#include "reading.h"

#define STORE_SCHEMA_VERSION 1

#define STORE_MAX_SIZE_DEFAULT (UINT64_C(256) * 1024 * 1024)
#define STORE_MAX_SIZE_MIN (UINT64_C(1) * 1024 * 1024)
#define STORE_COMMIT_READINGS_DEFAULT 500U
#define STORE_COMMIT_INTERVAL_USEC_DEFAULT (UINT64_C(250) * 1000)
#define STORE_MAX_PENDING_DEFAULT 4096U
#define STORE_RETRY_USEC_DEFAULT (UINT64_C(1000) * 1000)
#define STORE_MAX_ANOMALIES_DEFAULT 100000U
#define STORE_SINK_NAME_MAX 64

typedef struct Store Store;

typedef struct StoreSettings {
        const char *path;              /* the database file; its directory must exist */
        uint64_t max_size;             /* bytes, >= STORE_MAX_SIZE_MIN; 0: the default */
        unsigned commit_readings;      /* commit when this many are queued; 0: the default */
        uint64_t commit_interval_usec; /* commit this long after the first queued one; 0: default */
        unsigned max_pending;          /* readings kept in memory while degraded, >= commit_readings;
                                        * 0: the default (or commit_readings if larger) */
        uint64_t retry_usec;           /* between commit attempts while degraded; 0: the default */
        unsigned max_anomalies;        /* anomaly events kept, the oldest deleted; 0: the default */

        /* Called after every successful commit, with the id of the last committed reading (0 if
         * none yet). May call any store function but store_free(). */
        void (*on_committed)(Store *s, uint64_t last_id, void *userdata);
        /* Called when the store becomes degraded (error < 0, message from SQLite) and when it
         * recovers (error == 0, message NULL). Once per change, not per failed attempt. */
        void (*on_state_changed)(Store *s, int error, const char *message, void *userdata);
        void *userdata;
} StoreSettings;

typedef struct StoreStats {
        /* Counters since open. appended == committed + pending + write_failed. */
        uint64_t appended;            /* readings accepted by store_append() */
        uint64_t duplicates;          /* readings skipped: seq not above the device's last */
        uint64_t committed;           /* readings committed */
        uint64_t evicted_delivered;   /* deleted for space after every sink had them */
        uint64_t evicted_undelivered; /* deleted for space before every sink had them */
        uint64_t write_failed;        /* dropped from the memory queue while degraded */
        uint64_t anomalies_appended;
        uint64_t anomalies_committed;
        uint64_t anomalies_dropped;   /* dropped from the memory queue, or deleted over max_anomalies */
        uint64_t anomalies_duplicates; /* skipped: the same event (device, channel, first reading) was stored */
        uint64_t commits;             /* successful commit transactions */
        uint64_t commit_failures;     /* failed commit attempts */

        /* The state now. */
        uint64_t last_id;             /* id of the last committed reading (before the first: the id
                                       * the first follows) */
        uint64_t buffered;            /* committed readings in the file */
        uint64_t undelivered;         /* of those, not yet acknowledged by every enabled sink */
        uint64_t pending;             /* readings queued in memory, not committed */
        uint64_t anomalies;           /* anomaly events in the file */
        uint64_t size;                /* bytes in use by the database (pages × page size, without the WAL) */
        uint64_t max_size;            /* the cap in effect */
} StoreStats;

/* A committed reading as handed out. Values come back bit for bit, with two exceptions SQLite
 * makes: -0.0 comes back as 0.0, and a NaN (stored as NULL) as the default NaN. The type is
 * kept per device: .type is the device's latest. */
typedef struct StoredReading {
        uint64_t id;
        Reading reading;
} StoredReading;

typedef struct StoredAnomaly {
        uint64_t id;
        AnomalyEvent event;
} StoredAnomaly;

typedef struct StoreSinkInfo {
        uint64_t cursor;               /* highest id acknowledged */
        uint64_t handed_out;           /* highest id handed out since open or the last rewind */
        uint64_t backlog;              /* committed readings after the cursor still in the file */
        bool enabled;
} StoreSinkInfo;

/*
 * Opens or creates the database and checks it (PRAGMA quick_check). e may be NULL: then
 * nothing commits by time and the caller calls store_commit() itself.
 *
 * Returns 0; or 1 when the file was corrupt or not a database: it was renamed to
 * "<path>.corrupt-<UTC time>" (with its -wal and -shm files) and a fresh database created,
 * and *ret_error says so, to be logged loudly. On failure returns a negative errno with
 * *ret_error saying why: -ENOENT (the directory does not exist), -EBUSY (another process has
 * the database open), -EPROTONOSUPPORT (its schema is newer than this build), -EMEDIUMTYPE
 * (an SQLite database of something else), -ENOSPC, -EIO, -EINVAL (bad settings), ...
 * ret_error may be NULL; otherwise *ret_error is malloc'd or NULL.
 */
int store_open(sd_event *e, const StoreSettings *settings, Store **ret, char **ret_error);
/* Commits what is queued (ignoring failure: call store_commit() first to know), closes. */
Store *store_free(Store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Store *, store_free);

/* Queues a reading. Returns 1 when queued, 0 when skipped as a duplicate, -EINVAL for a reading
 * without a valid device id, or -ENOMEM. A commit failure is not an error here: it makes the
 * store degraded and the reading stays queued. */
int store_append(Store *s, const Reading *r);

/* Queues an anomaly event, committed with the next batch. An event the file holds already (the
 * same device, channel and first reading) is skipped then, and counted. 0, -EINVAL or -ENOMEM. */
int store_append_anomaly(Store *s, const AnomalyEvent *e);
/* Commits everything queued now (readings, anomalies, sink cursors). 0 on success (also with
 * nothing to do), else the negative errno of the failure, the store degraded. */
int store_commit(Store *s);

bool store_is_degraded(const Store *s);
/* Nothing waits in memory to be committed: no readings, anomalies or sink cursors. */
bool store_is_idle(const Store *s);
void store_get_stats(const Store *s, StoreStats *ret);
/* The time of the oldest reading not yet acknowledged by every enabled sink: 1 and *ret_usec,
 * 0 if there is none, or a negative errno. */
int store_get_oldest_undelivered(Store *s, uint64_t *ret_usec);
/* Anomaly events that started at or after since_usec, oldest first, at most max into ret.
 * Returns how many, or a negative errno. */
int store_get_anomalies(Store *s, uint64_t since_usec, StoredAnomaly *ret, size_t max);

/*
 * Sinks are named by the caller (1..STORE_SINK_NAME_MAX printable ASCII characters, no spaces).
 * store_sink_add() enables a sink: a known one resumes from its cursor, a new one starts after
 * the last committed reading. Returns 1 if new, 0 if known, or -EINVAL/-ENOMEM.
 * store_set_sinks() enables the sinks named in the NULL-terminated list and disables every
 * other: a disabled sink keeps its cursor but no longer holds readings back, and resumes from
 * its cursor if enabled again (readings evicted meanwhile are gone).
 */
int store_sink_add(Store *s, const char *name);
int store_set_sinks(Store *s, char *const *names);
/* Hands out up to max committed readings after what the sink was last handed out, in id order.
 * Returns how many (0: nothing new), -ENOENT for an unknown sink, -ESTALE for a disabled one,
 * or a negative errno from SQLite. */
int store_sink_fetch(Store *s, const char *name, StoredReading *ret, size_t max);
/* Acknowledges every reading up to upto_id: they are never handed out to this sink again.
 * Acknowledging below the cursor does nothing. 0, -ENOENT, or -EINVAL if upto_id is above the
 * last committed reading. */
int store_sink_ack(Store *s, const char *name, uint64_t upto_id);
/* After a lost connection: hand out again everything after the cursor. 0 or -ENOENT. */
int store_sink_rewind(Store *s, const char *name);
int store_sink_get(const Store *s, const char *name, StoreSinkInfo *ret);
