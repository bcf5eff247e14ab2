/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Thingy:52 motion service with vectors derived from Nordic's layout: raw data in Q6.10 g,
 * Q11.5 °/s and Q12.4 µT; Euler angles in Q16.16 degrees on the orientation channels by axis;
 * the config written to set the motion frequency; the GATT setup as data. */

#include "profile-thingy52.h"
#include "tests.h"

#define G STANDARD_GRAVITY

static void test_raw(void) {
        /* reference/ble.md's derived example on X (00 04, 20 00, 10 00: 1 g, 1 °/s, 1 µT), and
         * the extremes and fractions on Y and Z. */
        static const uint8_t data[THINGY52_RAW_SIZE] = {
                0x00, 0x04, 0x00, 0xFC, 0x00, 0x02, /* accel 1024, -1024, 512 */
                0x20, 0x00, 0xE0, 0xFF, 0xFF, 0x7F, /* gyro 32, -32, 32767 */
                0x10, 0x00, 0x00, 0x80, 0x08, 0x00, /* compass 16, -32768, 8 */
        };
        ProfileFrame f;

        ASSERT_OK(profile_thingy52_decode_raw(data, sizeof(data), &f));
        ASSERT_EQ(f.reading.channels, profile_thingy52_raw_decoder.channels);
        ASSERT_TRUE(f.reading.values[CHANNEL_AX] == 1.0 * G);
        ASSERT_TRUE(f.reading.values[CHANNEL_AY] == -1.0 * G);
        ASSERT_TRUE(f.reading.values[CHANNEL_AZ] == 0.5 * G);
        ASSERT_TRUE(f.reading.values[CHANNEL_GX] == 1);
        ASSERT_TRUE(f.reading.values[CHANNEL_GY] == -1);
        ASSERT_TRUE(f.reading.values[CHANNEL_GZ] == 1023.96875);
        ASSERT_TRUE(f.reading.values[CHANNEL_MX] == 1);
        ASSERT_TRUE(f.reading.values[CHANNEL_MY] == -2048);
        ASSERT_TRUE(f.reading.values[CHANNEL_MZ] == 0.5);
        ASSERT_EQ(f.n_fields, 0);
}

static void test_euler(void) {
        static const uint8_t data[THINGY52_EULER_SIZE] = {
                0x00, 0x80, 0x01, 0x00, /* roll 1.5° */
                0x00, 0x00, 0xFF, 0xFF, /* pitch -1° */
                0x00, 0x80, 0x4C, 0xFF, /* yaw -179.5° */
        };
        ProfileFrame f;

        ASSERT_OK(profile_thingy52_decode_euler(data, sizeof(data), &f));
        ASSERT_EQ(f.reading.channels, CHANNEL_BIT(CHANNEL_OA) | CHANNEL_BIT(CHANNEL_OB) | CHANNEL_BIT(CHANNEL_OG));
        /* By axis, as W3C DeviceOrientation: roll turns about X (beta), pitch about Y (gamma),
         * yaw about Z (alpha). */
        ASSERT_TRUE(f.reading.values[CHANNEL_OB] == 1.5);
        ASSERT_TRUE(f.reading.values[CHANNEL_OG] == -1);
        ASSERT_TRUE(f.reading.values[CHANNEL_OA] == -179.5);

        /* The int32 extremes: no overflow, no clipping. */
        {
                static const uint8_t extremes[THINGY52_EULER_SIZE] = {
                        0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x00, 0x00, 0x80, 0x01, 0x00, 0x00, 0x00,
                };

                ASSERT_OK(profile_thingy52_decode_euler(extremes, sizeof(extremes), &f));
                ASSERT_TRUE(f.reading.values[CHANNEL_OB] == INT32_MAX / 65536.0);
                ASSERT_TRUE(f.reading.values[CHANNEL_OG] == -32768);
                ASSERT_TRUE(f.reading.values[CHANNEL_OA] == 1 / 65536.0);
        }
}

static void test_errors(void) {
        uint8_t data[THINGY52_RAW_SIZE + 2] = {};
        ProfileFrame f;

        for (size_t n = 0; n <= sizeof(data); n++) {
                if (n != THINGY52_RAW_SIZE)
                        ASSERT_ERROR(profile_thingy52_decode_raw(data, n, &f), EBADMSG);
                if (n != THINGY52_EULER_SIZE)
                        ASSERT_ERROR(profile_thingy52_decode_euler(data, n, &f), EBADMSG);
        }
        ASSERT_ERROR(profile_thingy52_decode_raw(NULL, 0, &f), EBADMSG);
        ASSERT_ERROR(profile_thingy52_decode_euler(NULL, 0, &f), EBADMSG);
}

static void test_config(void) {
        /* Nordic's defaults (1000 ms steps, 500 ms temperature and magnetometer compensation,
         * wake-on-motion on) with the motion frequency we choose. */
        static const uint8_t expected[THINGY52_CONFIG_SIZE] = { 0xE8, 0x03, 0xF4, 0x01, 0xF4, 0x01, 0x64, 0x00, 0x01 };
        uint8_t buf[THINGY52_CONFIG_SIZE];

        ASSERT_OK(profile_thingy52_config(100, buf));
        ASSERT_TRUE(memcmp(buf, expected, sizeof(buf)) == 0);
        ASSERT_OK(profile_thingy52_config(5, buf));
        ASSERT_EQ(profile_read_le16(buf + 6), 5);
        ASSERT_OK(profile_thingy52_config(200, buf));
        ASSERT_EQ(profile_read_le16(buf + 6), 200);
        ASSERT_ERROR(profile_thingy52_config(4, buf), EINVAL);
        ASSERT_ERROR(profile_thingy52_config(201, buf), EINVAL);
        ASSERT_ERROR(profile_thingy52_config(0, buf), EINVAL);
}

static void test_gatt_setup(void) {
        ProfileSettings settings = PROFILE_SETTINGS_DEFAULTS;
        const Profile *p = profile_from_service_uuid(THINGY52_SERVICE_UUID);
        uint8_t buf[PROFILE_WRITE_MAX], raw[THINGY52_RAW_SIZE] = { 0x00, 0x04 };
        ProfileFrame f;

        ASSERT_TRUE(p == &profile_thingy52);
        ASSERT_TRUE(profile_get(PROFILE_THINGY52) == p);
        ASSERT_EQ(profile_kind_from_string("thingy52"), PROFILE_THINGY52);
        ASSERT_EQ(p->n_steps, 3);

        ASSERT_EQ(p->steps[0].type, PROFILE_STEP_WRITE);
        ASSERT_STREQ(p->steps[0].uuid, THINGY52_CONFIG_UUID);
        ASSERT_EQ(p->steps[0].build(&settings, buf), THINGY52_CONFIG_SIZE);
        ASSERT_EQ(profile_read_le16(buf + 6), 100);
        settings.thingy52_motion_hz = 1000;
        ASSERT_ERROR(p->steps[0].build(&settings, buf), EINVAL);

        ASSERT_EQ(p->steps[1].type, PROFILE_STEP_NOTIFY);
        ASSERT_TRUE(p->steps[1].decoder == &profile_thingy52_raw_decoder);
        ASSERT_EQ(p->steps[2].type, PROFILE_STEP_NOTIFY);
        ASSERT_TRUE(p->steps[2].decoder == &profile_thingy52_euler_decoder);

        ASSERT_TRUE(profile_decoder_from_name("thingy52-raw") == &profile_thingy52_raw_decoder);
        ASSERT_TRUE(profile_decoder_from_name("thingy52-euler") == &profile_thingy52_euler_decoder);
        ASSERT_TRUE(profile_decoder_from_name("thingy52") == NULL);
        ASSERT_TRUE(profile_decoder_from_uuid("EF680407-9B35-4933-9B10-52FFA9740042") == &profile_thingy52_euler_decoder);
        ASSERT_TRUE(profile_decoder_from_uuid("ef680404-9b35-4933-9b10-52ffa9740042") == NULL);

        ASSERT_EQ(profile_decode(&profile_thingy52_raw_decoder, NULL, raw, sizeof(raw), &f, 1), 1);
        ASSERT_TRUE(f.reading.values[CHANNEL_AX] == G);
        ASSERT_ERROR(profile_decode(&profile_thingy52_euler_decoder, NULL, raw, sizeof(raw), &f, 1), EBADMSG);
        ASSERT_ERROR(profile_decode(&profile_thingy52_raw_decoder, NULL, raw, sizeof(raw), &f, 0), ENOBUFS);
}

int main(void) {
        test_raw();
        test_euler();
        test_errors();
        test_config();
        test_gatt_setup();
        return EXIT_SUCCESS;
}
