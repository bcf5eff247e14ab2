/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * TI CC2650 SensorTag movement service (TI's SensorTag User's Guide and its firmware's
 * sensortag_mov.c). Data is nine little-endian int16: gyro X Y Z, accel X Y Z, mag X Y Z.
 * Gyro: raw × 500 / 65536 °/s (±250 °/s; TI's own C code divides by 131, we use the exact
 * scale). Accel: raw × R / 32768 g for the configured range R. Mag: raw µT. Every divisor is a
 * power of two, so the values in g and °/s are exact before the conversion to m/s².
 *
 * Setup, after every connection: write the period, write the config (all axes, the range),
 * then subscribe to the data. The tag forgets both on disconnect.
 */

#include "macro.h"
#include "profile-sensortag.h"

static int range_bits(unsigned range_g) {
        switch (range_g) {
        case 2:
                return 0;
        case 4:
                return 1;
        case 8:
                return 2;
        case 16:
                return 3;
        default:
                return -EINVAL;
        }
}

int profile_sensortag_decode(unsigned range_g, const uint8_t *data, size_t size, ProfileFrame *ret) {
        int16_t raw[9];

        if (range_bits(range_g) < 0)
                return -EINVAL;
        if (size != SENSORTAG_DATA_SIZE)
                return -EBADMSG;

        for (size_t i = 0; i < 9; i++)
                raw[i] = (int16_t) profile_read_le16(data + 2 * i);

        profile_frame_init(ret);
        for (size_t i = 0; i < 3; i++) {
                reading_set(&ret->reading, CHANNEL_GX + i, raw[i] * 500.0 / 65536);
                reading_set(&ret->reading, CHANNEL_AX + i, raw[3 + i] * (double) range_g / 32768 * STANDARD_GRAVITY);
                reading_set(&ret->reading, CHANNEL_MX + i, raw[6 + i]);
        }
        return 0;
}

int profile_sensortag_config(unsigned range_g, uint8_t ret[static SENSORTAG_CONFIG_SIZE]) {
        int bits = range_bits(range_g);

        if (bits < 0)
                return bits;
        profile_write_le16(ret, SENSORTAG_CONFIG_ALL_AXES | bits << 8);
        return 0;
}

int profile_sensortag_period(unsigned period_ms, uint8_t *ret) {
        if (period_ms < SENSORTAG_PERIOD_MIN_MS || period_ms > SENSORTAG_PERIOD_MAX_MS || period_ms % 10 != 0)
                return -EINVAL;
        *ret = period_ms / 10;
        return 0;
}

static int sensortag_decode(const ProfileSettings *settings, const uint8_t *data, size_t size, ProfileFrame *ret,
                            size_t n_ret) {
        int k;

        if (n_ret < 1)
                return -ENOBUFS;
        k = profile_sensortag_decode(settings->sensortag_range_g, data, size, ret);
        return k < 0 ? k : 1;
}

static int build_config(const ProfileSettings *settings, uint8_t buf[static PROFILE_WRITE_MAX]) {
        int k = profile_sensortag_config(settings->sensortag_range_g, buf);

        return k < 0 ? k : SENSORTAG_CONFIG_SIZE;
}

static int build_period(const ProfileSettings *settings, uint8_t buf[static PROFILE_WRITE_MAX]) {
        int k = profile_sensortag_period(settings->sensortag_period_ms, buf);

        return k < 0 ? k : 1;
}

const ProfileDecoder profile_sensortag_decoder = {
        .name = "sensortag",
        .uuid = SENSORTAG_DATA_UUID,
        .channels = CHANNEL_BIT(CHANNEL_GX) | CHANNEL_BIT(CHANNEL_GY) | CHANNEL_BIT(CHANNEL_GZ) |
                    CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY) | CHANNEL_BIT(CHANNEL_AZ) |
                    CHANNEL_BIT(CHANNEL_MX) | CHANNEL_BIT(CHANNEL_MY) | CHANNEL_BIT(CHANNEL_MZ),
        .frames_max = 1,
        .expect = "18 bytes: nine little-endian int16, gyro X Y Z, accel X Y Z, mag X Y Z "
                  "(the value of movement data characteristic AA81)",
        .decode = sensortag_decode,
};

static const ProfileStep sensortag_steps[] = {
        { .type = PROFILE_STEP_WRITE, .uuid = SENSORTAG_PERIOD_UUID, .build = build_period },
        { .type = PROFILE_STEP_WRITE, .uuid = SENSORTAG_CONFIG_UUID, .build = build_config },
        { .type = PROFILE_STEP_NOTIFY, .uuid = SENSORTAG_DATA_UUID, .decoder = &profile_sensortag_decoder },
};

const Profile profile_sensortag = {
        .kind = PROFILE_SENSORTAG,
        .name = "sensortag",
        .service_uuid = SENSORTAG_SERVICE_UUID,
        .steps = sensortag_steps,
        .n_steps = ELEMENTSOF(sensortag_steps),
};
