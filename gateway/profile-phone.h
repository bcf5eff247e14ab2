/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Phones: blegate's own GATT profile, since no standard one exists (docs/phone-profile.md is
 * the specification a phone app implements). The phone is the peripheral; it advertises the
 * service UUID, the gateway reads its identity and config, writes the config it wants, and
 * subscribes to the samples characteristic. One notification carries a batch of samples.
 */

#include "profile.h"

/* Generated once as a random (v4) UUID; bytes 2-3 number the service and its characteristics. */
#define PHONE_SERVICE_UUID  "34ba0100-423b-4cae-b2f8-fcf1b6678a74"
#define PHONE_SAMPLES_UUID  "34ba0101-423b-4cae-b2f8-fcf1b6678a74" /* notify */
#define PHONE_IDENTITY_UUID "34ba0102-423b-4cae-b2f8-fcf1b6678a74" /* read */
#define PHONE_CONFIG_UUID   "34ba0103-423b-4cae-b2f8-fcf1b6678a74" /* read, write */

#define PHONE_VERSION 1

/* Notification: header, then 1..PHONE_SAMPLES_MAX samples. */
#define PHONE_HEADER_SIZE 12
#define PHONE_SAMPLES_MAX 32

/* Flags of the header, and the groups of the config characteristic. */
#define PHONE_FLAG_ACCEL        0x01 /* ax ay az */
#define PHONE_FLAG_GYRO         0x02 /* gx gy gz */
#define PHONE_FLAG_ORIENTATION  0x04 /* oa ob og */
#define PHONE_FLAG_LINEAR       0x08 /* acceleration without gravity */
#define PHONE_FLAGS_GROUPS      0x07
#define PHONE_FLAGS_KNOWN       0x0F

/* Fixed scales: a raw int16 is the value times these. */
#define PHONE_ACCEL_PER_MS2     100 /* 0.01 m/s², ±327.67 m/s² (±33 g) */
#define PHONE_GYRO_PER_DPS      10  /* 0.1 °/s, ±3276.7 °/s */
#define PHONE_ANGLE_PER_DEGREE  50  /* 0.02°, ±655.34° */
#define PHONE_OFFSET_USEC       100 /* unit of a sample's time offset */

#define PHONE_CONFIG_SIZE 4
#define PHONE_RATE_MIN_HZ 1
#define PHONE_RATE_MAX_HZ 200

extern const ProfileDecoder profile_phone_decoder;
extern const Profile profile_phone;

/* One notification into up to n_ret frames, one per sample, each with its own sensor_seq and
 * sensor_time_usec (also as the fields "sequence" and "time_usec", plus "linear_acceleration").
 * Returns the number of frames; -EPROTONOSUPPORT for another protocol version, -ENOBUFS when
 * n_ret is too small (PHONE_SAMPLES_MAX always suffices), -EBADMSG for anything malformed. */
int profile_phone_decode(const uint8_t *data, size_t size, ProfileFrame *ret, size_t n_ret);

/* The identity characteristic: the device id, 1..36 bytes of [A-Za-z0-9-_.]. -EBADMSG otherwise. */
int profile_phone_identity(const uint8_t *data, size_t size, char ret[static DEVICE_ID_MAX + 1]);

/* The config characteristic as read: -EPROTONOSUPPORT if the phone does not speak
 * PHONE_VERSION, -EOPNOTSUPP if it has no sensor to offer, -EBADMSG if malformed. */
int profile_phone_check_config(const uint8_t *data, size_t size);

/* The config the gateway writes: PHONE_VERSION, every group, linear acceleration preferred,
 * rate_hz (PHONE_RATE_MIN_HZ..PHONE_RATE_MAX_HZ, else -EINVAL). */
int profile_phone_config(unsigned rate_hz, uint8_t ret[static PHONE_CONFIG_SIZE]);
