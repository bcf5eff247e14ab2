/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Nordic Thingy:52 motion service (Nordic's firmware architecture page and m_motion.c).
 * Everything is packed little-endian fixed point:
 *
 *   raw (0406)    int16 accel X Y Z in g as Q6.10 (÷1024), gyro X Y Z in °/s as Q11.5 (÷32),
 *                 compass X Y Z in µT as Q12.4 (÷16)
 *   Euler (0407)  int32 roll, pitch, yaw in degrees as Q16.16 (÷65536)
 *
 * The Euler angles map onto the orientation channels the seed's phones send (W3C
 * DeviceOrientation, where alpha turns about the device's Z axis, beta about X, gamma about Y)
 * by axis, not by name: the firmware's roll is the turn about the board's X axis and its pitch
 * about Y (its own debug output says "roll(x) pitch(y) yaw(z)"; the names follow InvenSense's
 * library, not a phone's). So roll -> ob, pitch -> og, yaw -> oa, and a Thingy and a phone
 * tilted the same way move the same channel. The angles pass unchanged, in the Thingy's own
 * ranges (yaw −180..180 where alpha is 0..360): re-wrapping would only move the discontinuity,
 * and the detector compares each device with itself.
 *
 * Setup, after every connection: write the config (motion frequency), then subscribe to raw
 * data and Euler angles. The two streams are separate notifications, so separate frames.
 */

#include "macro.h"
#include "profile-thingy52.h"

int profile_thingy52_decode_raw(const uint8_t *data, size_t size, ProfileFrame *ret) {
        if (size != THINGY52_RAW_SIZE)
                return -EBADMSG;

        profile_frame_init(ret);
        for (size_t i = 0; i < 3; i++) {
                int16_t accel = (int16_t) profile_read_le16(data + 2 * i),
                        gyro = (int16_t) profile_read_le16(data + 6 + 2 * i),
                        compass = (int16_t) profile_read_le16(data + 12 + 2 * i);

                reading_set(&ret->reading, CHANNEL_AX + i, accel / 1024.0 * STANDARD_GRAVITY);
                reading_set(&ret->reading, CHANNEL_GX + i, gyro / 32.0);
                reading_set(&ret->reading, CHANNEL_MX + i, compass / 16.0);
        }
        return 0;
}

int profile_thingy52_decode_euler(const uint8_t *data, size_t size, ProfileFrame *ret) {
        static const Channel channels[] = { CHANNEL_OB, CHANNEL_OG, CHANNEL_OA }; /* roll, pitch, yaw */

        if (size != THINGY52_EULER_SIZE)
                return -EBADMSG;

        profile_frame_init(ret);
        for (size_t i = 0; i < ELEMENTSOF(channels); i++)
                reading_set(&ret->reading, channels[i], (int32_t) profile_read_le32(data + 4 * i) / 65536.0);
        return 0;
}

int profile_thingy52_config(unsigned motion_hz, uint8_t ret[static THINGY52_CONFIG_SIZE]) {
        if (motion_hz < THINGY52_MOTION_HZ_MIN || motion_hz > THINGY52_MOTION_HZ_MAX)
                return -EINVAL;

        profile_write_le16(ret + 0, THINGY52_DEFAULT_STEP_INTERVAL_MS);
        profile_write_le16(ret + 2, THINGY52_DEFAULT_TEMP_COMP_INTERVAL_MS);
        profile_write_le16(ret + 4, THINGY52_DEFAULT_MAG_COMP_INTERVAL_MS);
        profile_write_le16(ret + 6, motion_hz);
        ret[8] = THINGY52_DEFAULT_WAKE_ON_MOTION;
        return 0;
}

static int thingy52_decode_raw(const ProfileSettings *settings, const uint8_t *data, size_t size,
                               ProfileFrame *ret, size_t n_ret) {
        int k;

        if (n_ret < 1)
                return -ENOBUFS;
        k = profile_thingy52_decode_raw(data, size, ret);
        return k < 0 ? k : 1;
}

static int thingy52_decode_euler(const ProfileSettings *settings, const uint8_t *data, size_t size,
                                 ProfileFrame *ret, size_t n_ret) {
        int k;

        if (n_ret < 1)
                return -ENOBUFS;
        k = profile_thingy52_decode_euler(data, size, ret);
        return k < 0 ? k : 1;
}

static int build_config(const ProfileSettings *settings, uint8_t buf[static PROFILE_WRITE_MAX]) {
        int k = profile_thingy52_config(settings->thingy52_motion_hz, buf);

        return k < 0 ? k : THINGY52_CONFIG_SIZE;
}

const ProfileDecoder profile_thingy52_raw_decoder = {
        .name = "thingy52-raw",
        .uuid = THINGY52_RAW_UUID,
        .channels = CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY) | CHANNEL_BIT(CHANNEL_AZ) |
                    CHANNEL_BIT(CHANNEL_GX) | CHANNEL_BIT(CHANNEL_GY) | CHANNEL_BIT(CHANNEL_GZ) |
                    CHANNEL_BIT(CHANNEL_MX) | CHANNEL_BIT(CHANNEL_MY) | CHANNEL_BIT(CHANNEL_MZ),
        .frames_max = 1,
        .expect = "18 bytes: nine little-endian int16, accel X Y Z (Q6.10 g), gyro X Y Z (Q11.5 °/s), "
                  "compass X Y Z (Q12.4 µT) (the value of raw data characteristic 0406)",
        .decode = thingy52_decode_raw,
};

const ProfileDecoder profile_thingy52_euler_decoder = {
        .name = "thingy52-euler",
        .uuid = THINGY52_EULER_UUID,
        .channels = CHANNEL_BIT(CHANNEL_OA) | CHANNEL_BIT(CHANNEL_OB) | CHANNEL_BIT(CHANNEL_OG),
        .frames_max = 1,
        .expect = "12 bytes: three little-endian int32, roll, pitch, yaw in Q16.16 degrees "
                  "(the value of Euler characteristic 0407)",
        .decode = thingy52_decode_euler,
};

static const ProfileStep thingy52_steps[] = {
        { .type = PROFILE_STEP_WRITE, .uuid = THINGY52_CONFIG_UUID, .build = build_config },
        { .type = PROFILE_STEP_NOTIFY, .uuid = THINGY52_RAW_UUID, .decoder = &profile_thingy52_raw_decoder },
        { .type = PROFILE_STEP_NOTIFY, .uuid = THINGY52_EULER_UUID, .decoder = &profile_thingy52_euler_decoder },
};

const Profile profile_thingy52 = {
        .kind = PROFILE_THINGY52,
        .name = "thingy52",
        .service_uuid = THINGY52_SERVICE_UUID,
        .steps = thingy52_steps,
        .n_steps = ELEMENTSOF(thingy52_steps),
};
