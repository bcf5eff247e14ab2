/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The reading: what every source (BLE profiles, the replay of a recording) produces and every
 * later stage (detector, store, sinks) consumes. One reading is one instant of one device, with
 * a value for each channel it carries, in SI units as in DESIGN.md "Readings". A channel that
 * the device did not report is absent from the mask, never zero.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Watson IoT allows device ids and types of [A-Za-z0-9-_.]{1,36}; we keep to that everywhere. */
#define DEVICE_ID_MAX 36

typedef enum Channel {
        CHANNEL_AX, /* acceleration, m/s² */
        CHANNEL_AY,
        CHANNEL_AZ,
        CHANNEL_GX, /* angular rate, °/s */
        CHANNEL_GY,
        CHANNEL_GZ,
        CHANNEL_MX, /* magnetic field, µT */
        CHANNEL_MY,
        CHANNEL_MZ,
        CHANNEL_OA, /* orientation alpha/beta/gamma, degrees */
        CHANNEL_OB,
        CHANNEL_OG,
        _CHANNEL_MAX,
        _CHANNEL_INVALID = -22, /* -EINVAL */
} Channel;

#define CHANNEL_BIT(c) (UINT32_C(1) << (c))
#define CHANNELS_ALL (CHANNEL_BIT(_CHANNEL_MAX) - 1)

typedef struct Reading {
        char device[DEVICE_ID_MAX + 1]; /* stable id, see device_id_is_valid() */
        char type[DEVICE_ID_MAX + 1];   /* device type ("simulator", "ruuvi", ...); may be empty */
        uint64_t time_usec;             /* wall clock, µs since the epoch */
        uint64_t seq;                   /* per device, increasing */
        uint32_t channels;              /* mask of CHANNEL_BIT()s with a value */
        double values[_CHANNEL_MAX];
} Reading;

const char *channel_to_string(Channel c);
Channel channel_from_string(const char *s);
Channel channel_from_substring(const char *s, size_t n);

bool device_id_is_valid(const char *s, size_t n);

static inline bool reading_has(const Reading *r, Channel c) {
        return r->channels & CHANNEL_BIT(c);
}

static inline void reading_set(Reading *r, Channel c, double v) {
        r->values[c] = v;
        r->channels |= CHANNEL_BIT(c);
}
