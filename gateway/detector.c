/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The rolling z-score of DESIGN.md "Detection"; detector.h states the contract.
 *
 * Window: the mean and the sum of squared deviations (m2) are updated in O(1) per value, with
 * Welford's update while the window fills and its replace-one-value form once it is full. The
 * rounding errors of such updates add up, and they surface when a large value leaves the
 * window and m2 shrinks by cancellation. So every `size` pushes both are recomputed from the
 * ring (one pass of sums shifted close to the mean): no drift outlives one window, at O(1)
 * amortised cost. Until then the error is about what pandas carries forever, which never
 * recomputes. A window of equal values reports that value and a std of exactly 0, as pandas
 * does (it counts the run of equal newest values, pandas GH#42064), not a rounding residue.
 *
 * The per-value path was measured (bench/bench-detector.c) and shaped by it: see the comments
 * on window_score_finite() and detector_feed(), and idmap.c for the device lookup.
 *
 * Detector: an IdMap from device id to the device's state, which holds one Series (window and
 * open event) per channel, allocated the first time the channel carries a value.
 */

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "detector.h"
#include "idmap.h"
#include "macro.h"

int window_init(Window *w, unsigned size) {
        double *ring;

        assert(w);

        if (size == 0 || size > WINDOW_SIZE_MAX)
                return -EINVAL;

        ring = new(double, size);
        if (!ring)
                return -ENOMEM;

        *w = (Window) {
                .ring = ring,
                .size = size,
        };
        return 0;
}

void window_done(Window *w) {
        assert(w);

        free(w->ring);
        *w = (Window) {};
}

void window_reset(Window *w) {
        assert(w);

        *w = (Window) {
                .ring = w->ring,
                .size = w->size,
        };
}

/* The two per-value operations are inlined into detector_feed(), without the checks that the
 * detector makes once per value or once for all (x finite, min_samples >= 1): as calls with
 * their checks and prologues they took about as long as the arithmetic. */
static inline __attribute__((always_inline)) bool window_score_finite(
                const Window *w, double x, unsigned min_samples, double min_stddev,
                double *ret_mean, double *ret_std, double *ret_z) {
        double mean, std;

        if (w->n < min_samples)
                return false;

        if (_unlikely_(w->run >= w->n)) {
                mean = w->last;
                std = 0;
        } else {
                /* m2 may dip below 0 by rounding between two recomputes. Comparisons rather
                 * than fmax(), which is a libm call unless NaNs may be assumed away. */
                mean = w->mean;
                std = sqrt((w->m2 > 0 ? w->m2 : 0) * w->inv_n);
        }

        if (ret_mean)
                *ret_mean = mean;
        if (ret_std)
                *ret_std = std;
        if (ret_z)
                *ret_z = (x - mean) / (std > min_stddev ? std : min_stddev);
        return true;
}

/* Kept out of line: it runs once per window, and inlined it would burden every push. */
static __attribute__((noinline)) void window_recompute(Window *w) {
        /*
         * One pass over the values shifted by k: with s1 = Σ(x - k) and s2 = Σ(x - k)²,
         * mean = k + s1/n and m2 = s2 - s1²/n. The subtraction cancels n(mean - k)², so k must
         * lie near the mean: within two running stds of it (n(k - mean)² <= 4 m2), which bounds
         * s2 by 5 m2 and the loss to a few bits. A value of the window is preferred as k because
         * the differences are then often exact (Sterbenz), so a window of small integers or of
         * one repeated value comes out exact; the running mean, which drifts only by rounding,
         * is the fallback. Four accumulators break the dependency chains of the additions.
         */
        const double *v = w->ring;
        double k = v[0], s0 = 0, s1 = 0, s2 = 0, s3 = 0, q0 = 0, q1 = 0, q2 = 0, q3 = 0, s, q;
        unsigned i;

        if (w->n * (k - w->mean) * (k - w->mean) > 4 * w->m2)
                k = w->mean;

        for (i = 0; i + 4 <= w->n; i += 4) {
                double d0 = v[i] - k, d1 = v[i + 1] - k, d2 = v[i + 2] - k, d3 = v[i + 3] - k;

                s0 += d0;
                s1 += d1;
                s2 += d2;
                s3 += d3;
                q0 += d0 * d0;
                q1 += d1 * d1;
                q2 += d2 * d2;
                q3 += d3 * d3;
        }
        for (; i < w->n; i++) {
                double d0 = v[i] - k;

                s0 += d0;
                q0 += d0 * d0;
        }

        s = (s0 + s1) + (s2 + s3);
        q = (q0 + q1) + (q2 + q3);
        w->mean = k + s * w->inv_n;
        w->m2 = fmax(q - s * s * w->inv_n, 0);
}

static inline __attribute__((always_inline)) void window_push_finite(Window *w, double x) {
        /* Starts at 1 from run == 0 as well, whatever `last` holds. */
        w->run = x == w->last ? w->run + 1 : 1;
        w->last = x;

        if (_likely_(w->n == w->size)) {
                double old = w->ring[w->next], old_mean = w->mean, delta = x - old;

                w->mean = old_mean + delta * w->inv_n;
                w->m2 += delta * ((x - w->mean) + (old - old_mean));
        } else {
                /* Filling: next == n, so the values stay in ring[0..n-1]. */
                double delta = x - w->mean;

                w->n++;
                w->inv_n = 1.0 / w->n;
                w->mean += delta * w->inv_n;
                w->m2 += delta * (x - w->mean);
        }

        w->ring[w->next] = x;
        if (_unlikely_(++w->next == w->size)) {
                /* Every `size` pushes, the window being full by then. */
                w->next = 0;
                window_recompute(w);
        }
}

bool window_score(const Window *w, double x, unsigned min_samples, double min_stddev,
                  double *ret_mean, double *ret_std, double *ret_z) {
        assert(w);

        if (w->n == 0 || !isfinite(x))
                return false;
        return window_score_finite(w, x, min_samples, min_stddev, ret_mean, ret_std, ret_z);
}

void window_push(Window *w, double x) {
        assert(w);
        assert(w->ring);

        if (isfinite(x))
                window_push_finite(w, x);
}

typedef struct Series {
        Window window;

        /* The open event, if in_event. */
        bool in_event;
        unsigned count;
        uint64_t start_usec, end_usec, start_seq, end_seq;
        double peak_z, peak_value, peak_mean, peak_std;
} Series;

typedef struct Device {
        uint32_t channels; /* CHANNEL_BIT()s that have a Series */
        char id[DEVICE_ID_MAX + 1];
        char type[DEVICE_ID_MAX + 1]; /* as of the latest reading that opened an event */
        Series *series[_CHANNEL_MAX];
} Device;

struct Detector {
        DetectorSettings settings;
        DetectorEventFunc on_event;
        void *userdata;

        IdMap *devices; /* device id -> Device */

        bool reporting; /* inside on_event, which must not call back in */
};

static Series *series_free(Series *s) {
        if (!s)
                return NULL;
        window_done(&s->window);
        return mfree(s);
}

static void device_free_series(Device *dev) {
        for (Channel c = 0; c < _CHANNEL_MAX; c++)
                dev->series[c] = series_free(dev->series[c]);
        dev->channels = 0;
}

static Device *device_free(Device *dev) {
        if (!dev)
                return NULL;
        device_free_series(dev);
        return mfree(dev);
}

static int device_add_series(Device *dev, uint32_t channels, unsigned window) {
        for (uint32_t m = channels; m; m &= m - 1) {
                Channel c = __builtin_ctz(m);
                Series *s;
                int r;

                s = new0(Series, 1);
                if (!s)
                        return -ENOMEM;

                r = window_init(&s->window, window);
                if (r < 0) {
                        free(s);
                        return r;
                }

                dev->series[c] = s;
                dev->channels |= CHANNEL_BIT(c);
        }
        return 0;
}

static int detector_add_device(Detector *d, const Reading *r, Device **ret) {
        _cleanup_free_ Device *dev = NULL;
        int k;

        dev = new0(Device, 1);
        if (!dev)
                return -ENOMEM;
        memcpy(dev->id, r->device, strnlen(r->device, DEVICE_ID_MAX));
        memcpy(dev->type, r->type, strnlen(r->type, DEVICE_ID_MAX));

        /* The reading's own buffer, so an unterminated id is refused rather than cut short. */
        k = idmap_put(d->devices, r->device, dev);
        if (k < 0)
                return k;

        *ret = TAKE_PTR(dev);
        return 0;
}

static void detector_report(Detector *d, const Device *dev, Channel c, Series *s) {
        AnomalyEvent e;

        assert(s->in_event);
        s->in_event = false;

        if (!d->on_event)
                return;

        e = (AnomalyEvent) {
                .channel = c,
                .start_usec = s->start_usec,
                .end_usec = s->end_usec,
                .start_seq = s->start_seq,
                .end_seq = s->end_seq,
                .count = s->count,
                .peak_z = s->peak_z,
                .peak_value = s->peak_value,
                .peak_mean = s->peak_mean,
                .peak_std = s->peak_std,
        };
        memcpy(e.device, dev->id, sizeof(e.device));
        memcpy(e.type, dev->type, sizeof(e.type));

        d->reporting = true;
        d->on_event(&e, d->userdata);
        d->reporting = false;
}

static void detector_report_device(Detector *d, const Device *dev) {
        for (uint32_t m = dev->channels; m; m &= m - 1) {
                Channel c = __builtin_ctz(m);

                if (dev->series[c]->in_event)
                        detector_report(d, dev, c, dev->series[c]);
        }
}

static void series_flag(Series *s, Device *dev, const Reading *r, double x, double mean, double std, double z) {
        if (!s->in_event) {
                size_t n = strnlen(r->type, DEVICE_ID_MAX);

                memcpy(dev->type, r->type, n);
                dev->type[n] = 0;

                s->in_event = true;
                s->count = 0;
                s->start_usec = r->time_usec;
                s->start_seq = r->seq;
                s->peak_z = 0; /* a flagged |z| is >= threshold > 0, so the first one wins */
        }

        s->count += s->count < UINT_MAX;
        s->end_usec = r->time_usec;
        s->end_seq = r->seq;
        if (fabs(z) > fabs(s->peak_z)) {
                s->peak_z = z;
                s->peak_value = x;
                s->peak_mean = mean;
                s->peak_std = std;
        }
}

static bool settings_are_valid(const DetectorSettings *s) {
        return s->window >= 1 && s->window <= WINDOW_SIZE_MAX &&
                s->min_samples >= 1 && s->min_samples <= s->window &&
                isfinite(s->threshold) && s->threshold > 0 &&
                isfinite(s->min_stddev) && s->min_stddev > 0;
}

int detector_new(const DetectorSettings *s, DetectorEventFunc on_event, void *userdata, Detector **ret) {
        _cleanup_(detector_freep) Detector *d = NULL;

        assert(s);
        assert(ret);

        if (!settings_are_valid(s))
                return -EINVAL;

        d = new0(Detector, 1);
        if (!d)
                return -ENOMEM;

        d->settings = *s;
        d->on_event = on_event;
        d->userdata = userdata;

        if (idmap_new(&d->devices) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(d);
        return 0;
}

Detector *detector_free(Detector *d) {
        if (!d)
                return NULL;

        assert(!d->reporting);

        if (d->devices) {
                Device *dev;

                IDMAP_FOREACH(dev, d->devices)
                        device_free(dev);
                idmap_free(d->devices);
        }
        return mfree(d);
}

int detector_feed(Detector *d, const Reading *r, Score *ret_scores) {
        uint32_t channels, missing;
        Device *dev;
        int k, n_anomalies = 0;

        assert(d);
        assert(r);
        assert(!d->reporting);

        dev = idmap_get(d->devices, r->device);
        if (!dev) {
                /* -EINVAL for an empty or unterminated id */
                k = detector_add_device(d, r, &dev);
                if (k < 0)
                        return k;
        }

        /* Allocate first, so that running out of memory leaves every window as it was. */
        channels = r->channels & CHANNELS_ALL;
        missing = channels & ~dev->channels;
        if (missing) {
                k = device_add_series(dev, missing, d->settings.window);
                if (k < 0)
                        return k;
        }

        /* Only the flags, and of every channel: zeroing whole entries, or picking out the
         * absent channels, cost more than a tenth of the time. */
        if (ret_scores)
                for (Channel c = 0; c < _CHANNEL_MAX; c++)
                        ret_scores[c].scored = ret_scores[c].anomaly = false;

        for (uint32_t m = channels; m; m &= m - 1) {
                Channel c = __builtin_ctz(m);
                Series *s = dev->series[c];
                double x = r->values[c], mean = 0, std = 0, z = 0;
                bool scored = false, anomaly = false;

                /* A NaN or an infinity is as good as missing. Scalars rather than a Score on the
                 * stack: storing its two bools and then copying it whole stalls store
                 * forwarding, which cost more than the arithmetic. */
                if (_likely_(isfinite(x))) {
                        scored = window_score_finite(&s->window, x, d->settings.min_samples, d->settings.min_stddev,
                                                     &mean, &std, &z);
                        if (scored) {
                                anomaly = zscore_is_anomaly(z, d->settings.threshold);
                                if (anomaly) {
                                        series_flag(s, dev, r, x, mean, std, z);
                                        n_anomalies++;
                                } else if (s->in_event)
                                        detector_report(d, dev, c, s);
                        }

                        window_push_finite(&s->window, x);
                }

                if (ret_scores) {
                        ret_scores[c].value = x;
                        ret_scores[c].mean = mean;
                        ret_scores[c].std = std;
                        ret_scores[c].z = z;
                        ret_scores[c].scored = scored;
                        ret_scores[c].anomaly = anomaly;
                }
        }

        return n_anomalies;
}

void detector_flush(Detector *d) {
        assert(d);
        assert(!d->reporting);

        Device *dev;

        IDMAP_FOREACH(dev, d->devices)
                detector_report_device(d, dev);
}

int detector_forget(Detector *d, const char *device_id) {
        char id[DEVICE_ID_MAX + 1] = {};
        Device *dev;

        assert(d);
        assert(device_id);
        assert(!d->reporting);

        /* The map reads a whole Reading.device worth of bytes. */
        if (strlen(device_id) > DEVICE_ID_MAX)
                return 0;
        strcpy(id, device_id);

        dev = idmap_remove(d->devices, id);
        if (!dev)
                return 0;

        detector_report_device(d, dev);
        device_free(dev);
        return 1;
}

int detector_set_settings(Detector *d, const DetectorSettings *s) {
        assert(d);
        assert(s);
        assert(!d->reporting);

        if (!settings_are_valid(s))
                return -EINVAL;

        if (s->window != d->settings.window) {
                /* Dropping the series cannot fail, unlike resizing every ring now; the next
                 * value of each channel allocates a ring of the new size. */
                Device *dev;

                detector_flush(d);
                IDMAP_FOREACH(dev, d->devices)
                        device_free_series(dev);
        }

        d->settings = *s;
        return 0;
}

size_t detector_device_count(const Detector *d) {
        assert(d);

        return idmap_size(d->devices);
}
