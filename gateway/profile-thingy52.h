/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Nordic Thingy:52, motion service (Thingy Motion Service, base UUID
 * EF68xxxx-9B35-4933-9B10-52FFA9740042): two notify streams, raw data (accelerometer, gyro,
 * compass) and Euler angles, at the motion frequency written into the config characteristic.
 */

#include "profile.h"

#define THINGY52_SERVICE_UUID "ef680400-9b35-4933-9b10-52ffa9740042"
#define THINGY52_CONFIG_UUID  "ef680401-9b35-4933-9b10-52ffa9740042" /* read, write; 9 bytes */
#define THINGY52_RAW_UUID     "ef680406-9b35-4933-9b10-52ffa9740042" /* notify; 18 bytes */
#define THINGY52_EULER_UUID   "ef680407-9b35-4933-9b10-52ffa9740042" /* notify; 12 bytes */

#define THINGY52_CONFIG_SIZE 9
#define THINGY52_RAW_SIZE 18
#define THINGY52_EULER_SIZE 12

#define THINGY52_MOTION_HZ_MIN 5
#define THINGY52_MOTION_HZ_MAX 200

/* The firmware's defaults (m_motion.h, MOTION_DEFAULT_CONFIG) for what we do not change. */
#define THINGY52_DEFAULT_STEP_INTERVAL_MS 1000
#define THINGY52_DEFAULT_TEMP_COMP_INTERVAL_MS 500
#define THINGY52_DEFAULT_MAG_COMP_INTERVAL_MS 500
#define THINGY52_DEFAULT_WAKE_ON_MOTION 1

extern const ProfileDecoder profile_thingy52_raw_decoder;
extern const ProfileDecoder profile_thingy52_euler_decoder;
extern const Profile profile_thingy52;

/* Raw: returns 0 with ax ay az (m/s²), gx gy gz (°/s), mx my mz (µT). */
int profile_thingy52_decode_raw(const uint8_t *data, size_t size, ProfileFrame *ret);
/* Euler: returns 0 with ob = roll (about X), og = pitch (about Y), oa = yaw (about Z), in degrees. */
int profile_thingy52_decode_euler(const uint8_t *data, size_t size, ProfileFrame *ret);

/* The config value with motion_hz (THINGY52_MOTION_HZ_MIN..MAX, else -EINVAL) and the
 * firmware's defaults for the step counter, the compensation intervals and wake-on-motion. */
int profile_thingy52_config(unsigned motion_hz, uint8_t ret[static THINGY52_CONFIG_SIZE]);
