/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Cost of the streaming detector per channel-value, against the target of 10 ns.
 *
 * detector_feed() as the daemon calls it: 4 devices taking turns, scores returned, about one
 * value in 500 a spike that opens and closes an event. Readings of 6 channels (a tag) and of all
 * 12 (a phone) tell apart the cost per reading (finding the device) from the cost per value.
 * Then the Window layer alone, called per value without a map or events.
 *
 * Each figure is the median and the minimum of 5 runs of 10^7 channel-values, in CPU time of
 * the thread: the machine is shared, so the wall clock would also count other processes, and
 * the median says more than the mean.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "detector.h"
#include "macro.h"

#define N_DEVICES 4
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

/* Every reading gets all 12 values; readings_set_channels() picks how many it carries. */
static void readings_generate(void) {
        for (size_t i = 0; i < N_READINGS; i++) {
                Reading *r = readings + i;

                *r = (Reading) {
                        .time_usec = 1700000000000000 + i * 20000,
                        .seq = i / N_DEVICES,
                };
                snprintf(r->device, sizeof(r->device), "c0ffee%06zx", i % N_DEVICES);
                snprintf(r->type, sizeof(r->type), "ruuvi");
                for (Channel c = 0; c < _CHANNEL_MAX; c++) {
                        double x = (c == CHANNEL_AZ ? 9.81 : 0) + 0.01 * (rng_uniform() - 0.5);

                        if (rng_uniform() < 0.002)
                                x += 1;
                        reading_set(r, c, x);
                }
        }
}

static void readings_set_channels(unsigned n_channels) {
        for (size_t i = 0; i < N_READINGS; i++)
                readings[i].channels = CHANNEL_BIT(n_channels) - 1;
}

static double run_detector(unsigned window, unsigned n_channels, unsigned *ret_events) {
        DetectorSettings s = { .window = window, .min_samples = window, .threshold = 3, .min_stddev = 1e-3 };
        _cleanup_(detector_freep) Detector *d = NULL;
        Score scores[_CHANNEL_MAX];
        size_t n_readings = N_VALUES / n_channels;
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
        return (end - start) / (double) (n_readings * n_channels);
}

static double run_window(unsigned window, unsigned n_channels) {
        Window w[_CHANNEL_MAX] = {};
        size_t n_readings = N_VALUES / n_channels;
        double start, end, sum = 0;
        long anomalies = 0;

        for (Channel c = 0; c < (Channel) n_channels; c++)
                if (window_init(w + c, window) < 0)
                        abort();

        start = now_nsec();
        for (size_t i = 0; i < n_readings; i++) {
                const Reading *r = readings + i % N_READINGS;

                for (Channel c = 0; c < (Channel) n_channels; c++) {
                        double z;

                        if (window_score(w + c, r->values[c], window, 1e-3, NULL, NULL, &z)) {
                                anomalies += zscore_is_anomaly(z, 3);
                                sum += z;
                        }
                        window_push(w + c, r->values[c]);
                }
        }
        end = now_nsec();

        for (Channel c = 0; c < (Channel) n_channels; c++)
                window_done(w + c);
        if (isnan(sum) || anomalies == 0)
                abort();
        return (end - start) / (double) (n_readings * n_channels);
}

static void report(const char *what, unsigned n_channels, unsigned window, double *ns) {
        qsort(ns, N_RUNS, sizeof(double), compare_double);
        printf("%-16s %2u channels, window %4u: median %5.2f ns, min %5.2f ns per channel-value (target < %.0f ns)\n",
               what, n_channels, window, ns[N_RUNS / 2], ns[0], TARGET_NSEC);
}

int main(void) {
        const unsigned windows[] = { 100, 1000 }, channels[] = { 6, 12 };

        readings_generate();
        printf("%d devices, %d channel-values per run, median and minimum of %d runs\n", N_DEVICES, N_VALUES,
               N_RUNS);

        for (size_t k = 0; k < ELEMENTSOF(windows); k++) {
                double ns[N_RUNS];

                for (size_t j = 0; j < ELEMENTSOF(channels); j++) {
                        unsigned events = 0;

                        readings_set_channels(channels[j]);
                        for (size_t i = 0; i < N_RUNS; i++)
                                ns[i] = run_detector(windows[k], channels[j], &events);
                        report("detector_feed()", channels[j], windows[k], ns);
                        if (events == 0)
                                abort();
                }

                for (size_t i = 0; i < N_RUNS; i++)
                        ns[i] = run_window(windows[k], 6);
                report("Window alone", 6, windows[k], ns);
        }

        return 0;
}
