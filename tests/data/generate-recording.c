/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * generate-recording: writes a synthetic CSV recording of motion data, and the list of the
 * anomalies it injected, for the demo, the tests and the benchmarks to replay.
 *
 * Everything random comes from our own xoshiro256** generators seeded through splitmix64, one
 * stream per device for its set-up and anomaly schedule and one for its noise, so a file depends
 * only on the arguments (and on libm's sin/log, hence "on the same platform"). Every draw is
 * its own statement, in a fixed order, so gcc and clang builds write the same bytes.
 *
 * Devices cycle through three kinds, each shaped like what its BLE profile produces (see
 * DESIGN.md "Readings" for the channels and units): a phone running the seed tutorial's web
 * simulator, a RuuviTag lying on a shelf, and a SensorTag bolted to a vibrating machine.
 * --kinds narrows or reorders the cycle, e.g. only SensorTags, for a benchmark that wants every
 * row to carry the same channels; a device's random streams depend on its index alone, so the
 * default cycle writes the same bytes as before the option existed.
 * Anomalies are spikes (1-3 samples far off) and steps (a level shift for 1-3 s), placed at
 * most one per 10 s slot of a device, after a warm-up and with a quiet gap behind each, so that
 * a rolling window of the detector's default length sees clean data around every one.
 *
 * printf("%g") is too slow for the million-row benchmark files, so numbers are printed by a
 * small fixed-point formatter with a fixed number of decimals per unit, trailing zeros trimmed.
 */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "reading.h"

#define STANDARD_GRAVITY 9.80665 /* m/s² per g */
#define MG (STANDARD_GRAVITY / 1000.0)

/* The detector's default window; anomalies keep this many clean samples on either side. */
#define WINDOW 100

#define DEVICES_MAX 1000u
#define RATE_MAX 1000u           /* timestamps are whole milliseconds */
#define ROWS_MAX 1000000000u     /* also bounds the anomaly table held in memory */
#define TIME_MS_MAX UINT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z: readers want 4-digit years */

/* 2018-01-10T00:00:00Z, the day of the seed tutorial's data. */
#define START_MS_DEFAULT UINT64_C(1515542400000)

/* Printed resolution per channel: 0.1 mm/s² (well below Ruuvi's 1 mG), 1 m°/s, 1 nT, 1 m°. */
static const unsigned channel_decimals[_CHANNEL_MAX] = {
        4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 3, 3,
};

typedef enum Kind {
        KIND_PHONE,
        KIND_RUUVI,
        KIND_SENSORTAG,
        _KIND_MAX,
} Kind;

/* As --kinds spells them. */
static const char *const kind_names[_KIND_MAX] = {
        [KIND_PHONE] = "phone",
        [KIND_RUUVI] = "ruuvi",
        [KIND_SENSORTAG] = "sensortag",
};

static const char *const kind_types[_KIND_MAX] = {
        [KIND_PHONE] = "simulator",
        [KIND_RUUVI] = "ruuvi",
        [KIND_SENSORTAG] = "sensortag",
};

/* Which channels each kind carries, and which of them get anomalies. The phone's alpha is a
 * compass heading that wraps at 360°, where any z-score sees a jump, so it is left clean. */
static const uint32_t kind_channels[_KIND_MAX] = {
        [KIND_PHONE] = CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY) | CHANNEL_BIT(CHANNEL_AZ) | CHANNEL_BIT(CHANNEL_GX) | CHANNEL_BIT(CHANNEL_GY) |
                       CHANNEL_BIT(CHANNEL_GZ) | CHANNEL_BIT(CHANNEL_OA) | CHANNEL_BIT(CHANNEL_OB) | CHANNEL_BIT(CHANNEL_OG),
        [KIND_RUUVI] = CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY) | CHANNEL_BIT(CHANNEL_AZ),
        [KIND_SENSORTAG] = CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY) | CHANNEL_BIT(CHANNEL_AZ) | CHANNEL_BIT(CHANNEL_GX) | CHANNEL_BIT(CHANNEL_GY) |
                           CHANNEL_BIT(CHANNEL_GZ) | CHANNEL_BIT(CHANNEL_MX) | CHANNEL_BIT(CHANNEL_MY) | CHANNEL_BIT(CHANNEL_MZ),
};

static const uint32_t kind_anomaly_channels[_KIND_MAX] = {
        [KIND_PHONE] = CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY) | CHANNEL_BIT(CHANNEL_AZ) | CHANNEL_BIT(CHANNEL_GX) | CHANNEL_BIT(CHANNEL_GY) |
                       CHANNEL_BIT(CHANNEL_GZ) | CHANNEL_BIT(CHANNEL_OB) | CHANNEL_BIT(CHANNEL_OG),
        [KIND_RUUVI] = CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY) | CHANNEL_BIT(CHANNEL_AZ),
        [KIND_SENSORTAG] = CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY) | CHANNEL_BIT(CHANNEL_AZ) | CHANNEL_BIT(CHANNEL_GX) | CHANNEL_BIT(CHANNEL_GY) |
                           CHANNEL_BIT(CHANNEL_GZ) | CHANNEL_BIT(CHANNEL_MX) | CHANNEL_BIT(CHANNEL_MY) | CHANNEL_BIT(CHANNEL_MZ),
};

/* xoshiro256** (Blackman and Vigna), seeded from splitmix64 as its authors recommend. */
typedef struct Rng {
        uint64_t s[4];
        bool has_spare;
        double spare;
} Rng;

static uint64_t splitmix64_next(uint64_t *state) {
        uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
}

static void rng_seed(Rng *r, uint64_t seed, uint64_t stream) {
        /* The odd multiplier is a bijection: under one seed, every stream starts splitmix64
         * at its own point. */
        uint64_t x = seed ^ (stream * UINT64_C(0xd1b54a32d192ed03));

        for (size_t i = 0; i < ELEMENTSOF(r->s); i++)
                r->s[i] = splitmix64_next(&x);
        r->has_spare = false;
}

static uint64_t rng_next(Rng *r) {
        uint64_t *s = r->s;
        uint64_t result = rotl64(s[1] * 5, 7) * 9;
        uint64_t t = s[1] << 17;

        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl64(s[3], 45);
        return result;
}

/* Uniform in [0, 1), from the top 53 bits. */
static double rng_uniform(Rng *r) {
        return (double) (rng_next(r) >> 11) * 0x1.0p-53;
}

static double rng_range(Rng *r, double lo, double hi) {
        return lo + (hi - lo) * rng_uniform(r);
}

/* Uniform in [0, n); the bias of this mapping is below 2^-53 · n, irrelevant here. */
static uint64_t rng_below(Rng *r, uint64_t n) {
        return (uint64_t) (rng_uniform(r) * (double) n);
}

static double rng_sign(Rng *r) {
        return rng_next(r) >> 63 ? 1.0 : -1.0;
}

/* Standard normal by Box-Muller; each draw of two uniforms yields two values. */
static double rng_gauss(Rng *r) {
        double u1, u2, radius;

        if (r->has_spare) {
                r->has_spare = false;
                return r->spare;
        }

        u1 = 1.0 - rng_uniform(r); /* (0, 1]: log() stays finite */
        u2 = rng_uniform(r);
        radius = sqrt(-2.0 * log(u1));
        r->spare = radius * sin(2.0 * M_PI * u2);
        r->has_spare = true;
        return radius * cos(2.0 * M_PI * u2);
}

/* A wave is also an oscillator: (sin, cos) of its phase at the current sample, turned by one
 * sample's angle each step. Two multiply-adds instead of a sin() per sample and wave; the
 * rounding error this accumulates stays far below the printed digits even after 10⁹ steps. */
typedef struct Wave {
        double amp, omega, phase;
        double sin_now, cos_now, sin_step, cos_step;
} Wave;

/* One channel's clean value: base + drift·t + Σ amp·sin(omega·t + phase), plus Gaussian noise. */
typedef struct Signal {
        double base, drift, noise;
        Wave waves[2];
} Signal;

/* Every random draw is a statement of its own: C leaves the order of function arguments and of
 * initializers open, and gcc and clang do pick different orders. */
static void wave_random(Wave *w, Rng *r, double amp_lo, double amp_hi, double hz_lo, double hz_hi) {
        w->amp = rng_range(r, amp_lo, amp_hi);
        w->omega = 2.0 * M_PI * rng_range(r, hz_lo, hz_hi);
        w->phase = rng_range(r, 0.0, 2.0 * M_PI);
}

/* The derivative of a wave in degrees, in °/s: what a gyroscope sees of that orientation sway. */
static Wave wave_derivative(Wave w) {
        return (Wave) {
                .amp = w.amp * w.omega,
                .omega = w.omega,
                .phase = w.phase + M_PI / 2.0,
        };
}

static void wave_start(Wave *w, uint64_t rate) {
        w->sin_now = sin(w->phase);
        w->cos_now = cos(w->phase);
        w->sin_step = sin(w->omega / (double) rate);
        w->cos_step = cos(w->omega / (double) rate);
}

static double wave_next(Wave *w) {
        double v = w->amp * w->sin_now, s = w->sin_now;

        w->sin_now = s * w->cos_step + w->cos_now * w->sin_step;
        w->cos_now = w->cos_now * w->cos_step - s * w->sin_step;
        return v;
}

/* The typical spread of a signal about its level: what anomaly sizes are measured in. */
static double signal_scale(const Signal *s) {
        double v = s->noise * s->noise;

        for (size_t i = 0; i < ELEMENTSOF(s->waves); i++)
                v += s->waves[i].amp * s->waves[i].amp / 2.0;
        return sqrt(v);
}

typedef struct Anomaly {
        uint32_t device;
        uint8_t channel;
        bool step;
        uint64_t first, last; /* sample indices of the device, inclusive */
        double magnitude;     /* added to the clean value, in the channel's unit */
} Anomaly;

typedef struct Device {
        Kind kind;
        char id[24];
        char prefix[64]; /* ",<deviceId>,<deviceType>" */
        size_t prefix_len;
        uint32_t channels;
        Signal signals[_CHANNEL_MAX];
        Rng noise;
        uint64_t n_samples;
        size_t anomaly_first, n_anomalies, anomaly_next; /* its slice of the anomaly table */
} Device;

typedef struct Options {
        uint64_t devices, seconds, rate, seed, start_ms, rows;
        bool rows_set;
        Kind kinds[_KIND_MAX]; /* device k is of kind kinds[k % n_kinds] */
        size_t n_kinds;
        const char *output;
        const char *anomalies;
} Options;

/* Sensor-to-world rotation from yaw (z), pitch (y), roll (x), in radians: R = Rz·Ry·Rx. */
static void rotation_from_angles(double yaw, double pitch, double roll, double ret_m[3][3]) {
        double cy = cos(yaw), sy = sin(yaw), cp = cos(pitch), sp = sin(pitch), cr = cos(roll), sr = sin(roll);

        ret_m[0][0] = cy * cp;
        ret_m[0][1] = cy * sp * sr - sy * cr;
        ret_m[0][2] = cy * sp * cr + sy * sr;
        ret_m[1][0] = sy * cp;
        ret_m[1][1] = sy * sp * sr + cy * cr;
        ret_m[1][2] = sy * sp * cr - cy * sr;
        ret_m[2][0] = -sp;
        ret_m[2][1] = cp * sr;
        ret_m[2][2] = cp * cr;
}

/* A world-frame vector as the sensor sees it: Rᵀ·v. */
static void rotation_to_sensor(const double m[3][3], const double v[3], double ret_v[3]) {
        for (size_t i = 0; i < 3; i++)
                ret_v[i] = m[0][i] * v[0] + m[1][i] * v[1] + m[2][i] * v[2];
}

static double degrees_to_radians(double d) {
        return d * M_PI / 180.0;
}

static void device_setup_phone(Device *d, Rng *r, uint64_t rate) {
        Signal *s = d->signals;

        /* W3C DeviceMotionEvent.acceleration excludes gravity: a hand's slow wobble, a faint
         * physiological tremor, sensor noise. */
        for (Channel c = CHANNEL_AX; c <= CHANNEL_AZ; c++) {
                s[c].noise = rng_range(r, 0.03, 0.08);
                wave_random(s[c].waves + 0, r, 0.1, 0.6, 0.3, 2.5);
                wave_random(s[c].waves + 1, r, 0.02, 0.15, MIN(3.0, 0.3 * (double) rate), MIN(6.0, 0.4 * (double) rate));
        }

        /* Alpha is the heading: slow turning. Beta (front-back tilt) sways around 30°, as a
         * phone held to be read; gamma (left-right) around level. The ranges keep the largest
         * anomaly inside beta's [-180, 180) and gamma's [-90, 90). */
        s[CHANNEL_OA].base = rng_range(r, 0.0, 360.0);
        s[CHANNEL_OA].drift = rng_range(r, 0.2, 2.0);
        s[CHANNEL_OA].drift *= rng_sign(r);
        s[CHANNEL_OA].noise = 0.2;
        wave_random(s[CHANNEL_OA].waves + 0, r, 1.0, 3.0, 0.05, 0.2);

        s[CHANNEL_OB].base = 30.0;
        s[CHANNEL_OB].noise = 0.3;
        wave_random(s[CHANNEL_OB].waves + 0, r, 3.0, 8.0, 0.1, 0.6);
        wave_random(s[CHANNEL_OB].waves + 1, r, 0.5, 1.5, MIN(1.0, 0.2 * (double) rate), MIN(3.0, 0.4 * (double) rate));

        s[CHANNEL_OG].base = rng_range(r, -5.0, 5.0);
        s[CHANNEL_OG].noise = 0.3;
        wave_random(s[CHANNEL_OG].waves + 0, r, 2.0, 4.0, 0.1, 0.6);

        /* The rotation rate follows the orientation: gx about x is beta's rate, gy gamma's, gz
         * alpha's, so the gyroscope agrees with the orientation it reports. */
        s[CHANNEL_GX].noise = rng_range(r, 0.3, 1.0);
        s[CHANNEL_GX].waves[0] = wave_derivative(s[CHANNEL_OB].waves[0]);
        s[CHANNEL_GX].waves[1] = wave_derivative(s[CHANNEL_OB].waves[1]);

        s[CHANNEL_GY].noise = rng_range(r, 0.3, 1.0);
        s[CHANNEL_GY].waves[0] = wave_derivative(s[CHANNEL_OG].waves[0]);

        s[CHANNEL_GZ].base = s[CHANNEL_OA].drift;
        s[CHANNEL_GZ].noise = rng_range(r, 0.3, 1.0);
        s[CHANNEL_GZ].waves[0] = wave_derivative(s[CHANNEL_OA].waves[0]);
}

static void device_setup_ruuvi(Device *d, Rng *r) {
        double m[3][3], g[3], pitch, roll;

        /* Lying flat on a shelf with a small tilt: gravity only, the accelerometer's noise, then
         * (at output) the 1 mG steps of format 5. */
        pitch = degrees_to_radians(rng_range(r, -5.0, 5.0));
        roll = degrees_to_radians(rng_range(r, -5.0, 5.0));
        rotation_from_angles(0.0, pitch, roll, m);
        rotation_to_sensor(m, (const double[3]) { 0.0, 0.0, STANDARD_GRAVITY }, g);

        for (Channel c = CHANNEL_AX; c <= CHANNEL_AZ; c++) {
                d->signals[c].base = g[c - CHANNEL_AX];
                d->signals[c].noise = rng_range(r, 0.015, 0.025);
        }
}

static void device_setup_sensortag(Device *d, Rng *r, uint64_t rate) {
        double m[3][3], g[3], b[3], yaw, pitch, roll, field, inclination, hz;

        yaw = degrees_to_radians(rng_range(r, 0.0, 360.0));
        pitch = degrees_to_radians(rng_range(r, -10.0, 10.0));
        roll = degrees_to_radians(rng_range(r, -10.0, 10.0));
        rotation_from_angles(yaw, pitch, roll, m);
        rotation_to_sensor(m, (const double[3]) { 0.0, 0.0, STANDARD_GRAVITY }, g);

        /* Earth's field: 25..65 µT in total, dipping into the ground at some inclination
         * (z is up). */
        field = rng_range(r, 25.0, 65.0);
        inclination = degrees_to_radians(rng_range(r, -70.0, 70.0));
        rotation_to_sensor(m, (const double[3]) { field * cos(inclination), 0.0, -field * sin(inclination) }, b);

        /* A machine's vibration at one frequency (kept below the Nyquist limit of the rate)
         * shakes all three axes, and rocks the tag a little. */
        hz = rng_range(r, 8.0, 20.0);
        hz = MIN(hz, 0.4 * (double) rate);
        for (Channel c = CHANNEL_AX; c <= CHANNEL_AZ; c++) {
                d->signals[c].base = g[c - CHANNEL_AX];
                d->signals[c].noise = rng_range(r, 0.02, 0.05);
                wave_random(d->signals[c].waves + 0, r, 0.05, 0.4, hz, hz);
        }
        for (Channel c = CHANNEL_GX; c <= CHANNEL_GZ; c++) {
                d->signals[c].base = rng_range(r, -1.0, 1.0); /* gyroscope bias */
                d->signals[c].noise = rng_range(r, 0.1, 0.4);
                wave_random(d->signals[c].waves + 0, r, 0.2, 1.5, hz, hz);
        }
        for (Channel c = CHANNEL_MX; c <= CHANNEL_MZ; c++) {
                d->signals[c].base = b[c - CHANNEL_MX];
                d->signals[c].noise = rng_range(r, 0.2, 0.5);
        }
}

/* A static random BLE address as 12 lower-case hex digits: the top two bits set, as Ruuvi's. */
static void mac_format(uint64_t bits, char ret_id[static 13]) {
        static const char hex[] = "0123456789abcdef";

        bits = (bits & UINT64_C(0xffffffffffff)) | UINT64_C(0xc00000000000);
        for (int i = 11; i >= 0; i--) {
                ret_id[i] = hex[bits & 0xf];
                bits >>= 4;
        }
        ret_id[12] = '\0';
}

static bool device_id_taken(const Device *devices, size_t n, const char *id) {
        for (size_t i = 0; i < n; i++)
                if (streq(devices[i].id, id))
                        return true;
        return false;
}

static void device_setup(Device *devices, size_t k, const Options *o, Rng *r) {
        Device *d = devices + k;
        unsigned n_phones = 1;

        d->kind = o->kinds[k % o->n_kinds];
        d->channels = kind_channels[d->kind];

        /* Phones are numbered from 1 in the order they appear, whatever the cycle. */
        for (size_t i = 0; i < k; i++)
                n_phones += devices[i].kind == KIND_PHONE;

        if (d->kind == KIND_PHONE)
                snprintf(d->id, sizeof(d->id), "phone-%u", n_phones);
        else
                do
                        mac_format(rng_next(r), d->id);
                while (device_id_taken(devices, k, d->id));

        d->prefix_len = (size_t) snprintf(d->prefix, sizeof(d->prefix), ",%s,%s", d->id, kind_types[d->kind]);

        switch (d->kind) {
        case KIND_PHONE:
                device_setup_phone(d, r, o->rate);
                break;
        case KIND_RUUVI:
                device_setup_ruuvi(d, r);
                break;
        case KIND_SENSORTAG:
                device_setup_sensortag(d, r, o->rate);
                break;
        default:
                abort();
        }

        for (Channel c = 0; c < _CHANNEL_MAX; c++)
                for (size_t w = 0; w < ELEMENTSOF(d->signals[c].waves); w++)
                        wave_start(d->signals[c].waves + w, o->rate);
}

/*
 * One anomaly per slot of the device's samples, at a random place inside it, kept only when
 * the recording still holds a quiet gap after it. Slots start after a warm-up of two windows
 * (2 s at 100 Hz), so the detector's window is full and clean before the first anomaly, and
 * every anomaly is followed by at least a window (and a second) of clean samples.
 */
static int device_schedule(Device *d, uint32_t index, const Options *o, Rng *r, Anomaly **anomalies,
                           size_t *n_anomalies, size_t *n_allocated) {
        uint64_t warmup = MAX(2 * o->rate, 2 * WINDOW);
        uint64_t guard = MAX(o->rate, WINDOW);
        uint64_t slot = MAX(10 * o->rate, 4 * WINDOW);
        uint32_t candidates = kind_anomaly_channels[d->kind];
        Channel choice[_CHANNEL_MAX];
        size_t n_choice = 0;

        for (Channel c = 0; c < _CHANNEL_MAX; c++)
                if (candidates & CHANNEL_BIT(c))
                        choice[n_choice++] = c;

        d->anomaly_first = *n_anomalies;

        for (uint64_t start = warmup; start < d->n_samples; start += slot) {
                Anomaly a = {
                        .device = index,
                        .step = rng_next(r) >> 63,
                };
                uint64_t length;
                double factor;

                a.channel = (uint8_t) choice[rng_below(r, n_choice)];
                if (a.step) {
                        length = (uint64_t) llround(rng_range(r, 1.0, 3.0) * (double) o->rate);
                        factor = rng_range(r, 6.0, 10.0);
                } else {
                        length = 1 + rng_below(r, 3);
                        factor = rng_range(r, 8.0, 15.0);
                }
                a.magnitude = rng_sign(r) * factor * signal_scale(d->signals + a.channel);
                a.first = start + rng_below(r, slot - length - guard + 1);
                a.last = a.first + length - 1;

                /* Ruuvi values are whole mG: a whole-mG shift is exactly what lands in the file. */
                if (d->kind == KIND_RUUVI)
                        a.magnitude = (double) llround(a.magnitude / MG) * MG;

                if (a.last + guard >= d->n_samples)
                        continue;

                if (*n_anomalies == *n_allocated) {
                        size_t n = MAX(*n_allocated * 2, (size_t) 64);
                        Anomaly *p = reallocarray(*anomalies, n, sizeof(Anomaly));
                        if (!p)
                                return -ENOMEM;
                        *anomalies = p;
                        *n_allocated = n;
                }
                (*anomalies)[(*n_anomalies)++] = a;
        }

        d->n_anomalies = *n_anomalies - d->anomaly_first;
        d->anomaly_next = d->anomaly_first;
        return 0;
}

/* Row r = i·N + k is sample i of device k: devices sample at the same rate with their phases
 * spread over the period, so rows in this order are in time order. */
static uint64_t sample_time_ms(const Options *o, uint64_t sample, uint64_t device) {
        return o->start_ms + (sample * o->devices + device) * 1000 / (o->rate * o->devices);
}

static char *format_u64(char *p, uint64_t v) {
        char tmp[20];
        size_t n = 0;

        do {
                tmp[n++] = (char) ('0' + v % 10);
                v /= 10;
        } while (v > 0);
        while (n > 0)
                *p++ = tmp[--n];
        return p;
}

/* v rounded to the given decimals, trailing zeros and a bare point dropped, never "-0". */
static char *format_fixed(char *p, double v, unsigned decimals) {
        static const uint64_t pow10[] = { 1, 10, 100, 1000, 10000, 100000, 1000000 };
        int64_t n;
        uint64_t u, frac, scale;
        char digits[8];
        unsigned nd;

        assert(decimals < ELEMENTSOF(pow10));
        assert(isfinite(v) && fabs(v) < 1e12);

        scale = pow10[decimals];
        n = llround(v * (double) scale);
        if (n < 0)
                *p++ = '-';
        u = n < 0 ? (uint64_t) -n : (uint64_t) n;

        p = format_u64(p, u / scale);
        frac = u % scale;
        if (frac == 0)
                return p;

        nd = decimals;
        while (frac % 10 == 0) {
                frac /= 10;
                nd--;
        }
        for (unsigned i = nd; i > 0; i--) {
                digits[i - 1] = (char) ('0' + frac % 10);
                frac /= 10;
        }
        *p++ = '.';
        memcpy(p, digits, nd);
        return p + nd;
}

/* Keeps an angle, at its printed resolution, inside [lo, lo + span). */
static double degrees_wrap(double v, double lo, double span, unsigned decimals) {
        double scale = pow(10.0, decimals);
        int64_t n = llround((v - lo) * scale), m = llround(span * scale);

        n %= m;
        if (n < 0)
                n += m;
        return lo + (double) n / scale;
}

static char *device_format_sample(Device *d, const Anomaly *anomalies, uint64_t i, double rate, char *p) {
        double t = (double) i / rate, v[_CHANNEL_MAX];
        const Anomaly *a = NULL;

        for (Channel c = 0; c < _CHANNEL_MAX; c++) {
                Signal *s = d->signals + c;

                if (!(d->channels & CHANNEL_BIT(c)))
                        continue;

                v[c] = s->base + s->drift * t;
                for (size_t w = 0; w < ELEMENTSOF(s->waves); w++)
                        if (s->waves[w].amp != 0.0)
                                v[c] += wave_next(s->waves + w);
                v[c] += s->noise * rng_gauss(&d->noise);
        }

        while (d->anomaly_next < d->anomaly_first + d->n_anomalies && anomalies[d->anomaly_next].last < i)
                d->anomaly_next++;
        if (d->anomaly_next < d->anomaly_first + d->n_anomalies && anomalies[d->anomaly_next].first <= i)
                a = anomalies + d->anomaly_next;
        if (a)
                v[a->channel] += a->magnitude;

        switch (d->kind) {
        case KIND_PHONE:
                /* The W3C ranges. Only alpha ever wraps; the others stay inside by design. */
                v[CHANNEL_OA] = degrees_wrap(v[CHANNEL_OA], 0.0, 360.0, channel_decimals[CHANNEL_OA]);
                v[CHANNEL_OB] = degrees_wrap(v[CHANNEL_OB], -180.0, 360.0, channel_decimals[CHANNEL_OB]);
                v[CHANNEL_OG] = MIN(MAX(v[CHANNEL_OG], -90.0), 89.999);
                break;
        case KIND_RUUVI:
                /* Format 5 sends whole mG, clipped at the default ±2 g range. */
                for (Channel c = CHANNEL_AX; c <= CHANNEL_AZ; c++) {
                        long long mg = llround(v[c] / MG);
                        v[c] = (double) MIN(MAX(mg, -2000LL), 2000LL) * MG;
                }
                break;
        default:
                break;
        }

        for (Channel c = 0; c < _CHANNEL_MAX; c++) {
                *p++ = ',';
                if (d->channels & CHANNEL_BIT(c))
                        p = format_fixed(p, v[c], channel_decimals[c]);
        }
        *p++ = '\n';
        return p;
}

/* A tool, not a daemon: errors go to stderr, prefixed with our name; "%m" shows r. */
_printf_(2, 3) static int error_errno(int r, const char *format, ...) {
        va_list ap;

        fprintf(stderr, "%s: ", program_invocation_short_name);
        errno = -r;
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
        return r;
}

static int anomaly_compare(const void *x, const void *y) {
        const Anomaly *a = x, *b = y;

        /* Sample index, then device: the order of the rows, hence time order. */
        if (a->first != b->first)
                return a->first < b->first ? -1 : 1;
        return a->device < b->device ? -1 : a->device > b->device;
}

/* The temporary file beside an output, removed unless output_finish() renamed it into place. */
static void unlink_and_freep(char **p) {
        if (*p) {
                (void) unlink(*p);
                free(*p);
        }
}
#define _cleanup_unlink_free_ _cleanup_(unlink_and_freep)

/* A new or regular file is written to a temporary file and renamed when complete, so a failed
 * or interrupted run never leaves a truncated recording that a build would take as up to date.
 * Anything else (/dev/null, a FIFO, a symlink) is written in place: renaming over it would
 * replace the device or the link itself. */
static int output_open(const char *path, char **ret_tmp, FILE **ret_f) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        mode_t mask;
        FILE *f;

        if (!path || streq(path, "-")) {
                *ret_tmp = NULL;
                *ret_f = stdout;
                return 0;
        }

        if (lstat(path, &st) < 0) {
                if (errno != ENOENT)
                        return negative_errno();
        } else if (!S_ISREG(st.st_mode)) {
                f = fopen(path, "we");
                if (!f)
                        return negative_errno();
                *ret_tmp = NULL;
                *ret_f = f;
                return 0;
        }

        if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return negative_errno();

        /* mkostemp() creates 0600; give the file the mode a plain fopen() would have. */
        mask = umask(0);
        umask(mask);
        if (fchmod(fd, 0666 & ~mask) < 0) {
                int r = negative_errno();
                (void) unlink(tmp);
                return r;
        }

        f = fdopen(fd, "w");
        if (!f) {
                int r = negative_errno();
                (void) unlink(tmp);
                return r;
        }
        TAKE_FD(fd);

        *ret_tmp = TAKE_PTR(tmp);
        *ret_f = f;
        return 0;
}

/* Closes an output that output_finish() did not get to; stdout is left to exit(). */
static void output_closep(FILE **f) {
        if (*f && *f != stdout)
                fclose(*f);
}
#define _cleanup_output_close_ _cleanup_(output_closep)

static int output_finish(const char *path, char **tmp, FILE **f) {
        int r = 0;

        if (fflush(*f) != 0 || ferror(*f))
                r = negative_errno();
        if (*f != stdout && fclose(*f) != 0 && r == 0)
                r = negative_errno();
        *f = NULL;
        if (r < 0 || !*tmp)
                return r;

        if (rename(*tmp, path) < 0)
                return negative_errno();
        *tmp = mfree(*tmp);
        return 0;
}

static int write_anomalies(FILE *f, const Options *o, const Device *devices, const Anomaly *anomalies,
                           size_t n_anomalies) {
        _cleanup_free_ Anomaly *sorted = NULL;

        sorted = new(Anomaly, MAX(n_anomalies, (size_t) 1));
        if (!sorted)
                return -ENOMEM;
        if (n_anomalies > 0)
                memcpy(sorted, anomalies, n_anomalies * sizeof(Anomaly));
        qsort(sorted, n_anomalies, sizeof(Anomaly), anomaly_compare);

        fputs("deviceId,channel,kind,start_ms,end_ms,magnitude\n", f);
        for (size_t i = 0; i < n_anomalies; i++) {
                const Anomaly *a = sorted + i;
                char line[256], *p = line;
                size_t n;

                n = (size_t) snprintf(line, sizeof(line), "%s,%s,%s,", devices[a->device].id,
                                      channel_to_string(a->channel), a->step ? "step" : "spike");
                p += n;
                p = format_u64(p, sample_time_ms(o, a->first, a->device));
                *p++ = ',';
                p = format_u64(p, sample_time_ms(o, a->last, a->device));
                *p++ = ',';
                p = format_fixed(p, a->magnitude, channel_decimals[a->channel]);
                *p++ = '\n';
                fwrite(line, 1, (size_t) (p - line), f);
        }
        return 0;
}

static int write_recording(FILE *f, const Options *o, Device *devices, const Anomaly *anomalies) {
        /* Rows are a few hundred bytes; a big buffer makes the writes a few hundred syscalls per
         * million rows. Static, because stdout may use it until exit. */
        static char buffer[1 << 20];

        if (setvbuf(f, buffer, _IOFBF, sizeof(buffer)) != 0)
                return -ENOMEM;

        fputs("timestamp,deviceId,deviceType,ax,ay,az,gx,gy,gz,mx,my,mz,oa,ob,og\n", f);

        for (uint64_t i = 0, row = 0; row < o->rows; i++)
                for (uint64_t k = 0; k < o->devices && row < o->rows; k++, row++) {
                        Device *d = devices + k;
                        char line[512], *p = line;

                        p = format_u64(p, sample_time_ms(o, i, k));
                        memcpy(p, d->prefix, d->prefix_len);
                        p += d->prefix_len;
                        p = device_format_sample(d, anomalies, i, (double) o->rate, p);
                        fwrite_unlocked(line, 1, (size_t) (p - line), f);
                }

        return ferror(f) ? -EIO : 0;
}

static void help(void) {
        printf("%s [OPTIONS...]\n\n"
               "Write a deterministic synthetic CSV recording of motion data, cycling through\n"
               "phone (simulator), ruuvi and sensortag devices, with injected anomalies.\n\n"
               "  -h --help            Show this help\n"
               "     --devices=N       Number of devices (default 4, at most %u)\n"
               "     --kinds=LIST      Kinds of device to cycle through, in this order: a comma\n"
               "                       list of phone, ruuvi, sensortag, each at most once\n"
               "                       (default phone,ruuvi,sensortag)\n"
               "     --seconds=S       Length of the recording in seconds (default 60)\n"
               "     --rate=HZ         Samples per second of each device (default 100, at most %u)\n"
               "     --seed=N          Seed of the pseudo-random generators (default 1)\n"
               "     --start-ms=MS     Time of the first row, ms since the epoch\n"
               "                       (default %" PRIu64 ", 2018-01-10T00:00:00Z)\n"
               "     --rows=N          Stop after exactly N rows, whatever --seconds says\n"
               "     --output=FILE     Write the recording to FILE (default stdout)\n"
               "     --anomalies=FILE  Write the injected anomalies to FILE as CSV\n"
               "                       (deviceId,channel,kind,start_ms,end_ms,magnitude;\n"
               "                       end_ms is the last affected row, inclusive)\n",
               program_invocation_short_name, DEVICES_MAX, RATE_MAX, START_MS_DEFAULT);
}

/* A comma list of distinct kind names, in the order the devices should cycle through them. */
static int parse_kinds(const char *s, Options *o) {
        size_t n = 0;

        for (const char *p = s;;) {
                size_t len = strcspn(p, ",");
                Kind kind = _KIND_MAX;

                for (Kind i = 0; i < _KIND_MAX; i++)
                        if (strlen(kind_names[i]) == len && strncmp(p, kind_names[i], len) == 0)
                                kind = i;
                if (kind == _KIND_MAX) {
                        fprintf(stderr, "%s: unknown kind '%.*s' in --kinds; known: phone, ruuvi, sensortag\n",
                                program_invocation_short_name, (int) len, p);
                        return -EINVAL;
                }
                for (size_t i = 0; i < n; i++)
                        if (o->kinds[i] == kind) {
                                fprintf(stderr, "%s: kind '%s' given twice in --kinds\n",
                                        program_invocation_short_name, kind_names[kind]);
                                return -EINVAL;
                        }
                /* Distinct, so at most _KIND_MAX of them. */
                o->kinds[n++] = kind;

                if (p[len] == '\0')
                        break;
                p += len + 1;
        }

        o->n_kinds = n;
        return 0;
}

/* A plain decimal in [min, max]: no sign, no space, no suffix. */
static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        unsigned long long v;
        char *end;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0')
                return errno == ERANGE ? -ERANGE : -EINVAL;
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

static int parse_argv(int argc, char *argv[], Options *o) {
        enum {
                ARG_DEVICES = 0x100,
                ARG_KINDS,
                ARG_SECONDS,
                ARG_RATE,
                ARG_SEED,
                ARG_START_MS,
                ARG_ROWS,
                ARG_OUTPUT,
                ARG_ANOMALIES,
        };
        static const struct option options[] = {
                { "help",      no_argument,       NULL, 'h'           },
                { "devices",   required_argument, NULL, ARG_DEVICES   },
                { "kinds",     required_argument, NULL, ARG_KINDS     },
                { "seconds",   required_argument, NULL, ARG_SECONDS   },
                { "rate",      required_argument, NULL, ARG_RATE      },
                { "seed",      required_argument, NULL, ARG_SEED      },
                { "start-ms",  required_argument, NULL, ARG_START_MS  },
                { "rows",      required_argument, NULL, ARG_ROWS      },
                { "output",    required_argument, NULL, ARG_OUTPUT    },
                { "anomalies", required_argument, NULL, ARG_ANOMALIES },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                /* The numeric options: where the value goes and its allowed range. */
                uint64_t *target = NULL, min = 0, max = UINT64_MAX;

                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_DEVICES:
                        target = &o->devices, min = 1, max = DEVICES_MAX;
                        break;
                case ARG_KINDS:
                        if (parse_kinds(optarg, o) < 0)
                                return -EINVAL;
                        break;
                case ARG_SECONDS:
                        target = &o->seconds, min = 1, max = ROWS_MAX;
                        break;
                case ARG_RATE:
                        target = &o->rate, min = 1, max = RATE_MAX;
                        break;
                case ARG_SEED:
                        target = &o->seed;
                        break;
                case ARG_START_MS:
                        target = &o->start_ms, max = TIME_MS_MAX;
                        break;
                case ARG_ROWS:
                        target = &o->rows, min = 1, max = ROWS_MAX;
                        o->rows_set = true;
                        break;
                case ARG_OUTPUT:
                        o->output = optarg;
                        break;
                case ARG_ANOMALIES:
                        o->anomalies = optarg;
                        break;
                case '?':
                        fprintf(stderr, "Try '%s --help'.\n", program_invocation_short_name);
                        return -EINVAL;
                default:
                        abort();
                }

                if (target && parse_u64(optarg, min, max, target) < 0) {
                        /* Named from the table: getopt_long() also takes abbreviations. */
                        const char *name = "?";
                        for (size_t i = 0; options[i].name; i++)
                                if (options[i].val == c)
                                        name = options[i].name;
                        fprintf(stderr, "%s: --%s must be a whole number from %" PRIu64 " to %" PRIu64 ", not '%s'\n",
                                program_invocation_short_name, name, min, max, optarg);
                        return -EINVAL;
                }
        }

        if (optind < argc) {
                fprintf(stderr, "%s: unexpected argument: %s\n", program_invocation_short_name, argv[optind]);
                return -EINVAL;
        }
        if (o->anomalies && streq(o->anomalies, "-")) {
                fprintf(stderr, "%s: --anomalies needs a file name, not '-'\n", program_invocation_short_name);
                return -EINVAL;
        }
        if (o->output && o->anomalies && streq(o->output, o->anomalies)) {
                fprintf(stderr, "%s: --output and --anomalies name the same file: %s\n",
                        program_invocation_short_name, o->output);
                return -EINVAL;
        }

        if (!o->rows_set) {
                /* Each factor is bounded, so the product cannot wrap. */
                if (o->seconds * o->rate * o->devices > ROWS_MAX) {
                        fprintf(stderr, "%s: %" PRIu64 " s of %" PRIu64 " devices at %" PRIu64
                                " Hz exceeds %u rows; ask for less\n", program_invocation_short_name,
                                o->seconds, o->devices, o->rate, ROWS_MAX);
                        return -E2BIG;
                }
                o->rows = o->seconds * o->rate * o->devices;
        }

        /* Readers reject years past 9999, so the last row must stay inside it too. */
        if (sample_time_ms(o, (o->rows - 1) / o->devices, (o->rows - 1) % o->devices) > TIME_MS_MAX) {
                fprintf(stderr, "%s: the recording would run past 9999-12-31T23:59:59.999Z; start it earlier\n",
                        program_invocation_short_name);
                return -ERANGE;
        }

        return 1;
}

static void devices_freep(Device **p) {
        free(*p);
}

static void anomalies_freep(Anomaly **p) {
        free(*p);
}

static int run(const Options *o) {
        _cleanup_(devices_freep) Device *devices = NULL;
        _cleanup_(anomalies_freep) Anomaly *anomalies = NULL;
        /* Declared before the files, so they are closed before their temporary names go. */
        _cleanup_unlink_free_ char *tmp_output = NULL, *tmp_anomalies = NULL;
        _cleanup_output_close_ FILE *f_output = NULL, *f_anomalies = NULL;
        size_t n_anomalies = 0, n_allocated = 0;
        int r;

        devices = new0(Device, o->devices);
        if (!devices)
                return error_errno(-ENOMEM, "Out of memory");

        for (uint64_t k = 0; k < o->devices; k++) {
                Device *d = devices + k;
                Rng setup;

                /* Streams 2k and 2k+1: the set-up (id, signals, anomaly schedule) and the noise. */
                rng_seed(&setup, o->seed, 2 * k);
                rng_seed(&d->noise, o->seed, 2 * k + 1);

                device_setup(devices, k, o, &setup);
                d->n_samples = o->rows / o->devices + (k < o->rows % o->devices);

                r = device_schedule(d, (uint32_t) k, o, &setup, &anomalies, &n_anomalies, &n_allocated);
                if (r < 0)
                        return error_errno(r, "Failed to schedule anomalies: %m");
        }

        /* Open both before writing anything, so a bad --anomalies path fails fast. */
        r = output_open(o->output, &tmp_output, &f_output);
        if (r < 0)
                return error_errno(r, "Failed to create %s: %m", o->output);
        if (o->anomalies) {
                r = output_open(o->anomalies, &tmp_anomalies, &f_anomalies);
                if (r < 0)
                        return error_errno(r, "Failed to create %s: %m", o->anomalies);
        }

        r = write_recording(f_output, o, devices, anomalies);
        if (r < 0)
                return error_errno(r, "Failed to write the recording: %m");
        if (f_anomalies) {
                r = write_anomalies(f_anomalies, o, devices, anomalies, n_anomalies);
                if (r < 0)
                        return error_errno(r, "Failed to write the anomalies: %m");
        }

        r = output_finish(o->output, &tmp_output, &f_output);
        if (r < 0)
                return error_errno(r, "Failed to write %s: %m", o->output ?: "standard output");
        if (f_anomalies) {
                r = output_finish(o->anomalies, &tmp_anomalies, &f_anomalies);
                if (r < 0)
                        return error_errno(r, "Failed to write %s: %m", o->anomalies);
        }

        return 0;
}

int main(int argc, char *argv[]) {
        Options o = {
                .devices = 4,
                .seconds = 60,
                .rate = 100,
                .seed = 1,
                .start_ms = START_MS_DEFAULT,
                .kinds = { KIND_PHONE, KIND_RUUVI, KIND_SENSORTAG },
                .n_kinds = _KIND_MAX,
        };
        int r;

        r = parse_argv(argc, argv, &o);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        r = run(&o);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
