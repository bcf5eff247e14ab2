/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * TI CC2650 SensorTag, movement service (MPU-9250): one 18-byte notification carries gyro,
 * accelerometer and magnetometer. The accelerometer's scale depends on the range written into
 * the config characteristic, so the decoder takes that range as an argument.
 */

#include "profile.h"

#define SENSORTAG_SERVICE_UUID "f000aa80-0451-4000-b000-000000000000"
#define SENSORTAG_DATA_UUID    "f000aa81-0451-4000-b000-000000000000" /* read, notify; 18 bytes */
#define SENSORTAG_CONFIG_UUID  "f000aa82-0451-4000-b000-000000000000" /* read, write; u16 LE */
#define SENSORTAG_PERIOD_UUID  "f000aa83-0451-4000-b000-000000000000" /* read, write; u8 × 10 ms */

#define SENSORTAG_DATA_SIZE 18
#define SENSORTAG_CONFIG_SIZE 2

/* Config bits: gyro X Y Z, accel X Y Z, magnetometer. Wake-on-motion (0x80) stays off: with it
 * the tag stops sending after 10 s without motion, and a silent tag looks like a lost one. */
#define SENSORTAG_CONFIG_ALL_AXES 0x007F
#define SENSORTAG_PERIOD_MIN_MS 100
#define SENSORTAG_PERIOD_MAX_MS 2550

extern const ProfileDecoder profile_sensortag_decoder;
extern const Profile profile_sensortag;

/* range_g: the accelerometer range the tag was configured with (2, 4, 8 or 16); -EINVAL
 * otherwise. Returns 0 with gx gy gz (°/s), ax ay az (m/s²), mx my mz (µT). */
int profile_sensortag_decode(unsigned range_g, const uint8_t *data, size_t size, ProfileFrame *ret);

/* The config value that enables every axis at range_g, and the period byte for period_ms
 * (a multiple of 10 in SENSORTAG_PERIOD_MIN_MS..SENSORTAG_PERIOD_MAX_MS). -EINVAL if out of range. */
int profile_sensortag_config(unsigned range_g, uint8_t ret[static SENSORTAG_CONFIG_SIZE]);
int profile_sensortag_period(unsigned period_ms, uint8_t *ret);
