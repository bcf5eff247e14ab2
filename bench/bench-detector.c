/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Cost of the streaming detector per channel-value, against the target of 10 ns: detector_feed()
 * as the daemon calls it (4 devices of 6 channels taking turns, scores returned, the odd spike
 * opening and closing events), and the Window layer alone as the offline analysis uses it (one
 * window per channel of one series of readings, no map, no events).
 * Each figure is the median and the minimum of 5 runs of 10^7 channel-values: the machine is
 * shared, so the median says more than the mean.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "detector.h"
#include "macro.h"

#define N_DEVICES 4
#define N_CHANNELS 6
#define N_READINGS 4096 /* pre-generated, then replayed in a loop */
#define N_VALUES 10000000
#define N_RUNS 5
#define TARGET_NSEC 10.0

static uint64_t rng_state = UINT64_C(0x9e3779b97f4a7c15);

static double rng_uniform(void) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return (double) ((rng_state * UINT64_C(0x2545f4914f6cdd1d)) >> 11) / (double) (UINT64_C(1) << 53);
}

/* CPU time of this thread, not wall time: on a shared machine the wall clock also counts the
 * time other processes had the core. */
static double now_nsec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int compare_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;

        return (x > y) - (x < y);
}

static void on_event(const AnomalyEvent *e, void *userdata) {
        (void) e;
        (*(unsigned *) userdata)++;
}

static Reading readings[N_READINGS];

static void readings_generate(void) {
        for (size_t i = 0; i < N_READINGS; i++) {
                Reading *r = readings + i;

                *r = (Reading) {
                        .time_usec = 1700000000000000 + i * 20000,
                        .seq = i / N_DEVICES,
                };
                snprintf(r->device, sizeof(r->device), "c0ffee%06zx", i % N_DEVICES);
                snprintf(r->type, sizeof(r->type), "ruuvi");
                for (Channel c = 0; c < N_CHANNELS; c++) {
                        double x = (c == CHANNEL_AZ ? 9.81 : 0) + 0.01 * (rng_uniform() - 0.5);

                        /* About one value in 500 is a spike. */
                        if (rng_uniform() < 0.002)
                                x += 1;
                        reading_set(r, c, x);
                }
        }
}

static double run_detector(unsigned window, unsigned *ret_events) {
        DetectorSettings s = { .window = window, .min_samples = window, .threshold = 3, .min_stddev = 1e-3 };
        _cleanup_(detector_freep) Detector *d = NULL;
        Score scores[_CHANNEL_MAX];
        size_t n_readings = N_VALUES / N_CHANNELS;
        double start, end;
        long anomalies = 0;

        if (detector_new(&s, on_event, ret_events, &d) < 0)
                abort();

        /* Allocate and fill the windows first: the daemon runs warm. */
        for (size_t i = 0; i < N_READINGS; i++)
                if (detector_feed(d, readings + i, scores) < 0)
                        abort();

        start = now_nsec();
        for (size_t i = 0; i < n_readings; i++) {
                int r = detector_feed(d, readings + i % N_READINGS, scores);

                if (r < 0)
                        abort();
                anomalies += r;
        }
        end = now_nsec();

        detector_flush(d);
        if (anomalies == 0) /* the spikes must have been seen, or the loop measured nothing */
                abort();
        return (end - start) / (double) (n_readings * N_CHANNELS);
}

static double run_window(unsigned window) {
        Window w[N_CHANNELS] = {};
        size_t n_readings = N_VALUES / N_CHANNELS;
        double start, end, sum = 0;
        long anomalies = 0;

        for (Channel c = 0; c < N_CHANNELS; c++)
                if (window_init(w + c, window) < 0)
                        abort();

        start = now_nsec();
        for (size_t i = 0; i < n_readings; i++) {
                const Reading *r = readings + i % N_READINGS;

                for (Channel c = 0; c < N_CHANNELS; c++) {
                        double z;

                        if (window_score(w + c, r->values[c], window, 1e-3, NULL, NULL, &z)) {
                                anomalies += zscore_is_anomaly(z, 3);
                                sum += z;
                        }
                        window_push(w + c, r->values[c]);
                }
        }
        end = now_nsec();

        for (Channel c = 0; c < N_CHANNELS; c++)
                window_done(w + c);
        if (isnan(sum) || anomalies == 0)
                abort();
        return (end - start) / (double) (n_readings * N_CHANNELS);
}

static void report(const char *what, unsigned window, double *ns) {
        qsort(ns, N_RUNS, sizeof(double), compare_double);
        printf("%-16s window %4u: median %5.2f ns, min %5.2f ns per channel-value (target < %.0f ns)\n", what,
               window, ns[N_RUNS / 2], ns[0], TARGET_NSEC);
}

int main(void) {
        const unsigned windows[] = { 100, 1000 };

        readings_generate();
        printf("%d devices x %d channels, %d channel-values per run, %d runs\n", N_DEVICES, N_CHANNELS,
               N_VALUES, N_RUNS);

        for (size_t k = 0; k < ELEMENTSOF(windows); k++) {
                double ns[N_RUNS];
                unsigned events = 0;

                for (size_t i = 0; i < N_RUNS; i++)
                        ns[i] = run_detector(windows[k], &events);
                report("detector_feed()", windows[k], ns);
                printf("%-16s %u events per run\n", "", events / N_RUNS);

                for (size_t i = 0; i < N_RUNS; i++)
                        ns[i] = run_window(windows[k]);
                report("Window alone", windows[k], ns);
        }

        return 0;
}
