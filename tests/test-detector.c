/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The rolling z-score against hand-computed cases, against an exact recomputation after ten
 * million values, and against pandas itself (tests/pandas-rolling.py, run with /usr/bin/python3;
 * the test fails without pandas, it does not skip). Then the Detector's bookkeeping: events,
 * flush, forget, settings changes and a thousand devices through its map.
 */

#include "detector.h"
#include "tests.h"

#define SEC_USEC UINT64_C(1000000)

/* Deterministic noise (xorshift64*), so every run and both compilers see the same series. */
static uint64_t rng_state = UINT64_C(0x2545f4914f6cdd1d);

static double rng_uniform(void) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return (double) ((rng_state * UINT64_C(0x2545f4914f6cdd1d)) >> 11) / (double) (UINT64_C(1) << 53);
}

static double rng_gauss(void) {
        double u = rng_uniform(), v = rng_uniform();

        return sqrt(-2 * log(1 - u)) * cos(2 * M_PI * v);
}

/* The exact statistics of the last n of values[0..end-1], in long double with two passes. */
static void reference_stats(const double *values, size_t end, size_t n, double *ret_mean, double *ret_std) {
        long double sum = 0, sq = 0, mean;

        for (size_t i = end - n; i < end; i++)
                sum += values[i];
        mean = sum / n;
        for (size_t i = end - n; i < end; i++)
                sq += (values[i] - mean) * (values[i] - mean);
        *ret_mean = (double) mean;
        *ret_std = (double) sqrtl(sq / n);
}

static bool close_enough(double a, double b, double tol) {
        if (isnan(a) || isnan(b))
                return isnan(a) && isnan(b);
        if (fabs(a) < 1e-6 && fabs(b) < 1e-6)
                return fabs(a - b) <= tol;
        return fabs(a - b) <= tol * fmax(fabs(a), fabs(b));
}

static Reading reading_make(const char *device, uint64_t seq) {
        Reading r = {
                .time_usec = 1700000000 * SEC_USEC + seq * 20000,
                .seq = seq,
        };

        snprintf(r.device, sizeof(r.device), "%s", device);
        snprintf(r.type, sizeof(r.type), "simulator");
        return r;
}

typedef struct Events {
        AnomalyEvent e[16];
        unsigned n;
} Events;

static void events_add(const AnomalyEvent *e, void *userdata) {
        Events *ev = userdata;

        ASSERT_TRUE(ev->n < ELEMENTSOF(ev->e));
        ev->e[ev->n++] = *e;
}

/* Feeds one value on channel ax of "dev" and returns its score. */
static Score feed_one(Detector *d, uint64_t seq, double x) {
        Score scores[_CHANNEL_MAX];
        Reading r = reading_make("dev", seq);

        reading_set(&r, CHANNEL_AX, x);
        ASSERT_OK(detector_feed(d, &r, scores));
        return scores[CHANNEL_AX];
}

static void test_window_hand_computed(void) {
        Window w = {};
        double mean, std, z;

        ASSERT_ERROR(window_init(&w, 0), EINVAL);
        ASSERT_ERROR(window_init(&w, WINDOW_SIZE_MAX + 1), EINVAL);
        ASSERT_OK(window_init(&w, 4));

        /* Nothing to score against yet, whatever min_samples says. */
        ASSERT_FALSE(window_score(&w, 1, 0, 1e-3, &mean, &std, &z));

        window_push(&w, 1);
        ASSERT_FALSE(window_score(&w, 1, 2, 1e-3, &mean, &std, &z));
        /* One value: std 0, clipped to min_stddev. */
        ASSERT_TRUE(window_score(&w, 1.5, 1, 0.25, &mean, &std, &z));
        ASSERT_TRUE(mean == 1 && std == 0 && z == 2);

        window_push(&w, 2);
        window_push(&w, 3);
        window_push(&w, 4);
        ASSERT_EQ(window_count(&w), 4u);
        /* [1 2 3 4]: mean 2.5, population variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25 */
        ASSERT_TRUE(window_score(&w, 7, 4, 1e-3, &mean, &std, &z));
        ASSERT_TRUE(mean == 2.5);
        ASSERT_TRUE(std == sqrt(1.25));
        ASSERT_CLOSE(z, 4.5 / sqrt(1.25), 1e-15);
        /* Scoring does not add the value. */
        ASSERT_EQ(window_count(&w), 4u);

        /* Wrap-around: [2 3 4 5], then [3 4 5 10] (deviations -2.5 -1.5 -0.5 4.5: variance 29/4). */
        window_push(&w, 5);
        ASSERT_TRUE(window_score(&w, 3.5, 4, 1e-3, &mean, &std, &z));
        ASSERT_CLOSE(mean, 3.5, 1e-15);
        ASSERT_CLOSE(std, sqrt(1.25), 1e-15);
        ASSERT_CLOSE(z, 0, 1e-15);
        window_push(&w, 10);
        ASSERT_TRUE(window_score(&w, 0, 4, 1e-3, &mean, &std, &z));
        ASSERT_CLOSE(mean, 5.5, 1e-15);
        ASSERT_CLOSE(std, sqrt(7.25), 1e-15);
        ASSERT_CLOSE(z, -5.5 / sqrt(7.25), 1e-15);

        /* Many more laps of the ring against the exact statistics of the last four values. */
        double values[1000];
        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                double ref_mean, ref_std;

                values[i] = (double) ((i * 7919) % 101) - 50;
                window_push(&w, values[i]);
                if (i < 3)
                        continue;
                reference_stats(values, i + 1, 4, &ref_mean, &ref_std);
                ASSERT_TRUE(window_score(&w, 1, 4, 1e-3, &mean, &std, &z));
                ASSERT_CLOSE(mean, ref_mean, 1e-12);
                ASSERT_CLOSE(std, ref_std, 1e-12);
        }

        /* Missing values are no values: NaN and infinities are neither scored nor pushed. */
        window_push(&w, NAN);
        window_push(&w, INFINITY);
        ASSERT_FALSE(window_score(&w, NAN, 1, 1e-3, &mean, &std, &z));
        ASSERT_FALSE(window_score(&w, -INFINITY, 1, 1e-3, &mean, &std, &z));
        ASSERT_TRUE(window_score(&w, 1, 4, 1e-3, &mean, &std, &z));
        {
                double ref_mean, ref_std;

                reference_stats(values, ELEMENTSOF(values), 4, &ref_mean, &ref_std);
                ASSERT_CLOSE(mean, ref_mean, 1e-12);
        }

        window_reset(&w);
        ASSERT_EQ(window_count(&w), 0u);
        ASSERT_FALSE(window_score(&w, 1, 1, 1e-3, NULL, NULL, NULL));
        window_push(&w, 42);
        ASSERT_TRUE(window_score(&w, 42, 1, 1e-3, &mean, NULL, NULL));
        ASSERT_TRUE(mean == 42);

        window_done(&w);
        window_done(&w);
}

static void test_threshold_inclusive(void) {
        DetectorSettings s = { .window = 4, .min_samples = 4, .threshold = 3, .min_stddev = 1e-3 };
        _cleanup_(detector_freep) Detector *d = NULL;
        Score sc;

        ASSERT_OK(detector_new(&s, NULL, NULL, &d));

        /* [1 3 1 3]: mean 2 and std 1, both exact; 5 and -1 lie exactly 3 std away. */
        Window w = {};
        double mean, std, z;
        ASSERT_OK(window_init(&w, 4));
        for (unsigned i = 0; i < 4; i++)
                window_push(&w, i % 2 ? 3 : 1);
        ASSERT_TRUE(window_score(&w, 5, 4, 1e-3, &mean, &std, &z));
        ASSERT_TRUE(mean == 2 && std == 1 && z == 3);
        ASSERT_TRUE(zscore_is_anomaly(z, 3));
        ASSERT_TRUE(window_score(&w, -1, 4, 1e-3, &mean, &std, &z));
        ASSERT_TRUE(z == -3);
        ASSERT_TRUE(zscore_is_anomaly(z, 3));
        ASSERT_TRUE(window_score(&w, nextafter(5, 0), 4, 1e-3, &mean, &std, &z));
        ASSERT_TRUE(z < 3);
        ASSERT_FALSE(zscore_is_anomaly(z, 3));
        ASSERT_FALSE(zscore_is_anomaly(NAN, 3));
        window_done(&w);

        /* The same through the detector. */
        for (unsigned i = 0; i < 4; i++)
                ASSERT_FALSE(feed_one(d, i, i % 2 ? 3 : 1).scored);
        sc = feed_one(d, 4, 5);
        ASSERT_TRUE(sc.scored);
        ASSERT_TRUE(sc.mean == 2 && sc.std == 1 && sc.z == 3);
        ASSERT_TRUE(sc.anomaly);
        ASSERT_TRUE(sc.value == 5);
}

static void test_min_stddev_constant(void) {
        DetectorSettings s = { .window = 10, .min_samples = 10, .threshold = 3, .min_stddev = 0.01 };
        _cleanup_(detector_freep) Detector *d = NULL;
        Score sc;
        uint64_t seq = 0;

        ASSERT_OK(detector_new(&s, NULL, NULL, &d));

        /* 9.81 is not a binary fraction: a summed mean would be off by an ulp or so. */
        for (unsigned i = 0; i < 25; i++) {
                sc = feed_one(d, seq++, 9.81);
                ASSERT_EQ(sc.scored, i >= 10);
                if (sc.scored) {
                        ASSERT_TRUE(sc.mean == 9.81);
                        ASSERT_TRUE(sc.std == 0);
                        ASSERT_TRUE(sc.z == 0);
                        ASSERT_FALSE(sc.anomaly);
                }
        }

        /* std 0 is clipped to 0.01. Then the window holds one 9.815: its std is still below
         * 0.01, so 9.85 scores (9.85 - mean) / 0.01, about 4. */
        sc = feed_one(d, seq++, 9.815);
        ASSERT_CLOSE(sc.z, (9.815 - 9.81) / 0.01, 1e-12);
        ASSERT_FALSE(sc.anomaly);
        sc = feed_one(d, seq++, 9.85);
        ASSERT_TRUE(sc.std > 0 && sc.std < 0.01);
        ASSERT_CLOSE(sc.z, (9.85 - sc.mean) / 0.01, 1e-12);
        ASSERT_TRUE(sc.anomaly);
}

static void test_min_samples_and_missing(void) {
        DetectorSettings s = { .window = 10, .min_samples = 5, .threshold = 3, .min_stddev = 1e-3 };
        _cleanup_(detector_freep) Detector *d = NULL;
        Score scores[_CHANNEL_MAX];
        uint64_t seq = 0;
        int n_ax = 0;

        ASSERT_OK(detector_new(&s, NULL, NULL, &d));

        /* ax in every other reading only, ay always: ax warms up at half the pace. */
        for (unsigned i = 0; i < 20; i++) {
                Reading r = reading_make("dev", seq++);

                reading_set(&r, CHANNEL_AY, (double) (i % 3));
                if (i % 2 == 0)
                        reading_set(&r, CHANNEL_AX, (double) (i % 4));
                memset(scores, 0xff, sizeof(scores)); /* what is not written stays visible */
                ASSERT_OK(detector_feed(d, &r, scores));

                ASSERT_EQ(scores[CHANNEL_AY].scored, i >= 5);
                ASSERT_TRUE(scores[CHANNEL_AY].value == (double) (i % 3));
                if (i % 2 == 0) {
                        ASSERT_EQ(scores[CHANNEL_AX].scored, n_ax >= 5);
                        ASSERT_FALSE(scores[CHANNEL_AX].anomaly);
                        ASSERT_TRUE(scores[CHANNEL_AX].value == (double) (i % 4));
                        if (n_ax < 5)
                                ASSERT_TRUE(scores[CHANNEL_AX].mean == 0 && scores[CHANNEL_AX].std == 0 &&
                                            scores[CHANNEL_AX].z == 0);
                        n_ax++;
                } else {
                        ASSERT_FALSE(scores[CHANNEL_AX].scored);
                        ASSERT_FALSE(scores[CHANNEL_AX].anomaly);
                }
                /* Channels the reading lacks are reported unscored. */
                ASSERT_FALSE(scores[CHANNEL_GX].scored);
                ASSERT_FALSE(scores[CHANNEL_GX].anomaly);
        }

        /* ax held 0 2 0 2 ... (i % 4 for even i): mean 1, std 1. A NaN on ax is skipped, a
         * missing ay too, and neither touches those windows. */
        Reading r = reading_make("dev", seq++);
        reading_set(&r, CHANNEL_AX, NAN);
        ASSERT_EQ(ASSERT_OK(detector_feed(d, &r, scores)), 0);
        ASSERT_FALSE(scores[CHANNEL_AX].scored);
        ASSERT_TRUE(isnan(scores[CHANNEL_AX].value));
        ASSERT_FALSE(scores[CHANNEL_AY].scored);

        r = reading_make("dev", seq++);
        reading_set(&r, CHANNEL_AX, 4);
        ASSERT_EQ(ASSERT_OK(detector_feed(d, &r, scores)), 1);
        ASSERT_TRUE(scores[CHANNEL_AX].mean == 1 && scores[CHANNEL_AX].std == 1);
        ASSERT_TRUE(scores[CHANNEL_AX].z == 3 && scores[CHANNEL_AX].anomaly);

        /* ret_scores may be NULL. */
        ASSERT_OK(detector_feed(d, &r, NULL));

        /* The device id must be a terminated, non-empty string. */
        r = reading_make("", seq++);
        ASSERT_ERROR(detector_feed(d, &r, scores), EINVAL);
        memset(r.device, 'a', sizeof(r.device));
        ASSERT_ERROR(detector_feed(d, &r, scores), EINVAL);
        ASSERT_EQ(detector_device_count(d), 1u);
}

/* Alternating ±1 gives a window of mean 0 and std 1 to spike against. */
static uint64_t feed_baseline(Detector *d, uint64_t seq, unsigned n) {
        for (unsigned i = 0; i < n; i++, seq++)
                ASSERT_FALSE(feed_one(d, seq, seq % 2 ? 1 : -1).anomaly);
        return seq;
}

static void test_events(void) {
        DetectorSettings s = { .window = 8, .min_samples = 8, .threshold = 3, .min_stddev = 1e-3 };
        _cleanup_(detector_freep) Detector *d = NULL;
        Events ev = {};
        double values[64];
        uint64_t seq = 0;
        Score sc;

        ASSERT_OK(detector_new(&s, events_add, &ev, &d));

        seq = feed_baseline(d, seq, 16);
        for (uint64_t i = 0; i < seq; i++)
                values[i] = i % 2 ? 1 : -1;

        /* Three flagged readings in a row: one event, reported with the next normal one. */
        const double spike[] = { 100, 1000, 20000 };
        double peak_z = 0, peak_value = 0, peak_mean = 0, peak_std = 0;
        uint64_t first = seq;
        for (size_t i = 0; i < ELEMENTSOF(spike); i++, seq++) {
                double mean, std, z;

                reference_stats(values, seq, 8, &mean, &std);
                z = (spike[i] - mean) / std;
                if (fabs(z) > fabs(peak_z)) {
                        peak_z = z;
                        peak_value = spike[i];
                        peak_mean = mean;
                        peak_std = std;
                }

                sc = feed_one(d, seq, spike[i]);
                values[seq] = spike[i];
                ASSERT_TRUE(sc.anomaly);
                ASSERT_CLOSE(sc.z, z, 1e-12);
        }
        ASSERT_EQ(ev.n, 0u);

        sc = feed_one(d, seq, 1);
        values[seq++] = 1;
        ASSERT_TRUE(sc.scored && !sc.anomaly);
        ASSERT_EQ(ev.n, 1u);
        ASSERT_STREQ(ev.e[0].device, "dev");
        ASSERT_STREQ(ev.e[0].type, "simulator");
        ASSERT_EQ(ev.e[0].channel, CHANNEL_AX);
        ASSERT_EQ(ev.e[0].count, 3u);
        ASSERT_U64_EQ(ev.e[0].start_seq, first);
        ASSERT_U64_EQ(ev.e[0].end_seq, first + 2);
        ASSERT_U64_EQ(ev.e[0].start_usec, reading_make("dev", first).time_usec);
        ASSERT_U64_EQ(ev.e[0].end_usec, reading_make("dev", first + 2).time_usec);
        ASSERT_CLOSE(ev.e[0].peak_z, peak_z, 1e-12);
        ASSERT_TRUE(ev.e[0].peak_value == peak_value);
        ASSERT_CLOSE(ev.e[0].peak_mean, peak_mean, 1e-12);
        ASSERT_CLOSE(ev.e[0].peak_std, peak_std, 1e-12);

        /* Two separated spikes: two events. */
        ev.n = 0;
        seq = feed_baseline(d, seq, 16);
        ASSERT_TRUE(feed_one(d, seq++, 50).anomaly);
        ASSERT_FALSE(feed_one(d, seq++, 1).anomaly);
        ASSERT_EQ(ev.n, 1u);
        ASSERT_TRUE(feed_one(d, seq++, -5000).anomaly);
        ASSERT_FALSE(feed_one(d, seq++, 1).anomaly);
        ASSERT_EQ(ev.n, 2u);
        ASSERT_EQ(ev.e[0].count, 1u);
        ASSERT_U64_EQ(ev.e[0].start_seq, ev.e[0].end_seq);
        ASSERT_TRUE(ev.e[0].peak_value == 50);
        ASSERT_EQ(ev.e[1].count, 1u);
        ASSERT_U64_EQ(ev.e[1].start_seq, seq - 2);
        ASSERT_TRUE(ev.e[1].peak_value == -5000 && ev.e[1].peak_z < 0);

        /* One event per channel: ax and ay flagged together report separately. */
        ev.n = 0;
        seq = feed_baseline(d, seq, 16);
        Reading r = reading_make("dev", seq++);
        reading_set(&r, CHANNEL_AX, 1000);
        reading_set(&r, CHANNEL_AY, 1);
        ASSERT_EQ(ASSERT_OK(detector_feed(d, &r, NULL)), 1);

        /* An unscored value (NaN) neither extends nor closes the event. */
        r = reading_make("dev", seq++);
        reading_set(&r, CHANNEL_AX, NAN);
        ASSERT_EQ(ASSERT_OK(detector_feed(d, &r, NULL)), 0);
        ASSERT_EQ(ev.n, 0u);

        /* Flush reports the open event once; the windows stay. */
        detector_flush(d);
        ASSERT_EQ(ev.n, 1u);
        ASSERT_EQ(ev.e[0].count, 1u);
        ASSERT_TRUE(ev.e[0].peak_value == 1000);
        detector_flush(d);
        ASSERT_EQ(ev.n, 1u);
        ASSERT_TRUE(feed_one(d, seq++, 1).scored);
        ASSERT_EQ(ev.n, 1u);
}

static void test_forget(void) {
        DetectorSettings s = { .window = 8, .min_samples = 8, .threshold = 3, .min_stddev = 1e-3 };
        _cleanup_(detector_freep) Detector *d = NULL;
        Events ev = {};
        uint64_t seq;
        Reading r;

        ASSERT_OK(detector_new(&s, events_add, &ev, &d));

        seq = feed_baseline(d, 0, 8);
        r = reading_make("other", 0);
        reading_set(&r, CHANNEL_GZ, 1);
        ASSERT_OK(detector_feed(d, &r, NULL));
        ASSERT_EQ(detector_device_count(d), 2u);

        ASSERT_TRUE(feed_one(d, seq++, 100).anomaly);
        ASSERT_EQ(ev.n, 0u);

        ASSERT_EQ(detector_forget(d, "nope"), 0);
        ASSERT_EQ(detector_forget(d, ""), 0);
        ASSERT_EQ(detector_forget(d, "dev"), 1);
        ASSERT_EQ(ev.n, 1u);
        ASSERT_STREQ(ev.e[0].device, "dev");
        ASSERT_EQ(detector_device_count(d), 1u);
        ASSERT_EQ(detector_forget(d, "dev"), 0);

        /* Back from scratch: warming up again. */
        ASSERT_FALSE(feed_one(d, seq++, 1).scored);
        ASSERT_EQ(detector_device_count(d), 2u);
        ASSERT_EQ(detector_forget(d, "other"), 1);
        ASSERT_EQ(ev.n, 1u);
}

static void test_settings(void) {
        DetectorSettings s = { .window = 8, .min_samples = 8, .threshold = 3, .min_stddev = 1e-3 };
        _cleanup_(detector_freep) Detector *d = NULL;
        Events ev = {};
        uint64_t seq;
        Score sc;

        ASSERT_OK(detector_new(&s, events_add, &ev, &d));

        /* Invalid settings are refused and change nothing. */
        DetectorSettings bad[] = {
                { .window = 0, .min_samples = 1, .threshold = 3, .min_stddev = 1e-3 },
                { .window = 8, .min_samples = 0, .threshold = 3, .min_stddev = 1e-3 },
                { .window = 8, .min_samples = 9, .threshold = 3, .min_stddev = 1e-3 },
                { .window = 8, .min_samples = 8, .threshold = 0, .min_stddev = 1e-3 },
                { .window = 8, .min_samples = 8, .threshold = NAN, .min_stddev = 1e-3 },
                { .window = 8, .min_samples = 8, .threshold = 3, .min_stddev = 0 },
                { .window = 8, .min_samples = 8, .threshold = 3, .min_stddev = INFINITY },
                { .window = WINDOW_SIZE_MAX + 1, .min_samples = 8, .threshold = 3, .min_stddev = 1e-3 },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                Detector *x = NULL;

                ASSERT_ERROR(detector_set_settings(d, &bad[i]), EINVAL);
                ASSERT_ERROR(detector_new(&bad[i], NULL, NULL, &x), EINVAL);
                ASSERT_TRUE(!x);
        }

        seq = feed_baseline(d, 0, 8);

        /* 2.5 std off: normal under threshold 3, flagged under 2, with the window kept. */
        sc = feed_one(d, seq++, 2.5);
        ASSERT_TRUE(sc.scored && !sc.anomaly);
        ASSERT_CLOSE(sc.z, 2.5, 1e-12);
        seq = feed_baseline(d, seq, 8);
        s.threshold = 2;
        ASSERT_OK(detector_set_settings(d, &s));
        sc = feed_one(d, seq++, 2.5);
        ASSERT_TRUE(sc.scored && sc.anomaly);
        ASSERT_CLOSE(sc.z, 2.5, 1e-12);
        ASSERT_EQ(ev.n, 0u);

        /* The event stays open over a threshold change and closes on the next normal value. */
        s.threshold = 100;
        ASSERT_OK(detector_set_settings(d, &s));
        sc = feed_one(d, seq++, 1);
        ASSERT_TRUE(sc.scored && !sc.anomaly);
        ASSERT_EQ(ev.n, 1u);

        s.threshold = 3;
        ASSERT_OK(detector_set_settings(d, &s));
        ASSERT_TRUE(feed_one(d, seq++, 100).anomaly);

        /* A new window size reports open events and restarts every window. */
        s.window = 16;
        s.min_samples = 16;
        ASSERT_OK(detector_set_settings(d, &s));
        ASSERT_EQ(ev.n, 2u);
        ASSERT_EQ(detector_device_count(d), 1u);
        for (unsigned i = 0; i < 16; i++)
                ASSERT_FALSE(feed_one(d, seq++, i % 2 ? 1 : -1).scored);
        sc = feed_one(d, seq++, 0);
        ASSERT_TRUE(sc.scored && sc.mean == 0 && sc.std == 1);
}

static void test_many_devices(void) {
        DetectorSettings s = { .window = 4, .min_samples = 2, .threshold = 3, .min_stddev = 1e-3 };
        _cleanup_(detector_freep) Detector *d = NULL;
        Score scores[_CHANNEL_MAX];
        char id[DEVICE_ID_MAX + 1];

        ASSERT_OK(detector_new(&s, NULL, NULL, &d));

        /* Device i holds i and i + 2 on channel oa: mean i + 1, std 1. */
        for (unsigned round = 0; round < 2; round++)
                for (unsigned i = 0; i < 1000; i++) {
                        snprintf(id, sizeof(id), "device-%u.%s", i, i % 2 ? "phone" : "tag");
                        Reading r = reading_make(id, round);

                        reading_set(&r, CHANNEL_OA, i + 2.0 * round);
                        ASSERT_OK(detector_feed(d, &r, NULL));
                }
        ASSERT_EQ(detector_device_count(d), 1000u);

        /* Forgetting every third device shifts the others along their probe runs. */
        for (unsigned i = 0; i < 1000; i += 3) {
                snprintf(id, sizeof(id), "device-%u.%s", i, i % 2 ? "phone" : "tag");
                ASSERT_EQ(detector_forget(d, id), 1);
        }
        ASSERT_EQ(detector_device_count(d), 1000u - 334u);

        for (unsigned i = 0; i < 1000; i++) {
                snprintf(id, sizeof(id), "device-%u.%s", i, i % 2 ? "phone" : "tag");
                Reading r = reading_make(id, 2);

                reading_set(&r, CHANNEL_OA, i + 1.0);
                ASSERT_OK(detector_feed(d, &r, scores));
                if (i % 3 == 0)
                        ASSERT_FALSE(scores[CHANNEL_OA].scored);
                else {
                        ASSERT_TRUE(scores[CHANNEL_OA].scored);
                        ASSERT_TRUE(scores[CHANNEL_OA].mean == i + 1.0);
                        ASSERT_TRUE(scores[CHANNEL_OA].std == 1);
                }
        }
        ASSERT_EQ(detector_device_count(d), 1000u);

        for (unsigned i = 0; i < 1000; i++) {
                snprintf(id, sizeof(id), "device-%u.%s", i, i % 2 ? "phone" : "tag");
                ASSERT_EQ(detector_forget(d, id), 1);
        }
        ASSERT_EQ(detector_device_count(d), 0u);
}

/* Days of a resting accelerometer: ten million values of 9.81 with 1e-3 noise. */
static void test_stability(void) {
        const unsigned sizes[] = { 100, 1000 };
        const size_t n_values = 10 * 1000 * 1000 + 37; /* not just after a recompute */

        for (size_t k = 0; k < ELEMENTSOF(sizes); k++) {
                unsigned size = sizes[k];
                _cleanup_free_ double *last = new(double, size);
                double mean, std, z, ref_mean, ref_std;
                Window w = {};

                ASSERT_TRUE(last);
                ASSERT_OK(window_init(&w, size));

                for (size_t i = 0; i < n_values; i++) {
                        double x = 9.81 + 1e-3 * (rng_uniform() - 0.5);

                        window_push(&w, x);
                        if (i >= n_values - size)
                                last[i - (n_values - size)] = x;
                }

                reference_stats(last, size, size, &ref_mean, &ref_std);
                ASSERT_TRUE(window_score(&w, 9.8115, size, 1e-9, &mean, &std, &z));
                ASSERT_CLOSE(mean, ref_mean, 1e-14);
                ASSERT_TRUE(close_enough(std, ref_std, 1e-9));
                ASSERT_TRUE(close_enough(z, (9.8115 - ref_mean) / ref_std, 1e-9));

                /* A value of a million passing through: its cancellation error must not outlive
                 * one window. */
                window_push(&w, 1e6);
                for (size_t i = 0; i < 2 * size; i++) {
                        double x = 9.81 + 1e-3 * (rng_uniform() - 0.5);

                        window_push(&w, x);
                        if (i >= size)
                                last[i - size] = x;
                }
                reference_stats(last, size, size, &ref_mean, &ref_std);
                ASSERT_TRUE(window_score(&w, 9.8115, size, 1e-9, &mean, &std, &z));
                ASSERT_TRUE(close_enough(std, ref_std, 1e-9));
                ASSERT_TRUE(close_enough(z, (9.8115 - ref_mean) / ref_std, 1e-9));

                window_done(&w);
        }
}

/*
 * Parity with pandas. The series has noise, spikes, a step, exact constant stretches (pandas
 * reports those as std 0, so min_stddev applies) and a quieter stretch around zero, with the
 * channel missing from some readings: pandas gets the values that were present.
 */
static void parity_series(double *values, bool *present, size_t n) {
        for (size_t i = 0; i < n; i++) {
                double x;

                if (i < 400)
                        x = 0.02 * rng_gauss();
                else if (i >= 1500 && i < 1620)
                        x = 9.81;
                else if (i >= 1620 && i < 1700)
                        x = i % 40 < 20 ? 9.81 : 9.875;
                else
                        x = (i >= 2200 ? 11.81 : 9.81) + 0.05 * rng_gauss();

                if (i % 137 == 50)
                        x += 1.0;
                else if (i % 211 == 7)
                        x -= 0.6;

                values[i] = x;
                present[i] = i % 17 != 3;
        }
}

/*
 * pandas never recomputes its rolling sums, so its own rounding drift shows where a small window
 * happens to hold values much closer together than the history it has seen (window 4 here: a
 * few rows off by a few 1e-9). Where pandas and we differ by more than 1e-9, we must equal the
 * exact statistics of the window (long double, two passes) to 1e-10 and pandas must still be
 * within 1e-7 of us. Returns whether the row needed that.
 */
static bool parity_check_row(const double *window_values, size_t n_held, double x, double min_stddev,
                             const Score *sc, double mean, double std, double z) {
        double exact_mean, exact_std, exact_z;

        if (close_enough(sc->mean, mean, 1e-9) && close_enough(sc->std, std, 1e-9) && close_enough(sc->z, z, 1e-9))
                return false;

        reference_stats(window_values, n_held, n_held, &exact_mean, &exact_std);
        exact_z = (x - exact_mean) / fmax(exact_std, min_stddev);
        if (!close_enough(sc->mean, exact_mean, 1e-10) || !close_enough(sc->std, exact_std, 1e-10) ||
            !close_enough(sc->z, exact_z, 1e-10) || !close_enough(sc->z, z, 1e-7))
                TEST_FAIL("mean %.17g std %.17g z %.17g, pandas mean %.17g std %.17g z %.17g, "
                          "exact mean %.17g std %.17g z %.17g",
                          sc->mean, sc->std, sc->z, mean, std, z, exact_mean, exact_std, exact_z);
        return true;
}

static void test_pandas_parity_one(const double *values, const bool *present, size_t n, const char *csv,
                                   unsigned window, unsigned min_samples, double min_stddev) {
        DetectorSettings s = { .window = window, .min_samples = min_samples, .threshold = 3, .min_stddev = min_stddev };
        _cleanup_(detector_freep) Detector *d = NULL;
        _cleanup_free_ double *seen = new(double, n);
        size_t row = 0, n_scored = 0, n_anomalies = 0, n_drift = 0;
        char cmd[8192], line[256];
        const char *srcdir;
        FILE *p;
        int status;

        ASSERT_TRUE(seen);

        srcdir = getenv("SOURCE_DIR");
        if (!srcdir)
                TEST_FAIL("$SOURCE_DIR is not set: run this test through meson");
        if (strchr(srcdir, '\'') || strchr(csv, '\''))
                TEST_FAIL("quote in path");
        snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s/pandas-rolling.py' '%s' %u %u %.17g", srcdir, csv,
                 window, min_samples, min_stddev);

        ASSERT_OK(detector_new(&s, NULL, NULL, &d));

        p = popen(cmd, "re");
        if (!p)
                TEST_FAIL("popen(%s): %m", cmd);

        for (size_t i = 0; i < n; i++) {
                Score scores[_CHANNEL_MAX];
                const Score *sc = scores + CHANNEL_AX;
                double mean, std, z;
                Reading r;
                char *e;

                /* ay is there in every reading: a reading without ax is not a missing reading. */
                r = reading_make("parity", i);
                reading_set(&r, CHANNEL_AY, 1);
                if (present[i])
                        reading_set(&r, CHANNEL_AX, values[i]);
                ASSERT_OK(detector_feed(d, &r, scores));
                if (!present[i]) {
                        ASSERT_FALSE(sc->scored);
                        continue;
                }

                if (!fgets(line, sizeof(line), p))
                        TEST_FAIL("%s: output ends at row %zu: is /usr/bin/python3 with pandas installed?", cmd, row);
                mean = strtod(line, &e);
                ASSERT_TRUE(*e == ',');
                std = strtod(e + 1, &e);
                ASSERT_TRUE(*e == ',');
                z = strtod(e + 1, &e);
                ASSERT_TRUE(*e == '\n');

                if (isnan(mean) == sc->scored)
                        TEST_FAIL("window %u: row %zu: scored %s, pandas %s", window, row, yes_no(sc->scored),
                                  yes_no(!isnan(mean)));
                if (sc->scored) {
                        size_t held = MIN(row, (size_t) window);

                        n_drift += parity_check_row(seen + row - held, held, values[i], min_stddev, sc, mean, std, z);

                        /* Flags must agree, except where rounding alone can tip |z| over 3. */
                        if (sc->anomaly != zscore_is_anomaly(z, 3) && !close_enough(fabs(z), 3, 1e-9))
                                TEST_FAIL("window %u: row %zu: anomaly %s, pandas z %.17g", window, row,
                                          yes_no(sc->anomaly), z);
                        n_scored++;
                        n_anomalies += sc->anomaly;
                }
                seen[row++] = values[i];
        }

        if (fgets(line, sizeof(line), p))
                TEST_FAIL("%s: more output than rows: %s", cmd, line);
        status = pclose(p);
        if (status != 0)
                TEST_FAIL("%s failed (status %d): is /usr/bin/python3 with pandas installed?", cmd, status);

        /* The series must exercise what it claims to. */
        ASSERT_TRUE(n_scored > 2000);
        ASSERT_TRUE(n_anomalies > 10);
        printf("pandas parity, window %u, min_samples %u: %zu rows, %zu scored, %zu anomalies, "
               "%zu where pandas drifted beyond 1e-9\n",
               window, min_samples, row, n_scored, n_anomalies, n_drift);
}

static void test_pandas_parity(void) {
        static double values[3000];
        static bool present[3000];
        _cleanup_fclose_ FILE *f = NULL;
        char path[4096];

        parity_series(values, present, ELEMENTSOF(values));

        snprintf(path, sizeof(path), "%s/series.csv", test_tmpdir());
        f = fopen(path, "we");
        ASSERT_TRUE(f);
        for (size_t i = 0; i < ELEMENTSOF(values); i++)
                if (present[i])
                        fprintf(f, "%.17g\n", values[i]);
        ASSERT_TRUE(fflush(f) == 0);

        test_pandas_parity_one(values, present, ELEMENTSOF(values), path, 4, 1, 1e-3);
        test_pandas_parity_one(values, present, ELEMENTSOF(values), path, 20, 20, 1e-3);
        test_pandas_parity_one(values, present, ELEMENTSOF(values), path, 50, 10, 0.01);
        test_pandas_parity_one(values, present, ELEMENTSOF(values), path, 100, 100, 1e-3);
}

int main(void) {
        test_window_hand_computed();
        test_threshold_inclusive();
        test_min_stddev_constant();
        test_min_samples_and_missing();
        test_events();
        test_forget();
        test_settings();
        test_many_devices();
        test_stability();
        test_pandas_parity();
        return 0;
}
