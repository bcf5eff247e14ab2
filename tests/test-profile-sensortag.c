/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* SensorTag CC2650 movement data with vectors derived from TI's layout: TI's gyro scale
 * (65536 / 500 per °/s), the accelerometer at each of the four ranges, the magnetometer in µT;
 * the config and period values written to the tag; the GATT setup as data. */

#include "profile-sensortag.h"
#include "tests.h"

#define G STANDARD_GRAVITY

/* gyro X Y Z, accel X Y Z, mag X Y Z, little-endian int16 */
static void encode(const int16_t v[static 9], uint8_t buf[static SENSORTAG_DATA_SIZE]) {
        for (size_t i = 0; i < 9; i++)
                profile_write_le16(buf + 2 * i, (uint16_t) v[i]);
}

static void test_ranges(void) {
        static const unsigned ranges[] = { 2, 4, 8, 16 };
        /* The derived example of reference/ble.md: accel bytes 00 10 = 4096. */
        static const uint8_t data[SENSORTAG_DATA_SIZE] = {
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x10, 0x00, 0xF0, 0xFF, 0x7F,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        };

        for (size_t i = 0; i < ELEMENTSOF(ranges); i++) {
                unsigned r = ranges[i];
                ProfileFrame f;

                ASSERT_OK(profile_sensortag_decode(r, data, sizeof(data), &f));
                ASSERT_EQ(f.reading.channels, profile_sensortag_decoder.channels);
                /* raw × R / 32768 g: 4096 is R/8 g, so 0.5 g at ±4 G and 1 g at ±8 G. */
                ASSERT_CLOSE(f.reading.values[CHANNEL_AX], r / 8.0 * G, 1e-15);
                ASSERT_CLOSE(f.reading.values[CHANNEL_AY], -(r / 8.0) * G, 1e-15);
                ASSERT_CLOSE(f.reading.values[CHANNEL_AZ], 32767.0 * r / 32768 * G, 1e-15);
        }
}

static void test_gyro_and_mag(void) {
        static const int16_t raw[9] = { 131, -32768, 32767, 0, 0, 0, 304, -4900, 4900 };
        uint8_t data[SENSORTAG_DATA_SIZE];
        ProfileFrame f;

        encode(raw, data);
        ASSERT_OK(profile_sensortag_decode(2, data, sizeof(data), &f));
        /* TI's scale: 65536 / 500 = 131.072 raw per °/s, so ±250 °/s full scale. */
        ASSERT_TRUE(f.reading.values[CHANNEL_GX] == 131 * 500.0 / 65536);
        ASSERT_CLOSE(f.reading.values[CHANNEL_GX], 131 / 131.072, 1e-15);
        ASSERT_TRUE(f.reading.values[CHANNEL_GY] == -250);
        ASSERT_TRUE(f.reading.values[CHANNEL_GZ] == 249.99237060546875);
        ASSERT_TRUE(f.reading.values[CHANNEL_AX] == 0);
        ASSERT_TRUE(f.reading.values[CHANNEL_MX] == 304);
        ASSERT_TRUE(f.reading.values[CHANNEL_MY] == -4900);
        ASSERT_TRUE(f.reading.values[CHANNEL_MZ] == 4900);
        ASSERT_EQ(f.n_fields, 0);
        ASSERT_FALSE(f.has_sensor_seq);
}

static void test_errors(void) {
        uint8_t data[SENSORTAG_DATA_SIZE + 2] = {};
        ProfileFrame f;

        for (size_t n = 0; n <= sizeof(data); n++)
                if (n != SENSORTAG_DATA_SIZE)
                        ASSERT_ERROR(profile_sensortag_decode(8, data, n, &f), EBADMSG);
        ASSERT_ERROR(profile_sensortag_decode(8, NULL, 0, &f), EBADMSG);

        for (unsigned r = 0; r <= 32; r++)
                if (r != 2 && r != 4 && r != 8 && r != 16)
                        ASSERT_ERROR(profile_sensortag_decode(r, data, SENSORTAG_DATA_SIZE, &f), EINVAL);
}

static void test_config_and_period(void) {
        static const struct {
                unsigned range;
                uint8_t expected[2];
        } configs[] = {
                { 2, { 0x7F, 0x00 } }, { 4, { 0x7F, 0x01 } }, { 8, { 0x7F, 0x02 } }, { 16, { 0x7F, 0x03 } },
        };
        uint8_t buf[SENSORTAG_CONFIG_SIZE], period;

        for (size_t i = 0; i < ELEMENTSOF(configs); i++) {
                ASSERT_OK(profile_sensortag_config(configs[i].range, buf));
                ASSERT_TRUE(memcmp(buf, configs[i].expected, sizeof(buf)) == 0);
        }
        ASSERT_ERROR(profile_sensortag_config(0, buf), EINVAL);
        ASSERT_ERROR(profile_sensortag_config(3, buf), EINVAL);
        ASSERT_ERROR(profile_sensortag_config(32, buf), EINVAL);

        ASSERT_OK(profile_sensortag_period(100, &period));
        ASSERT_EQ(period, 0x0A);
        ASSERT_OK(profile_sensortag_period(1000, &period));
        ASSERT_EQ(period, 0x64);
        ASSERT_OK(profile_sensortag_period(2550, &period));
        ASSERT_EQ(period, 0xFF);
        ASSERT_ERROR(profile_sensortag_period(90, &period), EINVAL);
        ASSERT_ERROR(profile_sensortag_period(2560, &period), EINVAL);
        ASSERT_ERROR(profile_sensortag_period(105, &period), EINVAL);
}

static void test_gatt_setup(void) {
        ProfileSettings settings = PROFILE_SETTINGS_DEFAULTS;
        const Profile *p = profile_from_service_uuid("F000AA80-0451-4000-B000-000000000000");
        uint8_t buf[PROFILE_WRITE_MAX], data[SENSORTAG_DATA_SIZE] = { [6] = 0x00, [7] = 0x10 };
        ProfileFrame f;

        ASSERT_TRUE(p == &profile_sensortag);
        ASSERT_TRUE(profile_get(PROFILE_SENSORTAG) == p);
        ASSERT_EQ(profile_kind_from_string("sensortag"), PROFILE_SENSORTAG);
        ASSERT_TRUE(p->advert == NULL);
        ASSERT_EQ(p->n_steps, 3);

        /* Period, then config, then notifications. */
        ASSERT_EQ(p->steps[0].type, PROFILE_STEP_WRITE);
        ASSERT_STREQ(p->steps[0].uuid, SENSORTAG_PERIOD_UUID);
        ASSERT_EQ(p->steps[0].build(&settings, buf), 1);
        ASSERT_EQ(buf[0], 0x0A);

        ASSERT_EQ(p->steps[1].type, PROFILE_STEP_WRITE);
        ASSERT_STREQ(p->steps[1].uuid, SENSORTAG_CONFIG_UUID);
        ASSERT_EQ(p->steps[1].build(&settings, buf), 2);
        ASSERT_EQ(buf[0], 0x7F);
        ASSERT_EQ(buf[1], 0x02); /* the default ±8 G */
        settings.sensortag_range_g = 16;
        ASSERT_EQ(p->steps[1].build(&settings, buf), 2);
        ASSERT_EQ(buf[1], 0x03);
        settings.sensortag_range_g = 5;
        ASSERT_ERROR(p->steps[1].build(&settings, buf), EINVAL);
        settings.sensortag_period_ms = 50;
        ASSERT_ERROR(p->steps[0].build(&settings, buf), EINVAL);

        ASSERT_EQ(p->steps[2].type, PROFILE_STEP_NOTIFY);
        ASSERT_STREQ(p->steps[2].uuid, SENSORTAG_DATA_UUID);
        ASSERT_TRUE(p->steps[2].decoder == &profile_sensortag_decoder);
        ASSERT_TRUE(profile_decoder_from_uuid("F000AA81-0451-4000-B000-000000000000") == &profile_sensortag_decoder);
        ASSERT_TRUE(profile_decoder_from_name("sensortag") == &profile_sensortag_decoder);

        /* The generic path decodes with the configured range (the default when NULL). */
        ASSERT_EQ(profile_decode(&profile_sensortag_decoder, NULL, data, sizeof(data), &f, 1), 1);
        ASSERT_CLOSE(f.reading.values[CHANNEL_AX], 1.0 * G, 1e-15);
        settings = PROFILE_SETTINGS_DEFAULTS;
        settings.sensortag_range_g = 2;
        ASSERT_EQ(profile_decode(&profile_sensortag_decoder, &settings, data, sizeof(data), &f, 1), 1);
        ASSERT_CLOSE(f.reading.values[CHANNEL_AX], 0.25 * G, 1e-15);
        ASSERT_ERROR(profile_decode(&profile_sensortag_decoder, &settings, data, sizeof(data), &f, 0), ENOBUFS);
}

int main(void) {
        test_ranges();
        test_gyro_and_mag();
        test_errors();
        test_config_and_period();
        test_gatt_setup();
        return EXIT_SUCCESS;
}
