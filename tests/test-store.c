/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The store as the daemon and its sinks meet it: what is committed comes back field for field
 * after a restart, batches close by count and by time, duplicates are skipped across restarts,
 * sinks get everything at least once and nothing acknowledged twice, the file stays under its
 * cap by dropping delivered readings first, damaged or foreign files are handled as promised,
 * and a full disk degrades the store without losing what fits in memory.
 *
 * A full disk is simulated without privileges through RLIMIT_FSIZE: with SIGXFSZ ignored, a
 * write() past the limit fails with EFBIG (a write that crosses it is cut short), which SQLite
 * reports as SQLITE_IOERR_WRITE or SQLITE_FULL, the errors a full file system gives. Lowering
 * the soft limit and raising it again up to the hard limit needs no capability. A real full
 * file system, a small tmpfs, is used too where a user namespace can be had to mount it.
 */

#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "store.h"
#include "tests.h"

static unsigned n_files;

/* A fresh database path for each test. */
static const char *new_path(const char *name) {
        static char path[4096];

        snprintf(path, sizeof(path), "%s/%s-%u.db", test_tmpdir(), name, n_files++);
        return path;
}

static double now_sec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static Reading make_reading(const char *device, uint64_t seq) {
        Reading r = {
                .time_usec = UINT64_C(1515542400000000) + seq * 10000,
                .seq = seq,
        };

        snprintf(r.device, sizeof(r.device), "%s", device);
        snprintf(r.type, sizeof(r.type), "sensortag");
        for (Channel c = CHANNEL_AX; c <= CHANNEL_GZ; c++)
                reading_set(&r, c, (double) seq / 7.0 + c);
        return r;
}

static Store *open_store(sd_event *e, StoreSettings *settings) {
        _cleanup_free_ char *error = NULL;
        Store *s = NULL;
        int k;

        k = store_open(e, settings, &s, &error);
        if (k != 0)
                TEST_FAIL("store_open(%s) = %d: %s", settings->path, k, strempty(error));
        ASSERT_TRUE(!error);
        return s;
}

static StoreStats get_stats(Store *s) {
        StoreStats st;

        store_get_stats(s, &st);
        return st;
}

static int64_t query_int(const char *path, const char *sql) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int64_t v;

        ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
                TEST_FAIL("%s: %s", sql, sqlite3_errmsg(db));
        ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
        v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static void exec_sql(const char *path, const char *sql) {
        sqlite3 *db = NULL;

        ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL), SQLITE_OK);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
                TEST_FAIL("%s: %s", sql, sqlite3_errmsg(db));
        sqlite3_close(db);
}

static bool same_double(double a, double b) {
        return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof(double)) == 0;
}

static void assert_same_reading(const Reading *a, const Reading *b) {
        ASSERT_STREQ(a->device, b->device);
        ASSERT_STREQ(a->type, b->type);
        ASSERT_U64_EQ(a->time_usec, b->time_usec);
        ASSERT_U64_EQ(a->seq, b->seq);
        ASSERT_EQ(a->channels, b->channels);
        for (Channel c = 0; c < _CHANNEL_MAX; c++)
                if (reading_has(a, c) && !same_double(a->values[c], b->values[c]))
                        TEST_FAIL("seq %" PRIu64 " channel %s: %.17g != %.17g", a->seq, channel_to_string(c),
                                  a->values[c], b->values[c]);
}

static void test_round_trip(void) {
        static const double specials[] = { 0.1, -1.5, 1e-300, 1.7976931348623157e308, 4.9e-324, 9.80665,
                                           -123456.789012345678, 1.0 / 3.0, INFINITY, -INFINITY, NAN, 42.0 };
        StoreSettings settings = { .path = new_path("round-trip") };
        _cleanup_(store_freep) Store *s = NULL;
        Reading in[5];
        StoredReading out[8];
        StoredAnomaly anomalies[4];
        AnomalyEvent e = {
                .device = "c0ffee000001",
                .type = "ruuvi",
                .channel = CHANNEL_GY,
                .start_usec = 1515542400000000,
                .end_usec = 1515542400120000,
                .start_seq = 17,
                .end_seq = 29,
                .count = 3,
                .peak_z = -7.25,
                .peak_value = 1.0 / 3.0,
                .peak_mean = 0.001,
                .peak_std = NAN,
        };
        uint64_t first;

        s = open_store(NULL, &settings);
        ASSERT_EQ(store_sink_add(s, "mqtt"), 1);
        first = get_stats(s).last_id + 1;
        ASSERT_TRUE(first > 1); /* ids start at the wall clock */

        /* Every channel, with values that text formats would round or lose. */
        in[0] = (Reading) { .device = "c0ffee000001", .type = "ruuvi", .time_usec = UINT64_C(1515542400000001), .seq = 1 };
        for (Channel c = 0; c < _CHANNEL_MAX; c++)
                reading_set(&in[0], c, specials[c]);
        /* Some channels only: the others must come back absent, not 0. */
        in[1] = (Reading) { .device = "c0ffee000001", .type = "ruuvi", .time_usec = 2, .seq = UINT64_C(1) << 40 };
        reading_set(&in[1], CHANNEL_AZ, 0.0);
        reading_set(&in[1], CHANNEL_OG, -0.5);
        /* No channel at all, an empty type, the largest times. */
        in[2] = (Reading) { .device = "phone-1.A_b", .type = "", .time_usec = UINT64_MAX, .seq = UINT64_MAX };
        in[3] = make_reading("x", 0);
        in[4] = make_reading("x", 1);

        for (size_t i = 0; i < ELEMENTSOF(in); i++)
                ASSERT_EQ(store_append(s, &in[i]), 1);
        ASSERT_OK(store_append_anomaly(s, &e));
        ASSERT_EQ(get_stats(s).committed, 0);
        ASSERT_FALSE(store_is_idle(s));
        ASSERT_OK(store_commit(s));
        ASSERT_TRUE(store_is_idle(s));
        ASSERT_EQ(get_stats(s).committed, 5);
        ASSERT_U64_EQ(get_stats(s).last_id, first + 4);
        s = store_free(s);

        /* Missing channels are NULL in the file, present ones are not. */
        ASSERT_EQ(query_int(settings.path, "SELECT count(*) FROM readings WHERE ax IS NULL"), 2);
        ASSERT_EQ(query_int(settings.path, "SELECT count(*) FROM readings WHERE az IS NULL"), 1);
        ASSERT_EQ(query_int(settings.path, "SELECT count(*) FROM readings WHERE og IS NULL"), 3);
        ASSERT_EQ(query_int(settings.path, "SELECT count(*) FROM readings WHERE gx = 0"), 0);

        s = open_store(NULL, &settings);
        ASSERT_EQ(store_sink_add(s, "mqtt"), 0);
        ASSERT_EQ(store_sink_fetch(s, "mqtt", out, ELEMENTSOF(out)), 5);
        for (size_t i = 0; i < ELEMENTSOF(in); i++) {
                ASSERT_U64_EQ(out[i].id, first + i);
                assert_same_reading(&out[i].reading, &in[i]);
        }

        ASSERT_EQ(store_get_anomalies(s, 0, anomalies, ELEMENTSOF(anomalies)), 1);
        ASSERT_STREQ(anomalies[0].event.device, e.device);
        ASSERT_STREQ(anomalies[0].event.type, e.type);
        ASSERT_EQ(anomalies[0].event.channel, CHANNEL_GY);
        ASSERT_U64_EQ(anomalies[0].event.start_usec, e.start_usec);
        ASSERT_U64_EQ(anomalies[0].event.end_usec, e.end_usec);
        ASSERT_U64_EQ(anomalies[0].event.start_seq, 17);
        ASSERT_U64_EQ(anomalies[0].event.end_seq, 29);
        ASSERT_EQ(anomalies[0].event.count, 3);
        ASSERT_TRUE(same_double(anomalies[0].event.peak_z, e.peak_z));
        ASSERT_TRUE(same_double(anomalies[0].event.peak_value, e.peak_value));
        ASSERT_TRUE(same_double(anomalies[0].event.peak_mean, e.peak_mean));
        ASSERT_TRUE(isnan(anomalies[0].event.peak_std));
        ASSERT_EQ(store_get_anomalies(s, e.start_usec + 1, anomalies, ELEMENTSOF(anomalies)), 0);
        ASSERT_EQ(get_stats(s).anomalies, 1);

        /* Invalid input is refused, not stored. */
        in[0].device[0] = 0;
        ASSERT_ERROR(store_append(s, &in[0]), EINVAL);
        memcpy(in[0].device, "has space", 10);
        ASSERT_ERROR(store_append(s, &in[0]), EINVAL);
        e.channel = _CHANNEL_MAX;
        ASSERT_ERROR(store_append_anomaly(s, &e), EINVAL);
        ASSERT_ERROR(store_sink_add(s, ""), EINVAL);
        ASSERT_ERROR(store_sink_add(s, "with space"), EINVAL);
}

static void on_committed_count(Store *s, uint64_t last_id, void *userdata) {
        (*(unsigned *) userdata)++;
}

static void test_batch_by_count(void) {
        unsigned commits = 0;
        StoreSettings settings = {
                .path = new_path("batch-count"),
                .commit_readings = 10,
                .on_committed = on_committed_count,
                .userdata = &commits,
        };
        _cleanup_(store_freep) Store *s = open_store(NULL, &settings);

        for (uint64_t i = 1; i <= 9; i++) {
                Reading r = make_reading("dev", i);
                ASSERT_EQ(store_append(s, &r), 1);
        }
        ASSERT_EQ(get_stats(s).committed, 0);
        ASSERT_EQ(get_stats(s).pending, 9);
        ASSERT_EQ(get_stats(s).buffered, 0);
        ASSERT_EQ(commits, 0);

        Reading r = make_reading("dev", 10);
        ASSERT_EQ(store_append(s, &r), 1);
        ASSERT_EQ(get_stats(s).committed, 10);
        ASSERT_EQ(get_stats(s).pending, 0);
        ASSERT_EQ(get_stats(s).buffered, 10);
        ASSERT_EQ(get_stats(s).commits, 1);
        ASSERT_EQ(commits, 1);

        /* store_free() commits what is queued. */
        r = make_reading("dev", 11);
        ASSERT_EQ(store_append(s, &r), 1);
        s = store_free(s);
        ASSERT_EQ(query_int(settings.path, "SELECT count(*) FROM readings"), 11);
}

static void test_batch_by_time(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        unsigned commits = 0;
        StoreSettings settings = {
                .path = new_path("batch-time"),
                .commit_interval_usec = 100 * 1000,
                .on_committed = on_committed_count,
                .userdata = &commits,
        };
        _cleanup_(store_freep) Store *s = NULL;
        double start;

        ASSERT_OK(sd_event_new(&e));
        s = open_store(e, &settings);

        for (int round = 0; round < 2; round++) {
                for (uint64_t i = 1; i <= 3; i++) {
                        Reading r = make_reading("dev", round * 10 + i);
                        ASSERT_EQ(store_append(s, &r), 1);
                }
                start = now_sec();
                ASSERT_EQ(get_stats(s).committed, (uint64_t) round * 3);
                while (commits == (unsigned) round && now_sec() - start < 5)
                        ASSERT_OK(sd_event_run(e, 100 * 1000));
                ASSERT_EQ(commits, round + 1);
                ASSERT_EQ(get_stats(s).committed, (uint64_t) (round + 1) * 3);
                fprintf(stderr, "batch %d committed by time after %.0f ms (interval 100 ms)\n", round,
                        (now_sec() - start) * 1000);
        }

        /* An acknowledgement alone is committed by time too. */
        ASSERT_EQ(store_sink_add(s, "couch"), 1);
        ASSERT_FALSE(store_is_idle(s));
        start = now_sec();
        while (!store_is_idle(s) && now_sec() - start < 5)
                ASSERT_OK(sd_event_run(e, 100 * 1000));
        ASSERT_TRUE(store_is_idle(s));
}

static void test_duplicates(void) {
        StoreSettings settings = { .path = new_path("duplicates") };
        _cleanup_(store_freep) Store *s = open_store(NULL, &settings);
        Reading r;

        for (uint64_t i = 1; i <= 10; i++) {
                r = make_reading("a", i);
                ASSERT_EQ(store_append(s, &r), 1);
        }
        /* Queued but not committed yet: still a duplicate. */
        r = make_reading("a", 10);
        ASSERT_EQ(store_append(s, &r), 0);
        ASSERT_OK(store_commit(s));
        for (uint64_t i = 5; i <= 15; i++) {
                r = make_reading("a", i);
                ASSERT_EQ(store_append(s, &r), i > 10);
        }
        /* Another device has its own sequence. */
        r = make_reading("b", 3);
        ASSERT_EQ(store_append(s, &r), 1);
        ASSERT_EQ(get_stats(s).duplicates, 7);
        s = store_free(s);

        /* The highest seq per device survives a restart. */
        s = open_store(NULL, &settings);
        for (uint64_t i = 10; i <= 20; i++) {
                r = make_reading("a", i);
                ASSERT_EQ(store_append(s, &r), i > 15);
        }
        r = make_reading("b", 3);
        ASSERT_EQ(store_append(s, &r), 0);
        r = make_reading("b", 4);
        ASSERT_EQ(store_append(s, &r), 1);
        ASSERT_EQ(get_stats(s).duplicates, 7);
        ASSERT_OK(store_commit(s));
        ASSERT_EQ(get_stats(s).buffered, 22);
        s = store_free(s);
        ASSERT_EQ(query_int(settings.path, "SELECT count(*) FROM (SELECT DISTINCT device, seq FROM readings)"), 22);
}

static void append_many(Store *s, const char *device, uint64_t from, uint64_t to) {
        for (uint64_t i = from; i <= to; i++) {
                Reading r = make_reading(device, i);
                ASSERT_EQ(store_append(s, &r), 1);
        }
}

static void test_sink_at_least_once(void) {
        StoreSettings settings = { .path = new_path("sinks"), .commit_readings = 1000 };
        _cleanup_(store_freep) Store *s = open_store(NULL, &settings);
        StoredReading out[40];
        StoreSinkInfo info;
        uint64_t first;

        ASSERT_EQ(store_sink_add(s, "mqtt"), 1);
        ASSERT_ERROR(store_sink_fetch(s, "nope", out, 1), ENOENT);
        ASSERT_ERROR(store_sink_ack(s, "nope", 1), ENOENT);
        ASSERT_ERROR(store_sink_rewind(s, "nope"), ENOENT);
        first = get_stats(s).last_id + 1;

        append_many(s, "dev", 1, 100);
        /* Only committed readings are handed out. */
        ASSERT_EQ(store_sink_fetch(s, "mqtt", out, 30), 0);
        ASSERT_OK(store_commit(s));

        ASSERT_EQ(store_sink_fetch(s, "mqtt", out, 30), 30);
        ASSERT_U64_EQ(out[0].id, first);
        ASSERT_U64_EQ(out[0].reading.seq, 1);
        ASSERT_U64_EQ(out[29].id, first + 29);
        ASSERT_EQ(store_sink_fetch(s, "mqtt", out, 30), 30);
        ASSERT_U64_EQ(out[0].id, first + 30);
        ASSERT_OK(store_sink_get(s, "mqtt", &info));
        ASSERT_U64_EQ(info.cursor, first - 1);
        ASSERT_U64_EQ(info.handed_out, first + 59);
        ASSERT_U64_EQ(info.backlog, 100);

        /* Lost connection: everything after the cursor again. */
        ASSERT_OK(store_sink_rewind(s, "mqtt"));
        ASSERT_EQ(store_sink_fetch(s, "mqtt", out, 10), 10);
        ASSERT_U64_EQ(out[0].id, first);

        /* Handed out, never acknowledged, then a restart: handed out again. */
        s = store_free(s);
        s = open_store(NULL, &settings);
        ASSERT_EQ(store_sink_add(s, "mqtt"), 0);
        ASSERT_EQ(store_sink_fetch(s, "mqtt", out, 30), 30);
        ASSERT_U64_EQ(out[0].id, first);

        /* Acknowledged: never again, also after a restart. */
        ASSERT_OK(store_sink_ack(s, "mqtt", first + 29));
        ASSERT_OK(store_sink_ack(s, "mqtt", first + 10)); /* below the cursor: nothing */
        ASSERT_ERROR(store_sink_ack(s, "mqtt", first + 100), EINVAL);
        ASSERT_OK(store_sink_rewind(s, "mqtt"));
        ASSERT_EQ(store_sink_fetch(s, "mqtt", out, 1), 1);
        ASSERT_U64_EQ(out[0].id, first + 30);
        ASSERT_EQ(get_stats(s).undelivered, 70);
        ASSERT_FALSE(store_is_idle(s)); /* the cursor waits for the next commit */
        s = store_free(s);

        s = open_store(NULL, &settings);
        ASSERT_EQ(store_sink_fetch(s, "mqtt", out, 40), 40);
        ASSERT_U64_EQ(out[0].id, first + 30);
        ASSERT_U64_EQ(out[0].reading.seq, 31);
        ASSERT_EQ(store_sink_fetch(s, "mqtt", out, 40), 30);
        ASSERT_U64_EQ(out[29].id, first + 99);
        ASSERT_EQ(store_sink_fetch(s, "mqtt", out, 40), 0);
        ASSERT_OK(store_sink_ack(s, "mqtt", first + 99));
        ASSERT_EQ(get_stats(s).undelivered, 0);

        /* A sink added later starts after what is already there. */
        ASSERT_EQ(store_sink_add(s, "late"), 1);
        ASSERT_EQ(store_sink_fetch(s, "late", out, 40), 0);
        append_many(s, "dev", 101, 105);
        ASSERT_OK(store_commit(s));
        ASSERT_EQ(store_sink_fetch(s, "late", out, 40), 5);
        ASSERT_U64_EQ(out[0].reading.seq, 101);
}

static void test_two_sinks(void) {
        StoreSettings settings = { .path = new_path("two-sinks") };
        _cleanup_(store_freep) Store *s = open_store(NULL, &settings);
        char *both[] = { (char *) "a", (char *) "b", NULL }, *only_a[] = { (char *) "a", NULL };
        StoredReading out[10];
        uint64_t first, oldest;

        /* No sink: nothing is delivered. */
        append_many(s, "dev", 1, 100);
        ASSERT_OK(store_commit(s));
        first = get_stats(s).last_id - 99;
        ASSERT_EQ(get_stats(s).undelivered, 100);
        ASSERT_EQ(store_get_oldest_undelivered(s, &oldest), 1);
        ASSERT_U64_EQ(oldest, make_reading("dev", 1).time_usec);

        /* Sinks added now start after the 100; their hold starts there too. */
        ASSERT_OK(store_set_sinks(s, both));
        ASSERT_EQ(get_stats(s).undelivered, 0);
        ASSERT_EQ(store_get_oldest_undelivered(s, &oldest), 0);
        append_many(s, "dev", 101, 200);
        ASSERT_OK(store_commit(s));

        ASSERT_OK(store_sink_ack(s, "a", first + 149));
        ASSERT_OK(store_sink_ack(s, "b", first + 119));
        ASSERT_EQ(get_stats(s).undelivered, 80); /* the slower sink decides */
        ASSERT_EQ(store_get_oldest_undelivered(s, &oldest), 1);
        ASSERT_U64_EQ(oldest, make_reading("dev", 121).time_usec);

        /* Disabling b releases its hold. */
        ASSERT_OK(store_set_sinks(s, only_a));
        ASSERT_EQ(get_stats(s).undelivered, 50);
        ASSERT_ERROR(store_sink_fetch(s, "b", out, 10), ESTALE);
        s = store_free(s);

        /* ... also after a restart, until it is enabled again: then it resumes at its cursor. */
        s = open_store(NULL, &settings);
        ASSERT_EQ(get_stats(s).undelivered, 50);
        ASSERT_OK(store_set_sinks(s, both));
        ASSERT_EQ(get_stats(s).undelivered, 80);
        ASSERT_EQ(store_sink_fetch(s, "b", out, 10), 10);
        ASSERT_U64_EQ(out[0].id, first + 120);

        /* With no sink enabled, nothing is delivered. */
        ASSERT_OK(store_set_sinks(s, NULL));
        ASSERT_EQ(get_stats(s).undelivered, 200);
        ASSERT_ERROR(store_set_sinks(s, (char *[]) { (char *) "ok", (char *) "", NULL }), EINVAL);
}

static void test_eviction(void) {
        StoreSettings settings = { .path = new_path("eviction"), .max_size = STORE_MAX_SIZE_MIN, .commit_readings = 200 };
        _cleanup_(store_freep) Store *s = open_store(NULL, &settings);
        uint64_t seq = 0, first, delivered_upto;
        StoreStats st;

        ASSERT_EQ(store_sink_add(s, "a"), 1);
        first = get_stats(s).last_id + 1;
        append_many(s, "dev", seq + 1, seq + 1000);
        seq += 1000;
        ASSERT_OK(store_commit(s));
        delivered_upto = first + 599;
        ASSERT_OK(store_sink_ack(s, "a", delivered_upto));

        /* Fill until readings are evicted: the 600 delivered ones go first. */
        while (get_stats(s).evicted_delivered + get_stats(s).evicted_undelivered == 0) {
                append_many(s, "dev", seq + 1, seq + 200);
                seq += 200;
                ASSERT_TRUE(seq < 100000);
        }
        st = get_stats(s);
        fprintf(stderr, "eviction began after %" PRIu64 " readings: %" PRIu64 " delivered, %" PRIu64
                " undelivered evicted; %" PRIu64 " bytes of %" PRIu64 "\n",
                seq, st.evicted_delivered, st.evicted_undelivered, st.size, st.max_size);
        ASSERT_TRUE(st.evicted_delivered > 0);
        ASSERT_TRUE(st.evicted_undelivered == 0 || st.evicted_delivered == 600);

        /* Then the oldest undelivered ones, counted apart. */
        while (get_stats(s).evicted_undelivered < 2000) {
                append_many(s, "dev", seq + 1, seq + 200);
                seq += 200;
                ASSERT_TRUE(seq < 100000);
                ASSERT_TRUE(get_stats(s).size <= STORE_MAX_SIZE_MIN);
        }
        ASSERT_OK(store_commit(s));
        st = get_stats(s);
        ASSERT_EQ(st.evicted_delivered, 600);
        ASSERT_U64_EQ(st.committed, seq);
        ASSERT_U64_EQ(st.committed, st.buffered + st.evicted_delivered + st.evicted_undelivered);
        ASSERT_U64_EQ(st.undelivered, st.buffered);
        ASSERT_TRUE(st.size <= STORE_MAX_SIZE_MIN);
        fprintf(stderr, "after %" PRIu64 " readings: %" PRIu64 " buffered, %" PRIu64 " delivered and %" PRIu64
                " undelivered evicted, %" PRIu64 " bytes\n",
                seq, st.buffered, st.evicted_delivered, st.evicted_undelivered, st.size);
        s = store_free(s);

        /* What is left is the newest readings, without holes; ids go on after a restart. */
        ASSERT_EQ(query_int(settings.path, "SELECT count(*) FROM readings"), (int64_t) st.buffered);
        ASSERT_EQ(query_int(settings.path, "SELECT min(id) FROM readings"), (int64_t) (st.last_id - st.buffered + 1));
        ASSERT_EQ(query_int(settings.path, "SELECT min(seq) FROM readings"), (int64_t) (seq - st.buffered + 1));
        ASSERT_EQ(query_int(settings.path, "PRAGMA page_count") * query_int(settings.path, "PRAGMA page_size"),
                  (int64_t) st.size);
        s = open_store(NULL, &settings);
        append_many(s, "dev", seq + 1, seq + 1);
        ASSERT_OK(store_commit(s));
        ASSERT_U64_EQ(get_stats(s).last_id, st.last_id + 1);
        ASSERT_U64_EQ(get_stats(s).buffered, st.buffered + 1);
}

/* A batch larger than the headroom under the cap (as after a long degraded spell with a small
 * cap) still goes in: room is made for it. */
static void test_eviction_big_batches(void) {
        StoreSettings settings = { .path = new_path("eviction-big"), .max_size = STORE_MAX_SIZE_MIN, .commit_readings = 3000 };
        _cleanup_(store_freep) Store *s = open_store(NULL, &settings);
        uint64_t seq = 0;
        StoreStats st;

        for (int i = 0; i < 10; i++) {
                append_many(s, "dev", seq + 1, seq + 3000);
                seq += 3000;
                ASSERT_FALSE(store_is_degraded(s));
        }
        st = get_stats(s);
        fprintf(stderr, "batches of 3000 under a 1 MiB cap: %" PRIu64 " buffered, %" PRIu64 " evicted, %" PRIu64
                " failed commits, %" PRIu64 " bytes\n",
                st.buffered, st.evicted_undelivered, st.commit_failures, st.size);
        ASSERT_U64_EQ(st.committed, seq);
        ASSERT_EQ(st.write_failed, 0);
        ASSERT_TRUE(st.evicted_undelivered > 0);
        ASSERT_U64_EQ(st.committed, st.buffered + st.evicted_undelivered);
        ASSERT_TRUE(st.size <= STORE_MAX_SIZE_MIN);
}

static void test_anomaly_bound(void) {
        StoreSettings settings = { .path = new_path("anomalies"), .max_anomalies = 10 };
        _cleanup_(store_freep) Store *s = open_store(NULL, &settings);
        StoredAnomaly out[20];

        for (unsigned i = 0; i < 25; i++) {
                AnomalyEvent e = { .device = "dev", .type = "t", .channel = CHANNEL_AX, .start_usec = 1000 + i,
                                   .end_usec = 1000 + i, .start_seq = i, .end_seq = i, .count = 1, .peak_z = 3 + i };

                ASSERT_OK(store_append_anomaly(s, &e));
                if (i % 7 == 0)
                        ASSERT_OK(store_commit(s));
        }
        ASSERT_OK(store_commit(s));
        ASSERT_EQ(get_stats(s).anomalies, 10);
        ASSERT_EQ(get_stats(s).anomalies_committed, 25);
        ASSERT_EQ(get_stats(s).anomalies_dropped, 15);
        ASSERT_EQ(store_get_anomalies(s, 0, out, ELEMENTSOF(out)), 10);
        ASSERT_U64_EQ(out[0].event.start_usec, 1015);
        ASSERT_U64_EQ(out[9].event.start_usec, 1024);
        ASSERT_EQ(store_get_anomalies(s, 1020, out, 2), 2);
        ASSERT_U64_EQ(out[0].event.start_usec, 1020);
        ASSERT_U64_EQ(out[1].id, out[0].id + 1);
        s = store_free(s);
        ASSERT_EQ(query_int(settings.path, "SELECT count(*) FROM anomalies"), 10);
}

static void test_anomaly_duplicates(void) {
        StoreSettings settings = { .path = new_path("anomaly-duplicates") };
        _cleanup_(store_freep) Store *s = open_store(NULL, &settings);
        AnomalyEvent e = { .device = "dev", .type = "t", .channel = CHANNEL_AX, .start_usec = 1000, .end_usec = 1010,
                           .start_seq = 7, .end_seq = 8, .count = 2, .peak_z = 4 };
        StoredAnomaly out[4];

        ASSERT_OK(store_append_anomaly(s, &e));
        ASSERT_OK(store_commit(s));
        s = store_free(s);

        /* Detected again after a restart: the same event, and one on another channel, one
         * starting later; the first is skipped without taking an id. */
        s = open_store(NULL, &settings);
        ASSERT_OK(store_append_anomaly(s, &e));
        e.channel = CHANNEL_AY;
        ASSERT_OK(store_append_anomaly(s, &e));
        e.start_seq = 9;
        ASSERT_OK(store_append_anomaly(s, &e));
        ASSERT_OK(store_commit(s));
        ASSERT_EQ(get_stats(s).anomalies_committed, 2);
        ASSERT_EQ(get_stats(s).anomalies_duplicates, 1);
        ASSERT_EQ(get_stats(s).anomalies, 3);
        ASSERT_EQ(store_get_anomalies(s, 0, out, ELEMENTSOF(out)), 3);
        ASSERT_U64_EQ(out[1].id, out[0].id + 1);
        ASSERT_U64_EQ(out[2].id, out[1].id + 1);
        s = store_free(s);
        ASSERT_EQ(query_int(settings.path, "SELECT count(*) FROM anomalies"), 3);
}

static void test_refusals(void) {
        StoreSettings settings = { .path = new_path("newer") };
        _cleanup_free_ char *error = NULL;
        Store *s = NULL, *t = NULL;
        char missing[4200];

        /* A newer schema is left alone. */
        s = open_store(NULL, &settings);
        s = store_free(s);
        exec_sql(settings.path, "PRAGMA user_version = 99");
        ASSERT_ERROR(store_open(NULL, &settings, &s, &error), EPROTONOSUPPORT);
        ASSERT_TRUE(!s);
        fprintf(stderr, "newer schema: %s\n", error);
        ASSERT_TRUE(strstr(error, "99"));
        ASSERT_EQ(query_int(settings.path, "PRAGMA user_version"), 99);
        error = mfree(error);

        /* Somebody else's database too. */
        settings.path = new_path("foreign");
        exec_sql(settings.path, "CREATE TABLE mine (x); INSERT INTO mine VALUES (1)");
        ASSERT_ERROR(store_open(NULL, &settings, &s, &error), EMEDIUMTYPE);
        fprintf(stderr, "foreign database: %s\n", error);
        ASSERT_EQ(query_int(settings.path, "SELECT count(*) FROM mine"), 1);
        error = mfree(error);

        /* The directory must exist. */
        snprintf(missing, sizeof(missing), "%s/no-such-dir/buffer.db", test_tmpdir());
        settings.path = missing;
        ASSERT_ERROR(store_open(NULL, &settings, &s, &error), ENOENT);
        fprintf(stderr, "missing directory: %s\n", error);
        ASSERT_TRUE(strstr(error, "no-such-dir"));
        error = mfree(error);

        /* One writer at a time; readers are welcome. */
        settings.path = new_path("busy");
        s = open_store(NULL, &settings);
        append_many(s, "dev", 1, 10);
        ASSERT_OK(store_commit(s));
        append_many(s, "dev", 11, 15);
        ASSERT_EQ(query_int(settings.path, "SELECT count(*) FROM readings"), 10);
        ASSERT_ERROR(store_open(NULL, &settings, &t, &error), EBUSY);
        fprintf(stderr, "second opener: %s\n", error);
        error = mfree(error);
        s = store_free(s);
        t = open_store(NULL, &settings);
        t = store_free(t);

        /* Bad settings. */
        settings.max_size = 4096;
        ASSERT_ERROR(store_open(NULL, &settings, &s, NULL), EINVAL);
        settings = (StoreSettings) { .path = settings.path, .commit_readings = 100, .max_pending = 10 };
        ASSERT_ERROR(store_open(NULL, &settings, &s, NULL), EINVAL);
}

static bool file_exists(const char *path) {
        struct stat st;

        return stat(path, &st) == 0;
}

static void assert_moved_aside(StoreSettings *settings, const char *what) {
        _cleanup_free_ char *error = NULL, *aside = NULL;
        _cleanup_(store_freep) Store *s = NULL;
        const char *p;

        ASSERT_EQ(store_open(NULL, settings, &s, &error), 1);
        fprintf(stderr, "%s: %s\n", what, error);
        p = strstr(error, "moved it to ");
        ASSERT_TRUE(p);
        aside = strndup(p + strlen("moved it to "), strcspn(p + strlen("moved it to "), " "));
        ASSERT_TRUE(strstr(aside, ".corrupt-"));
        ASSERT_TRUE(file_exists(aside));

        /* A fresh, working buffer in its place. */
        ASSERT_EQ(get_stats(s).buffered, 0);
        append_many(s, "dev", 1, 10);
        ASSERT_OK(store_commit(s));
        ASSERT_EQ(get_stats(s).buffered, 10);
}

static void test_corrupt(void) {
        StoreSettings settings = { .path = new_path("garbage") };
        char text[8192];
        FILE *f;

        /* Not a database at all. */
        for (size_t i = 0; i < sizeof(text) - 1; i++)
                text[i] = "this is not an SQLite file\n"[i % 27];
        text[sizeof(text) - 1] = 0;
        f = fopen(settings.path, "we");
        ASSERT_TRUE(f);
        fputs(text, f);
        ASSERT_EQ(fclose(f), 0);
        assert_moved_aside(&settings, "garbage file");

        /* A real buffer whose pages were overwritten in the middle. */
        settings.path = new_path("damaged");
        {
                _cleanup_(store_freep) Store *s = open_store(NULL, &settings);
                append_many(s, "dev", 1, 5000);
                ASSERT_OK(store_commit(s));
        }
        f = fopen(settings.path, "r+e");
        ASSERT_TRUE(f);
        ASSERT_EQ(fseek(f, 4096 * 3, SEEK_SET), 0);
        for (int i = 0; i < 4096 * 20; i++)
                fputc(0x5a, f);
        ASSERT_EQ(fclose(f), 0);
        assert_moved_aside(&settings, "damaged file");
        /* A second time the same second gets its own name. */
        settings.path = new_path("twice");
        for (int round = 0; round < 2; round++) {
                f = fopen(settings.path, "we");
                ASSERT_TRUE(f);
                fputs(text, f);
                ASSERT_EQ(fclose(f), 0);
                assert_moved_aside(&settings, "garbage again");
        }
}

static void set_file_size_limit(rlim_t limit) {
        struct rlimit rl;

        ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &rl), 0);
        rl.rlim_cur = limit == RLIM_INFINITY ? rl.rlim_max : limit;
        ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

/* Nothing is printed from the callback: with the limit in place, writing the log could fail. */
typedef struct StateLog {
        unsigned degraded, recovered;
        int last_error;
        char message[256];
} StateLog;

static void on_state_changed(Store *s, int error, const char *message, void *userdata) {
        StateLog *log = userdata;

        if (error < 0) {
                log->degraded++;
                log->last_error = error;
                snprintf(log->message, sizeof(log->message), "%s", strempty(message));
        } else
                log->recovered++;
}

static void test_disk_full(void) {
        StateLog log = {};
        StoreSettings settings = {
                .path = new_path("disk-full"),
                .commit_readings = 100,
                .max_pending = 1000,
                .retry_usec = 50 * 1000,
                .on_state_changed = on_state_changed,
                .userdata = &log,
        };
        _cleanup_(store_freep) Store *s = NULL;
        StoreStats st;

        (void) signal(SIGXFSZ, SIG_IGN);
        s = open_store(NULL, &settings);
        append_many(s, "dev", 1, 100);
        ASSERT_EQ(get_stats(s).committed, 100);

        /* Within the bound: nothing is lost. */
        set_file_size_limit(1);
        append_many(s, "dev", 101, 700);
        st = get_stats(s);
        ASSERT_TRUE(store_is_degraded(s));
        ASSERT_EQ(log.degraded, 1);
        ASSERT_TRUE(log.last_error < 0);
        ASSERT_EQ(st.committed, 100);
        ASSERT_EQ(st.pending, 600);
        ASSERT_EQ(st.write_failed, 0);
        ASSERT_TRUE(st.commit_failures >= 1);
        ASSERT_TRUE(store_commit(s) < 0);

        set_file_size_limit(RLIM_INFINITY);
        fprintf(stderr, "degraded: %s (%s)\n", strerror(-log.last_error), log.message);
        ASSERT_OK(store_commit(s));
        ASSERT_FALSE(store_is_degraded(s));
        ASSERT_EQ(log.recovered, 1);
        ASSERT_EQ(get_stats(s).committed, 700);
        ASSERT_EQ(get_stats(s).pending, 0);

        /* Beyond it: the oldest queued readings go, counted. */
        set_file_size_limit(1);
        append_many(s, "dev", 701, 2200);
        st = get_stats(s);
        ASSERT_TRUE(store_is_degraded(s));
        ASSERT_EQ(log.degraded, 2);
        ASSERT_EQ(st.pending, 1000);
        ASSERT_EQ(st.write_failed, 500);
        set_file_size_limit(RLIM_INFINITY);
        /* Without an event loop, the first append after retry_usec retries. */
        (void) usleep(60 * 1000);
        append_many(s, "dev", 2201, 2300);
        ASSERT_FALSE(store_is_degraded(s));
        ASSERT_EQ(log.recovered, 2);
        ASSERT_EQ(get_stats(s).write_failed, 500);
        ASSERT_OK(store_commit(s));
        st = get_stats(s);
        ASSERT_EQ(st.committed, 1800);
        ASSERT_EQ(st.appended, st.committed + st.pending + st.write_failed);
        s = store_free(s);

        ASSERT_EQ(query_int(settings.path, "SELECT count(*) FROM readings"), 1800);
        ASSERT_EQ(query_int(settings.path, "SELECT count(*) FROM readings WHERE seq BETWEEN 701 AND 1200"), 0);
        ASSERT_EQ(query_int(settings.path, "SELECT min(seq) FROM readings WHERE seq > 700"), 1201);
        ASSERT_EQ(query_int(settings.path, "SELECT max(seq) FROM readings"), 2300);
        {
                sqlite3 *db = NULL;
                sqlite3_stmt *q = NULL;

                ASSERT_EQ(sqlite3_open_v2(settings.path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
                ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &q, NULL), SQLITE_OK);
                ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
                ASSERT_STREQ((const char *) sqlite3_column_text(q, 0), "ok");
                sqlite3_finalize(q);
                sqlite3_close(db);
        }
}

static void test_disk_full_recovers_on_loop(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        StateLog log = {};
        StoreSettings settings = {
                .path = new_path("disk-full-loop"),
                .commit_readings = 50,
                .retry_usec = 50 * 1000,
                .on_state_changed = on_state_changed,
                .userdata = &log,
        };
        _cleanup_(store_freep) Store *s = NULL;
        double start;

        (void) signal(SIGXFSZ, SIG_IGN);
        ASSERT_OK(sd_event_new(&e));
        s = open_store(e, &settings);
        append_many(s, "dev", 1, 50);

        set_file_size_limit(1);
        append_many(s, "dev", 51, 300);
        ASSERT_TRUE(store_is_degraded(s));
        /* The retry timer keeps failing quietly: one report, not one per attempt. */
        start = now_sec();
        while (now_sec() - start < 0.3)
                ASSERT_OK(sd_event_run(e, 100 * 1000));
        ASSERT_TRUE(get_stats(s).commit_failures >= 2);
        ASSERT_EQ(log.degraded, 1);
        set_file_size_limit(RLIM_INFINITY);

        start = now_sec();
        while (store_is_degraded(s) && now_sec() - start < 5)
                ASSERT_OK(sd_event_run(e, 100 * 1000));
        ASSERT_FALSE(store_is_degraded(s));
        ASSERT_EQ(log.recovered, 1);
        ASSERT_EQ(get_stats(s).committed, 300);
        ASSERT_TRUE(store_is_idle(s));
}

static void write_proc(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        if (f) {
                fputs(text, f);
                fclose(f);
        }
}

/* A real full file system: a 4 MiB tmpfs, mounted in a user and mount namespace of our own, so
 * no privilege is needed where unprivileged user namespaces are allowed (else: skipped). Runs in
 * a child, which owns the namespace; a failed assertion aborts it. */
static void disk_full_tmpfs_child(const char *dir) {
        char path[4300], ballast[4300], map[64];
        uid_t uid = getuid();
        gid_t gid = getgid();
        StateLog log = {};
        StoreSettings settings = {
                .path = path,
                .max_pending = 2000,
                .retry_usec = 60 * UINT64_C(1000000), /* no retries but the explicit one */
                .on_state_changed = on_state_changed,
                .userdata = &log,
        };
        Store *s = NULL;
        StoreStats st;
        uint64_t seq = 0, committed;
        FILE *f;

        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
                _exit(EXIT_TEST_SKIP);
        write_proc("/proc/self/setgroups", "deny");
        snprintf(map, sizeof(map), "0 %u 1", (unsigned) uid);
        write_proc("/proc/self/uid_map", map);
        snprintf(map, sizeof(map), "0 %u 1", (unsigned) gid);
        write_proc("/proc/self/gid_map", map);
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("blegate-test", dir, "tmpfs", 0, "size=4m,mode=0700") < 0)
                _exit(EXIT_TEST_SKIP);

        /* Stands for the files of some other program that fill the disk, and go away again. */
        snprintf(ballast, sizeof(ballast), "%s/ballast", dir);
        f = fopen(ballast, "we");
        ASSERT_TRUE(f);
        for (int i = 0; i < 1024 * 1024; i++)
                fputc('x', f);
        ASSERT_EQ(fclose(f), 0);

        snprintf(path, sizeof(path), "%s/buffer.db", dir);
        s = open_store(NULL, &settings);
        while (!store_is_degraded(s)) {
                seq++;
                append_many(s, "dev", seq, seq);
                ASSERT_TRUE(seq < 1000000);
        }
        ASSERT_EQ(log.last_error, -ENOSPC);
        append_many(s, "dev", seq + 1, seq + 3000);
        seq += 3000;
        st = get_stats(s);
        ASSERT_EQ(st.pending, 2000);
        ASSERT_TRUE(st.write_failed > 0);
        fprintf(stderr, "tmpfs full after %" PRIu64 " committed readings: %s (%s); %" PRIu64 " queued, %" PRIu64
                " dropped\n", st.committed, strerror(-log.last_error), log.message, st.pending, st.write_failed);

        ASSERT_EQ(unlink(ballast), 0);
        ASSERT_OK(store_commit(s));
        ASSERT_FALSE(store_is_degraded(s));
        ASSERT_EQ(log.recovered, 1);
        st = get_stats(s);
        ASSERT_U64_EQ(st.committed, seq - st.write_failed);
        committed = st.committed;
        s = store_free(s);

        ASSERT_EQ(query_int(path, "SELECT count(*) FROM readings"), (int64_t) committed);
        ASSERT_EQ(query_int(path, "SELECT max(seq) FROM readings"), (int64_t) seq);
        _exit(EXIT_SUCCESS);
}

static void test_disk_full_tmpfs(void) {
        char dir[4200];
        int status;
        pid_t pid;

        snprintf(dir, sizeof(dir), "%s/tmpfs", test_tmpdir());
        ASSERT_EQ(mkdir(dir, 0700), 0);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0)
                disk_full_tmpfs_child(dir);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_TEST_SKIP) {
                fprintf(stderr, "no user namespace for a tmpfs, skipping the real full file system\n");
                return;
        }
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_open_many(void) {
        const char *env = getenv("TEST_STORE_ROWS");
        uint64_t rows = env ? strtoull(env, NULL, 10) : 1000000;
        StoreSettings settings = { .path = new_path("many"), .commit_readings = 50000 };
        _cleanup_(store_freep) Store *s = open_store(NULL, &settings);
        double start, fill, open_time, check_time;
        sqlite3 *db = NULL;

        start = now_sec();
        for (uint64_t i = 1; i <= rows; i++) {
                Reading r = make_reading(i % 2 ? "odd" : "even", i);
                ASSERT_EQ(store_append(s, &r), 1);
        }
        ASSERT_OK(store_commit(s));
        fill = now_sec() - start;
        s = store_free(s);

        start = now_sec();
        s = open_store(NULL, &settings);
        open_time = now_sec() - start;
        ASSERT_U64_EQ(get_stats(s).buffered, rows);
        ASSERT_U64_EQ(get_stats(s).undelivered, rows);
        {
                Reading r = make_reading("odd", rows - 1);
                ASSERT_EQ(store_append(s, &r), 0);
        }
        s = store_free(s);

        /* How much of the open is the quick_check. */
        ASSERT_EQ(sqlite3_open_v2(settings.path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        start = now_sec();
        ASSERT_EQ(sqlite3_exec(db, "PRAGMA quick_check(1)", NULL, NULL, NULL), SQLITE_OK);
        check_time = now_sec() - start;
        sqlite3_close(db);

        fprintf(stderr, "%" PRIu64 " rows: filled in %.2f s, file %.1f MiB, open %.1f ms (quick_check alone %.1f ms)\n",
                rows, fill, (double) query_int(settings.path, "PRAGMA page_count") * 4096 / (1024 * 1024),
                open_time * 1000, check_time * 1000);
}

int main(void) {
        test_round_trip();
        test_batch_by_count();
        test_batch_by_time();
        test_duplicates();
        test_sink_at_least_once();
        test_two_sinks();
        test_eviction();
        test_eviction_big_batches();
        test_anomaly_bound();
        test_anomaly_duplicates();
        test_refusals();
        test_corrupt();
        test_disk_full();
        test_disk_full_recovers_on_loop();
        test_disk_full_tmpfs();
        test_open_many();
        return 0;
}
