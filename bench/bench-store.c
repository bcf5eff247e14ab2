/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-store: the daemon's write path at full speed against the physical limit of SQLite on
 * this machine.
 *
 * The pipeline contender does what blegated does with a replay at --speed 0 and no sinks: read
 * a recording (recording_next()), score every reading (detector_feed(), anomaly events into
 * store_append_anomaly()), store it (store_append(), default settings: batches of 500, WAL,
 * synchronous=FULL), and commit the rest at the end. The raw contender inserts the same rows
 * into the same readings table in the same mode (same pragmas, batches of 500 in one
 * transaction, one prepared statement) and nothing else; it reads the recording too, but
 * outside its clock, so its rate is SQLite's alone. Both start from no database file, in the
 * same directory, and stop the clock once everything is committed (the close, which
 * checkpoints the WAL, is not timed). They run in turns in this one process, 3 times each, and
 * the medians are compared.
 *
 * Peak RSS is the high-water mark of this process (getrusage), reset before each run through
 * /proc/self/clear_refs, so each contender's figure is its own.
 *
 * Usage: bench-store [RECORDING] [--dir DIR]. Without a recording, it makes one with
 * tests/data/generate-recording of the same build (1,000,000 rows, 8 devices) and keeps it
 * beside this binary. The databases go to DIR (default: this binary's directory), which should
 * be on the disk the daemon would use: on a tmpfs, fsync costs nothing.
 */

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "detector.h"
#include "macro.h"
#include "recording.h"
#include "store.h"

#define N_RUNS 3
#define BATCH STORE_COMMIT_READINGS_DEFAULT
#define TARGET_RATIO 0.60
#define TARGET_RSS_KIB (10 * 1024)
#define RECORDING_ROWS "1000000"
#define RECORDING_DEVICES "8"
#define RAW_DEVICES_MAX 1024

typedef struct Result {
        double seconds;      /* wall, until all is committed */
        double cpu_seconds;  /* user + system */
        double read_seconds; /* raw only: reading the recording, outside its clock */
        uint64_t rows;
        long peak_rss_kib;
} Result;

static double now_sec(clockid_t clock) {
        struct timespec ts;

        (void) clock_gettime(clock, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void die(const char *what, int error) {
        fprintf(stderr, "bench-store: %s: %s\n", what, strerror(abs(error)));
        exit(EXIT_FAILURE);
}

static void reset_peak_rss(void) {
        int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);

        if (fd < 0 || write(fd, "5", 1) != 1)
                fprintf(stderr, "bench-store: cannot reset the peak RSS: %m; figures include earlier runs\n");
        if (fd >= 0)
                close(fd);
}

static long peak_rss_kib(void) {
        struct rusage ru;

        (void) getrusage(RUSAGE_SELF, &ru);
        return ru.ru_maxrss;
}

static void remove_database(const char *path) {
        static const char *const suffixes[] = { "", "-wal", "-shm" };
        char p[PATH_MAX + 8];

        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
                (void) unlink(p);
        }
}

typedef struct Pipeline {
        Store *store;
        uint64_t events;
} Pipeline;

static void on_anomaly(const AnomalyEvent *e, void *userdata) {
        Pipeline *p = userdata;
        int k = store_append_anomaly(p->store, e);

        if (k < 0)
                die("store_append_anomaly()", k);
        p->events++;
}

static Result run_pipeline(const char *recording, const char *db) {
        DetectorSettings ds = { .window = 100, .min_samples = 100, .threshold = 3, .min_stddev = 1e-3 };
        StoreSettings ss = { .path = db };
        _cleanup_(recording_freep) Recording *rec = NULL;
        _cleanup_(detector_freep) Detector *d = NULL;
        _cleanup_free_ char *error = NULL;
        Pipeline p = {};
        StoreStats stats;
        Result res = {};
        double start, cpu_start;
        Reading r;
        int k;

        remove_database(db);
        reset_peak_rss();
        start = now_sec(CLOCK_MONOTONIC);
        cpu_start = now_sec(CLOCK_PROCESS_CPUTIME_ID);

        k = recording_open(recording, &rec, &error);
        if (k < 0)
                die(error ?: recording, k);
        k = store_open(NULL, &ss, &p.store, &error);
        if (k != 0)
                die(error ?: db, k < 0 ? k : EBADMSG);
        k = detector_new(&ds, on_anomaly, &p, &d);
        if (k < 0)
                die("detector_new()", k);

        while ((k = recording_next(rec, &r)) != 0) {
                if (k == -EBADMSG)
                        continue;
                if (k < 0)
                        die("recording_next()", k);
                k = detector_feed(d, &r, NULL);
                if (k < 0)
                        die("detector_feed()", k);
                k = store_append(p.store, &r);
                if (k < 0)
                        die("store_append()", k);
        }
        detector_flush(d);
        k = store_commit(p.store);
        if (k < 0)
                die("store_commit()", k);

        res.seconds = now_sec(CLOCK_MONOTONIC) - start;
        res.cpu_seconds = now_sec(CLOCK_PROCESS_CPUTIME_ID) - cpu_start;
        store_get_stats(p.store, &stats);
        if (stats.duplicates > 0 || stats.evicted_delivered + stats.evicted_undelivered > 0 || stats.commit_failures > 0)
                fprintf(stderr, "bench-store: unexpected: %" PRIu64 " duplicates, %" PRIu64 " evicted, %" PRIu64
                        " failed commits\n",
                        stats.duplicates, stats.evicted_delivered + stats.evicted_undelivered, stats.commit_failures);
        res.rows = stats.committed;
        res.peak_rss_kib = peak_rss_kib();
        printf("  pipeline: %" PRIu64 " readings, %" PRIu64 " anomaly events, %" PRIu64 " commits, file %.1f MiB\n",
               stats.committed, stats.anomalies_committed, stats.commits, (double) stats.size / (1024 * 1024));

        p.store = store_free(p.store);
        remove_database(db);
        return res;
}

static void sql_check(sqlite3 *db, int rc, const char *what) {
        if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
                fprintf(stderr, "bench-store: %s: %s\n", what, sqlite3_errmsg(db));
                exit(EXIT_FAILURE);
        }
}

typedef struct RawRow {
        int64_t device;
        Reading reading;
} RawRow;

static Result run_raw(const char *recording, const char *path) {
        static const char setup[] =
                "PRAGMA journal_mode = WAL;"
                "PRAGMA synchronous = FULL;"
                "PRAGMA secure_delete = OFF;"
                "PRAGMA cache_size = -2000;"
                "PRAGMA wal_autocheckpoint = 1000;"
                "PRAGMA journal_size_limit = 8192000;"
                "CREATE TABLE readings ("
                "  id INTEGER PRIMARY KEY,"
                "  device INTEGER NOT NULL,"
                "  time_usec INTEGER NOT NULL,"
                "  seq INTEGER NOT NULL,"
                "  channels INTEGER NOT NULL,"
                "  ax REAL, ay REAL, az REAL, gx REAL, gy REAL, gz REAL,"
                "  mx REAL, my REAL, mz REAL, oa REAL, ob REAL, og REAL);";
        _cleanup_(recording_freep) Recording *rec = NULL;
        _cleanup_free_ char *error = NULL;
        _cleanup_free_ RawRow *rows = NULL;
        char devices[RAW_DEVICES_MAX][DEVICE_ID_MAX + 1];
        size_t n_devices = 0, n;
        sqlite3 *db = NULL;
        sqlite3_stmt *insert = NULL, *begin = NULL, *commit = NULL;
        double start, cpu_start, t;
        Result res = {};
        int64_t id, first_id;
        bool end = false;
        int k;

        /* Ids like the store's: they start at the wall clock in µs, so keys take as many bytes. */
        first_id = id = (int64_t) (now_sec(CLOCK_REALTIME) * 1e6);

        remove_database(path);
        rows = new(RawRow, BATCH);
        if (!rows)
                die("raw", ENOMEM);
        k = recording_open(recording, &rec, &error);
        if (k < 0)
                die(error ?: recording, k);

        reset_peak_rss();
        start = now_sec(CLOCK_MONOTONIC);
        cpu_start = now_sec(CLOCK_PROCESS_CPUTIME_ID);

        sql_check(db, sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL),
                  "open");
        sql_check(db, sqlite3_exec(db, setup, NULL, NULL, NULL), "setup");
        sql_check(db, sqlite3_prepare_v3(db,
                                         "INSERT INTO readings (id, device, time_usec, seq, channels, "
                                         "ax, ay, az, gx, gy, gz, mx, my, mz, oa, ob, og) VALUES (?1, ?2, ?3, ?4, ?5, "
                                         "?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                                         -1, SQLITE_PREPARE_PERSISTENT, &insert, NULL),
                  "prepare");
        sql_check(db, sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL), "prepare");
        sql_check(db, sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL), "prepare");

        while (!end) {
                /* Read a batch, off the clock. */
                t = now_sec(CLOCK_MONOTONIC);
                for (n = 0; n < BATCH;) {
                        RawRow *row = rows + n;
                        size_t i;

                        k = recording_next(rec, &row->reading);
                        if (k == 0) {
                                end = true;
                                break;
                        }
                        if (k == -EBADMSG)
                                continue;
                        if (k < 0)
                                die("recording_next()", k);
                        for (i = 0; i < n_devices && !streq(devices[i], row->reading.device); i++)
                                ;
                        if (i == n_devices) {
                                if (n_devices == RAW_DEVICES_MAX)
                                        die("raw: too many devices", E2BIG);
                                memcpy(devices[n_devices++], row->reading.device, DEVICE_ID_MAX + 1);
                        }
                        row->device = (int64_t) i + 1;
                        n++;
                }
                res.read_seconds += now_sec(CLOCK_MONOTONIC) - t;
                if (n == 0)
                        break;

                sql_check(db, sqlite3_step(begin), "BEGIN");
                sqlite3_reset(begin);
                for (size_t i = 0; i < n; i++) {
                        const Reading *r = &rows[i].reading;

                        sqlite3_bind_int64(insert, 1, ++id);
                        sqlite3_bind_int64(insert, 2, rows[i].device);
                        sqlite3_bind_int64(insert, 3, (sqlite3_int64) r->time_usec);
                        sqlite3_bind_int64(insert, 4, (sqlite3_int64) r->seq);
                        sqlite3_bind_int64(insert, 5, r->channels);
                        for (Channel c = 0; c < _CHANNEL_MAX; c++)
                                if (reading_has(r, c))
                                        sqlite3_bind_double(insert, 6 + c, r->values[c]);
                                else
                                        sqlite3_bind_null(insert, 6 + c);
                        sql_check(db, sqlite3_step(insert), "INSERT");
                        sqlite3_reset(insert);
                }
                sql_check(db, sqlite3_step(commit), "COMMIT");
                sqlite3_reset(commit);
        }

        res.seconds = now_sec(CLOCK_MONOTONIC) - start - res.read_seconds;
        res.cpu_seconds = now_sec(CLOCK_PROCESS_CPUTIME_ID) - cpu_start - res.read_seconds;
        res.rows = (uint64_t) (id - first_id);
        res.peak_rss_kib = peak_rss_kib();

        sqlite3_finalize(insert);
        sqlite3_finalize(begin);
        sqlite3_finalize(commit);
        sqlite3_close(db);
        remove_database(path);
        return res;
}

static int compare_result(const void *a, const void *b) {
        double x = ((const Result *) a)->seconds, y = ((const Result *) b)->seconds;

        return (x > y) - (x < y);
}

static int compare_long(const void *a, const void *b) {
        long x = *(const long *) a, y = *(const long *) b;

        return (x > y) - (x < y);
}

static long median_rss(const Result *r) {
        long v[N_RUNS];

        for (size_t i = 0; i < N_RUNS; i++)
                v[i] = r[i].peak_rss_kib;
        qsort(v, N_RUNS, sizeof(long), compare_long);
        return v[N_RUNS / 2];
}

static long max_rss(const Result *r) {
        long m = 0;

        for (size_t i = 0; i < N_RUNS; i++)
                m = MAX(m, r[i].peak_rss_kib);
        return m;
}

/* Makes the default recording beside this binary with the generator of the same build, unless
 * it is there already and newer than the generator. */
static const char *default_recording(const char *exe_dir) {
        static char path[PATH_MAX];
        char generator[PATH_MAX];
        struct stat st_gen, st_rec;
        pid_t pid;
        int status;

        snprintf(generator, sizeof(generator), "%s/../tests/data/generate-recording", exe_dir);
        snprintf(path, sizeof(path), "%s/bench-store-" RECORDING_ROWS ".csv", exe_dir);
        if (stat(generator, &st_gen) < 0)
                die(generator, errno);
        if (stat(path, &st_rec) == 0 && st_rec.st_mtime >= st_gen.st_mtime)
                return path;

        printf("Generating %s with %s ...\n", path, generator);
        fflush(stdout);
        pid = fork();
        if (pid < 0)
                die("fork", errno);
        if (pid == 0) {
                execl(generator, generator, "--rows", RECORDING_ROWS, "--devices", RECORDING_DEVICES, "--output", path,
                      (char *) NULL);
                _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                die("generate-recording failed", EIO);
        return path;
}

static void usage(void) {
        printf("Usage: bench-store [RECORDING] [--dir DIR]\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument,       NULL, 'h' },
                { "dir",  required_argument, NULL, 'd' },
                {}
        };
        char exe[PATH_MAX], db_pipeline[PATH_MAX], db_raw[PATH_MAX];
        const char *recording, *dir = NULL, *exe_dir;
        Result pipeline[N_RUNS], raw[N_RUNS], pm, rm;
        double pipeline_rate, raw_rate, raw_read_rate, ratio;
        ssize_t n;
        int c;

        while ((c = getopt_long(argc, argv, "hd:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        usage();
                        return EXIT_SUCCESS;
                case 'd':
                        dir = optarg;
                        break;
                default:
                        usage();
                        return EXIT_FAILURE;
                }
        if (argc - optind > 1) {
                usage();
                return EXIT_FAILURE;
        }

        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n < 0)
                die("/proc/self/exe", errno);
        exe[n] = 0;
        exe_dir = dirname(exe);
        recording = optind < argc ? argv[optind] : default_recording(exe_dir);
        dir = dir ?: exe_dir;
        snprintf(db_pipeline, sizeof(db_pipeline), "%s/bench-store-pipeline.db", dir);
        snprintf(db_raw, sizeof(db_raw), "%s/bench-store-raw.db", dir);

        printf("Recording %s, databases in %s, SQLite %s, batches of %u, %d runs each, in turns.\n", recording, dir,
               sqlite3_libversion(), BATCH, N_RUNS);

        for (size_t i = 0; i < N_RUNS; i++) {
                pipeline[i] = run_pipeline(recording, db_pipeline);
                printf("  run %zu: pipeline %.3f s (cpu %.3f s), %.0f readings/s, peak RSS %.1f MiB\n", i + 1,
                       pipeline[i].seconds, pipeline[i].cpu_seconds, (double) pipeline[i].rows / pipeline[i].seconds,
                       (double) pipeline[i].peak_rss_kib / 1024);
                raw[i] = run_raw(recording, db_raw);
                printf("  run %zu: raw SQLite %.3f s (cpu %.3f s), %.0f rows/s (reading the recording: %.3f s more), "
                       "peak RSS %.1f MiB\n",
                       i + 1, raw[i].seconds, raw[i].cpu_seconds, (double) raw[i].rows / raw[i].seconds,
                       raw[i].read_seconds, (double) raw[i].peak_rss_kib / 1024);
                fflush(stdout);
                if (raw[i].rows != pipeline[i].rows)
                        die("the contenders stored different numbers of rows", EIO);
        }

        qsort(pipeline, N_RUNS, sizeof(Result), compare_result);
        qsort(raw, N_RUNS, sizeof(Result), compare_result);
        pm = pipeline[N_RUNS / 2];
        rm = raw[N_RUNS / 2];
        pipeline_rate = (double) pm.rows / pm.seconds;
        raw_rate = (double) rm.rows / rm.seconds;
        raw_read_rate = (double) rm.rows / (rm.seconds + rm.read_seconds);
        ratio = pipeline_rate / raw_rate;

        printf("\nMedians of %d runs, %" PRIu64 " readings:\n", N_RUNS, pm.rows);
        printf("  %-44s %8.3f s %10.0f readings/s  peak RSS %.1f MiB (max %.1f)\n",
               "replay -> detector -> store (pipeline)", pm.seconds, pipeline_rate,
               (double) median_rss(pipeline) / 1024, (double) max_rss(pipeline) / 1024);
        printf("  %-44s %8.3f s %10.0f rows/s      peak RSS %.1f MiB (max %.1f)\n",
               "raw SQLite inserts (the limit)", rm.seconds, raw_rate,
               (double) median_rss(raw) / 1024, (double) max_rss(raw) / 1024);
        printf("  %-44s %8.3f s %10.0f rows/s\n", "raw SQLite inserts + reading the recording",
               rm.seconds + rm.read_seconds, raw_read_rate);
        printf("\nTargets:\n");
        printf("  pipeline >= %.0f%% of raw SQLite: %.0f%% %s\n", TARGET_RATIO * 100, ratio * 100,
               ratio >= TARGET_RATIO ? "PASS" : "MISS");
        printf("  pipeline peak RSS < %d MiB: %.1f MiB %s\n", TARGET_RSS_KIB / 1024, (double) max_rss(pipeline) / 1024,
               max_rss(pipeline) < TARGET_RSS_KIB ? "PASS" : "MISS");
        return EXIT_SUCCESS;
}
