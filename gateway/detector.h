/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Streaming anomaly detection: a rolling z-score per device and channel (DESIGN.md "Detection").
 *
 * Two layers. A Window holds the rolling statistics of one series of values and knows nothing
 * of devices or channels: score a value, then push it. A Detector keeps one Window per device
 * and channel, scores every Reading fed to it and merges consecutive flagged readings of one
 * channel into anomaly events.
 *
 * The maths equals pandas on the series s of the valid values of one device and channel:
 *
 *     m = s.shift(1).rolling(N, min_periods=MinSamples).mean()
 *     d = s.shift(1).rolling(N, min_periods=MinSamples).std(ddof=0)
 *     z = (s - m) / d.clip(lower=MinStdDev)
 *     anomaly = abs(z) >= Threshold
 *
 * i.e. a value is scored against the up to N values before it, never against itself. A channel
 * missing from a reading, or carrying a NaN or an infinity, is skipped: it is not scored and
 * does not enter the window, so the window always holds the last N valid values (pandas on
 * s.dropna(); pandas would keep an infinity and poison N windows with it, we drop it).
 *
 * Each value costs O(1), and the statistics stay exact however long the stream runs: they are
 * recomputed from the window every N values, so rounding never accumulates beyond one window.
 * Neither layer logs or allocates per value: a Window's ring is allocated once, a Detector
 * allocates when it first sees a device or a channel of a device.
 */

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "reading.h"

/* Bounds memory: a device with all channels holds 12 rings of this many doubles. */
#define WINDOW_SIZE_MAX (UINT32_C(1) << 20)

/* The last `size` values of one series with their running mean and sum of squared deviations.
 * Embed it anywhere; all fields are private to detector.c. */
typedef struct Window {
        double *ring;          /* size slots; ring[0..n-1] hold values */
        unsigned size;         /* N */
        unsigned n;            /* values held, <= size */
        unsigned next;         /* slot the next value goes to (the oldest one once full) */
        uint64_t run;          /* how many of the newest values equal `last` */
        double last;
        double mean;
        double m2;             /* sum of squared deviations from mean */
        double inv_n;          /* 1/n: a multiplication is far quicker than a division */
} Window;

/* Allocates the ring of an empty window of `size` values (1..WINDOW_SIZE_MAX): 0, -EINVAL or
 * -ENOMEM. */
int window_init(Window *w, unsigned size);
/* Frees the ring; the window may be initialised again. Takes a zeroed or done window too. */
void window_done(Window *w);
/* Empties the window, keeping its ring. */
void window_reset(Window *w);

/* Scores x against the values held, without adding it: mean and population std of the window,
 * z = (x - mean) / max(std, min_stddev). Returns false, leaving the ret_* untouched, while the
 * window holds fewer than max(min_samples, 1) values, or when x is not finite. Any ret_* may
 * be NULL. min_stddev should be > 0: with 0 a constant window gives z = ±inf or NaN, as pandas. */
bool window_score(const Window *w, double x, unsigned min_samples, double min_stddev,
                  double *ret_mean, double *ret_std, double *ret_z);
/* Adds x, evicting the oldest value when full. A non-finite x is ignored, like a missing one. */
void window_push(Window *w, double x);

static inline unsigned window_count(const Window *w) {
        return w->n;
}

/* The threshold is inclusive, as in the seed's notebook. A NaN z is never an anomaly. */
static inline bool zscore_is_anomaly(double z, double threshold) {
        return fabs(z) >= threshold;
}

typedef struct DetectorSettings {
        unsigned window;       /* N, 1..WINDOW_SIZE_MAX */
        unsigned min_samples;  /* values needed before scoring, 1..window */
        double threshold;      /* > 0 */
        double min_stddev;     /* > 0: floor of the std, so a constant series gives finite z */
} DetectorSettings;

/* One channel's result for one reading. For a channel the reading does not carry, only .scored
 * and .anomaly are set (false). For one it carries, .value is its value; when that is not
 * finite or the window is still warming up, .scored is false and mean, std and z are 0. */
typedef struct Score {
        double value, mean, std, z;
        bool scored;
        bool anomaly;
} Score;

/* Consecutive flagged readings of one device and channel. */
typedef struct AnomalyEvent {
        char device[DEVICE_ID_MAX + 1];
        char type[DEVICE_ID_MAX + 1];      /* the device type, as its readings give it */
        Channel channel;
        uint64_t start_usec, end_usec;     /* time of the first and the last flagged reading */
        uint64_t start_seq, end_seq;
        unsigned count;                    /* flagged readings */
        double peak_z, peak_value, peak_mean, peak_std; /* at the first reading with the largest |z| */
} AnomalyEvent;

/* Called with every closed event. It must not call back into the detector. */
typedef void (*DetectorEventFunc)(const AnomalyEvent *e, void *userdata);

typedef struct Detector Detector;

/* Returns 0, -EINVAL on invalid settings, or -ENOMEM. on_event may be NULL. */
int detector_new(const DetectorSettings *s, DetectorEventFunc on_event, void *userdata, Detector **ret);
/* Frees every device without reporting open events: call detector_flush() first to keep them. */
Detector *detector_free(Detector *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(Detector *, detector_free);

/*
 * Scores every channel present in r against that channel's window, then pushes the values.
 * ret_scores may be NULL, else it has _CHANNEL_MAX entries indexed by Channel. Returns the number
 * of anomalous channels (>= 0), -EINVAL if r->device is empty or not terminated, or -ENOMEM (then
 * nothing was scored or pushed).
 *
 * Events: the first flagged value of a channel opens an event, later flagged values extend it.
 * Values that are not scored (skipped) neither extend nor close it. The event is reported
 * through on_event, from within this call and before it returns, when r is the first later
 * reading whose value on that channel is scored and not anomalous; detector_flush(),
 * detector_forget() and a change of the window size report it too.
 */
int detector_feed(Detector *d, const Reading *r, Score *ret_scores);
/* Reports and closes every open event (at the end of a replay, at shutdown). Windows are kept. */
void detector_flush(Detector *d);
/* Reports the open events of the device, then frees its state. Returns 1 if the device was
 * known, 0 if not. */
int detector_forget(Detector *d, const char *device_id);

/*
 * Applies new settings: 0 or -EINVAL. Windows are kept unless the window size changes: then
 * every open event is reported and every window restarts empty. Threshold, min_samples and
 * min_stddev apply from the next value on; an open event stays open until a value is scored
 * under the new settings and is not anomalous.
 */
int detector_set_settings(Detector *d, const DetectorSettings *s);
size_t detector_device_count(const Detector *d);
