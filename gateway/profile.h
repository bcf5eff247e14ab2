/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Sensor profiles: what blegate knows about each family of BLE device it reads, as data plus
 * pure decoders. A profile says how a device is recognised (a manufacturer data key or a GATT
 * service), which GATT steps make it stream (reads, writes, subscriptions, in order), and for
 * every stream of bytes the decoder that turns one value into frames: a Reading's channels in
 * SI units plus the family's extra fields. Nothing here does I/O, allocates or logs, so the
 * daemon's links, "blegatectl decode", the tests and the fuzzer all run the same code; the
 * D-Bus glue walks the steps, this module only says what they are.
 *
 * Decoders trust nothing: every length is checked before a byte is read, and on error the
 * caller's frames are left untouched. Through a ProfileDecoder they return the number of
 * frames (>= 1; the families' own one-frame functions return 0), -EBADMSG for bytes that
 * are not a valid value of their stream, -EOPNOTSUPP for a recognised value that carries no
 * motion data (so the caller skips it quietly), -EPROTONOSUPPORT for a protocol version we
 * do not speak, -ENOBUFS when the caller's array is too small for the frames, -EINVAL for
 * bad settings.
 */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reading.h"

#define STANDARD_GRAVITY 9.80665 /* m/s² per g, as DESIGN.md converts */

#define PROFILE_VALUE_MAX 512  /* the longest attribute value ATT allows */
#define PROFILE_FRAMES_MAX 32  /* the most frames any decoder makes of one value */
#define PROFILE_FIELDS_MAX 10
#define PROFILE_TEXT_MAX 16

/* One extra value of a frame beyond the channels: temperature, battery, the tag's own MAC... */
typedef struct ProfileField {
        const char *name;            /* static, snake_case: the JSON key */
        bool valid;                  /* false: the sensor said "not available" */
        bool is_text;                /* text rather than number */
        double number;
        char text[PROFILE_TEXT_MAX]; /* NUL-terminated */
} ProfileField;

/* What one decoded value (or one sample of a batched value) yields. */
typedef struct ProfileFrame {
        /* Channels and values only. Device, type, time and seq are the caller's to set: the
         * decoder does not know the device id nor what "now" is. */
        Reading reading;
        /* The sensor's own sequence number (Ruuvi's measurement sequence, the phone's sample
         * counter; both 16-bit and wrapping), so the caller can drop a value heard twice. */
        bool has_sensor_seq;
        uint16_t sensor_seq;
        /* The sensor's own timestamp, µs since the epoch (phones); else use the receipt time. */
        bool has_sensor_time;
        uint64_t sensor_time_usec;
        size_t n_fields;
        ProfileField fields[PROFILE_FIELDS_MAX];
} ProfileFrame;

/* What the gateway asks of the devices it configures. Validated by the builders of the GATT
 * writes and by the decoders that depend on them (-EINVAL when out of range). */
typedef struct ProfileSettings {
        unsigned sensortag_range_g;   /* accelerometer range: 2, 4, 8 or 16 */
        unsigned sensortag_period_ms; /* 100..2550, in steps of 10 */
        unsigned thingy52_motion_hz;  /* 5..200 */
        unsigned phone_rate_hz;       /* 1..200 */
} ProfileSettings;

/* ±8 G is the SensorTag's own reset range: a dropped tag stays on scale. The SensorTag cannot
 * go faster than 10 Hz; the Thingy and phones stream at the 100 Hz design point. */
#define PROFILE_SETTINGS_DEFAULTS                       \
        ((const ProfileSettings) {                      \
                .sensortag_range_g = 8,                 \
                .sensortag_period_ms = 100,             \
                .thingy52_motion_hz = 100,              \
                .phone_rate_hz = 100,                   \
        })

/* Turns one value into at most n_ret frames; see the top of this file for the return values. */
typedef int (*ProfileDecodeFunc)(const ProfileSettings *settings, const uint8_t *data, size_t size,
                                 ProfileFrame *ret, size_t n_ret);

typedef struct ProfileDecoder {
        const char *name;          /* "thingy52-raw": what "blegatectl decode" calls it */
        const char *uuid;          /* the characteristic it decodes; NULL: manufacturer data */
        uint32_t channels;         /* every channel its frames may carry */
        size_t frames_max;         /* the most frames one value yields */
        const char *expect;        /* what a valid value looks like, for error messages */
        ProfileDecodeFunc decode;
} ProfileDecoder;

typedef enum ProfileStepType {
        PROFILE_STEP_IDENTIFY, /* ReadValue; identify() turns the value into the device id */
        PROFILE_STEP_CHECK,    /* ReadValue; check() must accept the value, else give up on the device */
        PROFILE_STEP_WRITE,    /* WriteValue (with response) of the bytes build() makes */
        PROFILE_STEP_NOTIFY,   /* subscribe; every value goes to decoder */
        _PROFILE_STEP_TYPE_MAX,
} ProfileStepType;

#define PROFILE_WRITE_MAX 16

/* One step of the GATT setup; only the member of its type is set. Steps run in order after
 * every ServicesResolved=true, since a reconnected sensor forgets its configuration. */
typedef struct ProfileStep {
        ProfileStepType type;
        const char *uuid; /* the characteristic, within the profile's service */
        int (*identify)(const uint8_t *data, size_t size, char ret[static DEVICE_ID_MAX + 1]);
        int (*check)(const uint8_t *data, size_t size);
        /* Writes at most PROFILE_WRITE_MAX bytes into buf; returns their number. */
        int (*build)(const ProfileSettings *settings, uint8_t buf[static PROFILE_WRITE_MAX]);
        const ProfileDecoder *decoder;
} ProfileStep;

typedef enum ProfileKind {
        PROFILE_RUUVI,
        PROFILE_SENSORTAG,
        PROFILE_THINGY52,
        PROFILE_PHONE,
        _PROFILE_KIND_MAX,
        _PROFILE_KIND_INVALID = -EINVAL,
} ProfileKind;

typedef struct Profile {
        ProfileKind kind;
        const char *name;                  /* the D-Bus Kind: "ruuvi", "sensortag", ... */
        uint16_t company_id;               /* manufacturer data key that identifies it, or 0 */
        const ProfileDecoder *advert;      /* decodes that manufacturer data; NULL: none */
        const char *service_uuid;          /* GATT primary service that identifies it, or NULL */
        const ProfileStep *steps;          /* GATT setup, in order */
        size_t n_steps;
} Profile;

const Profile *profile_get(ProfileKind kind);
const char *profile_kind_to_string(ProfileKind kind);
ProfileKind profile_kind_from_string(const char *s);
/* By the key of a ManufacturerData entry, or by a service UUID (any case); NULL if none. */
const Profile *profile_from_company_id(uint16_t company_id);
const Profile *profile_from_service_uuid(const char *uuid);

/* Every decoder of every profile (adverts, then notifications in table order): index 0.. until
 * NULL. By name ("thingy52-raw") or by characteristic UUID (any case); NULL if none. */
const ProfileDecoder *profile_decoder_get(size_t index);
const ProfileDecoder *profile_decoder_from_name(const char *name);
const ProfileDecoder *profile_decoder_from_uuid(const char *uuid);

/* Calls the decoder with settings (NULL: the defaults). */
int profile_decode(const ProfileDecoder *d, const ProfileSettings *settings, const uint8_t *data, size_t size,
                   ProfileFrame *ret, size_t n_ret);

/* For the decoders: an empty frame, and fields appended in the order they should print. */
void profile_frame_init(ProfileFrame *f);
void profile_frame_add_number(ProfileFrame *f, const char *name, double value, bool valid);
void profile_frame_add_text(ProfileFrame *f, const char *name, const char *text, bool valid);
const ProfileField *profile_frame_get_field(const ProfileFrame *f, const char *name);

/* Fixed-width integers from a byte buffer the caller has bounds-checked. */
static inline uint16_t profile_read_le16(const uint8_t *p) {
        return (uint16_t) (p[0] | p[1] << 8);
}

static inline uint16_t profile_read_be16(const uint8_t *p) {
        return (uint16_t) (p[0] << 8 | p[1]);
}

static inline uint32_t profile_read_le32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static inline uint64_t profile_read_le64(const uint8_t *p) {
        return (uint64_t) profile_read_le32(p) | (uint64_t) profile_read_le32(p + 4) << 32;
}

static inline void profile_write_le16(uint8_t *p, uint16_t v) {
        p[0] = v & 0xFF;
        p[1] = v >> 8;
}
