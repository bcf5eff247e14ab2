/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* RuuviTag decoding against Ruuvi's official test vectors for data formats 5 and 3, field by
 * field; "not available" sentinels become invalid fields and absent channels; formats without
 * acceleration are recognised and skipped; every wrong length is refused. */

#include "profile-ruuvi.h"
#include "tests.h"

#define G STANDARD_GRAVITY

static size_t unhex(const char *hex, uint8_t *buf, size_t max) {
        size_t n = strlen(hex) / 2;

        ASSERT_TRUE(strlen(hex) % 2 == 0 && n <= max);
        for (size_t i = 0; i < n; i++) {
                unsigned v;
                ASSERT_EQ(sscanf(hex + 2 * i, "%2x", &v), 1);
                buf[i] = v;
        }
        return n;
}

static int decode(const char *hex, ProfileFrame *f) {
        uint8_t buf[64];
        size_t n = unhex(hex, buf, sizeof(buf));

        return profile_ruuvi_decode(buf, n, f);
}

static void assert_number(const ProfileFrame *f, const char *name, double expected) {
        const ProfileField *field = profile_frame_get_field(f, name);

        if (!field)
                TEST_FAIL("no field %s", name);
        if (!field->valid || field->is_text)
                TEST_FAIL("field %s: not a valid number", name);
        ASSERT_CLOSE(field->number, expected, 1e-12);
}

static void assert_invalid(const ProfileFrame *f, const char *name) {
        const ProfileField *field = profile_frame_get_field(f, name);

        if (!field)
                TEST_FAIL("no field %s", name);
        if (field->valid)
                TEST_FAIL("field %s: valid, expected not available", name);
}

static void assert_accel_mg(const ProfileFrame *f, double x, double y, double z) {
        ASSERT_EQ(f->reading.channels, CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY) | CHANNEL_BIT(CHANNEL_AZ));
        ASSERT_CLOSE(f->reading.values[CHANNEL_AX], x * G / 1000, 1e-12);
        ASSERT_CLOSE(f->reading.values[CHANNEL_AY], y * G / 1000, 1e-12);
        ASSERT_CLOSE(f->reading.values[CHANNEL_AZ], z * G / 1000, 1e-12);
}

static void test_format5_valid(void) {
        ProfileFrame f;

        ASSERT_OK(decode("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F", &f));
        assert_accel_mg(&f, 4, -4, 1036);
        ASSERT_EQ(f.n_fields, 9);
        assert_number(&f, "data_format", 5);
        /* Decimal quantities are exact to the last bit: they print as Ruuvi writes them. */
        ASSERT_TRUE(profile_frame_get_field(&f, "temperature")->number == 24.3);
        ASSERT_TRUE(profile_frame_get_field(&f, "humidity")->number == 53.49);
        assert_number(&f, "pressure", 100044);
        assert_number(&f, "battery", 2977);
        assert_number(&f, "tx_power", 4);
        assert_number(&f, "movement_counter", 66);
        assert_number(&f, "measurement_sequence", 205);
        ASSERT_TRUE(profile_frame_get_field(&f, "mac")->valid);
        ASSERT_TRUE(profile_frame_get_field(&f, "mac")->is_text);
        ASSERT_STREQ(profile_frame_get_field(&f, "mac")->text, "cbb8334c884f");
        ASSERT_TRUE(f.has_sensor_seq);
        ASSERT_EQ(f.sensor_seq, 205);
        ASSERT_FALSE(f.has_sensor_time);
        /* Device, type, time and seq are the caller's. */
        ASSERT_STREQ(f.reading.device, "");
        ASSERT_EQ(f.reading.time_usec, 0);
        ASSERT_EQ(f.reading.seq, 0);
}

static void test_format5_max(void) {
        ProfileFrame f;

        ASSERT_OK(decode("057FFFFFFEFFFE7FFF7FFF7FFFFFDEFEFFFECBB8334C884F", &f));
        assert_accel_mg(&f, 32767, 32767, 32767);
        ASSERT_TRUE(profile_frame_get_field(&f, "temperature")->number == 163.835);
        ASSERT_TRUE(profile_frame_get_field(&f, "humidity")->number == 163.835);
        assert_number(&f, "pressure", 115534);
        assert_number(&f, "battery", 3646);
        assert_number(&f, "tx_power", 20);
        assert_number(&f, "movement_counter", 254);
        assert_number(&f, "measurement_sequence", 65534);
        ASSERT_STREQ(profile_frame_get_field(&f, "mac")->text, "cbb8334c884f");
        ASSERT_EQ(f.sensor_seq, 65534);
}

static void test_format5_min(void) {
        ProfileFrame f;

        ASSERT_OK(decode("058001000000008001800180010000000000CBB8334C884F", &f));
        assert_accel_mg(&f, -32767, -32767, -32767);
        ASSERT_TRUE(profile_frame_get_field(&f, "temperature")->number == -163.835);
        assert_number(&f, "humidity", 0);
        assert_number(&f, "pressure", 50000);
        assert_number(&f, "battery", 1600);
        assert_number(&f, "tx_power", -40);
        assert_number(&f, "movement_counter", 0);
        assert_number(&f, "measurement_sequence", 0);
        ASSERT_TRUE(f.has_sensor_seq);
        ASSERT_EQ(f.sensor_seq, 0);
}

static void test_format5_invalid(void) {
        static const char *const names[] = { "temperature", "humidity", "pressure", "battery", "tx_power",
                                             "movement_counter", "measurement_sequence", "mac" };
        ProfileFrame f;

        ASSERT_OK(decode("058000FFFFFFFF800080008000FFFFFFFFFFFFFFFFFFFFFF", &f));
        /* Not available is not zero: no channel at all. */
        ASSERT_EQ(f.reading.channels, 0);
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                assert_invalid(&f, names[i]);
        assert_number(&f, "data_format", 5);
        ASSERT_FALSE(f.has_sensor_seq);
}

static void test_format5_partly_invalid(void) {
        ProfileFrame f;

        /* The valid vector with only accel Y and the battery part of the power field marked invalid. */
        ASSERT_OK(decode("0512FC5394C37C00048000040CFFF64200CDCBB8334C884F", &f));
        ASSERT_EQ(f.reading.channels, CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AZ));
        ASSERT_CLOSE(f.reading.values[CHANNEL_AX], 4 * G / 1000, 1e-12);
        ASSERT_CLOSE(f.reading.values[CHANNEL_AZ], 1036 * G / 1000, 1e-12);
        assert_invalid(&f, "battery");
        assert_number(&f, "tx_power", 4);
        /* A MAC is invalid only when all six bytes are 0xFF. */
        ASSERT_OK(decode("0512FC5394C37C0004FFFC040CAC364200CDFFFFFFFFFF00", &f));
        ASSERT_STREQ(profile_frame_get_field(&f, "mac")->text, "ffffffffff00");
}

static void test_format5_docs_example(void) {
        ProfileFrame f;

        ASSERT_OK(decode("050F274035C454005000C8FC20A456F030E5C9445429E38D", &f));
        assert_accel_mg(&f, 80, 200, -992);
        ASSERT_TRUE(profile_frame_get_field(&f, "temperature")->number == 19.395);
        ASSERT_TRUE(profile_frame_get_field(&f, "humidity")->number == 41.0925);
        assert_number(&f, "pressure", 100260);
        assert_number(&f, "battery", 2914);
        assert_number(&f, "tx_power", 4);
        assert_number(&f, "movement_counter", 240);
        assert_number(&f, "measurement_sequence", 12517);
        ASSERT_STREQ(profile_frame_get_field(&f, "mac")->text, "c9445429e38d");
}

static void test_format3(void) {
        ProfileFrame f;

        ASSERT_OK(decode("03291A1ECE1EFC18F94202CA0B53", &f));
        assert_accel_mg(&f, -1000, -1726, 714);
        ASSERT_EQ(f.n_fields, 5);
        assert_number(&f, "data_format", 3);
        ASSERT_TRUE(profile_frame_get_field(&f, "humidity")->number == 20.5);
        ASSERT_TRUE(profile_frame_get_field(&f, "temperature")->number == 26.3);
        assert_number(&f, "pressure", 102766);
        assert_number(&f, "battery", 2899);
        ASSERT_TRUE(profile_frame_get_field(&f, "mac") == NULL);
        ASSERT_FALSE(f.has_sensor_seq);

        ASSERT_OK(decode("03FF7F63FFFF7FFF7FFF7FFFFFFF", &f));
        assert_accel_mg(&f, 32767, 32767, 32767);
        assert_number(&f, "humidity", 127.5);
        ASSERT_TRUE(profile_frame_get_field(&f, "temperature")->number == 127.99);
        assert_number(&f, "pressure", 115535);
        assert_number(&f, "battery", 65535);

        ASSERT_OK(decode("0300FF6300008001800180010000", &f));
        assert_accel_mg(&f, -32767, -32767, -32767);
        assert_number(&f, "humidity", 0);
        ASSERT_TRUE(profile_frame_get_field(&f, "temperature")->number == -127.99);
        assert_number(&f, "pressure", 50000);
        assert_number(&f, "battery", 0);

        /* Format 3 has no sentinels: 0x8000 is -32768 mG. Negative zero is plain zero. */
        ASSERT_OK(decode("0300800050008000800080000000", &f));
        assert_accel_mg(&f, -32768, -32768, -32768);
        ASSERT_TRUE(profile_frame_get_field(&f, "temperature")->number == 0);
        ASSERT_FALSE(signbit(profile_frame_get_field(&f, "temperature")->number));

        /* A fraction above 99 hundredths is not a temperature. */
        ASSERT_OK(decode("03001A64CE1EFC18F94202CA0B53", &f));
        assert_invalid(&f, "temperature");
}

static void test_skipped_formats(void) {
        ProfileFrame f;

        /* Ruuvi Air (6, E1), DF5 without motion (C5), encrypted (8): recognised, no acceleration. */
        ASSERT_ERROR(decode("06", &f), EOPNOTSUPP);
        ASSERT_ERROR(decode("0617FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", &f), EOPNOTSUPP);
        ASSERT_ERROR(decode("E1170C5668C79E0065007004BD11CA00C90A0213E0ACFFFFFFDECDEE100000000000CBB8334C884F",
                            &f), EOPNOTSUPP);
        ASSERT_ERROR(decode("C512FC5394C37CAC364200CDCBB8334C884F", &f), EOPNOTSUPP);
        ASSERT_ERROR(decode("08", &f), EOPNOTSUPP);
}

static void test_bad_lengths(void) {
        const char *valid5 = "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F";
        const char *valid3 = "03291A1ECE1EFC18F94202CA0B53";
        uint8_t buf[64];
        ProfileFrame f;
        size_t n;

        ASSERT_ERROR(profile_ruuvi_decode(NULL, 0, &f), EBADMSG);

        n = unhex(valid5, buf, sizeof(buf));
        buf[n] = 0;
        for (size_t i = 1; i <= n + 1; i++)
                if (i != RUUVI_FORMAT_5_SIZE)
                        ASSERT_ERROR(profile_ruuvi_decode(buf, i, &f), EBADMSG);

        n = unhex(valid3, buf, sizeof(buf));
        buf[n] = 0;
        for (size_t i = 1; i <= n + 1; i++)
                if (i != RUUVI_FORMAT_3_SIZE)
                        ASSERT_ERROR(profile_ruuvi_decode(buf, i, &f), EBADMSG);

        /* Unknown formats, including 2 and 4, which Ruuvi sends as Eddystone URLs, not here. */
        for (unsigned v = 0; v <= 0xFF; v++) {
                if (memchr("\x03\x05\x06\x08\xC5\xE1", v, 6))
                        continue;
                buf[0] = v;
                ASSERT_ERROR(profile_ruuvi_decode(buf, RUUVI_FORMAT_5_SIZE, &f), EBADMSG);
                ASSERT_ERROR(profile_ruuvi_decode(buf, RUUVI_FORMAT_3_SIZE, &f), EBADMSG);
        }
}

static void test_table(void) {
        const ProfileDecoder *d;
        ProfileFrame frames[2];
        uint8_t buf[64];
        size_t n = unhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F", buf, sizeof(buf));

        ASSERT_TRUE(profile_get(PROFILE_RUUVI) == &profile_ruuvi);
        ASSERT_EQ(profile_kind_from_string("ruuvi"), PROFILE_RUUVI);
        ASSERT_STREQ(profile_kind_to_string(PROFILE_RUUVI), "ruuvi");
        ASSERT_TRUE(profile_from_company_id(RUUVI_COMPANY_ID) == &profile_ruuvi);
        ASSERT_TRUE(profile_from_company_id(0x004C) == NULL);
        ASSERT_EQ(profile_ruuvi.n_steps, 0);
        ASSERT_TRUE(profile_ruuvi.service_uuid == NULL);

        d = profile_decoder_from_name("ruuvi");
        ASSERT_TRUE(d == &profile_ruuvi_decoder && d == profile_ruuvi.advert);
        ASSERT_TRUE(d->uuid == NULL);
        ASSERT_EQ(profile_decode(d, NULL, buf, n, frames, ELEMENTSOF(frames)), 1);
        ASSERT_EQ(frames[0].reading.channels & ~d->channels, 0);
        ASSERT_ERROR(profile_decode(d, NULL, buf, n, frames, 0), ENOBUFS);
        ASSERT_ERROR(profile_decode(d, NULL, buf, n - 1, frames, 1), EBADMSG);
}

int main(void) {
        test_format5_valid();
        test_format5_max();
        test_format5_min();
        test_format5_invalid();
        test_format5_partly_invalid();
        test_format5_docs_example();
        test_format3();
        test_skipped_formats();
        test_bad_lengths();
        test_table();
        return EXIT_SUCCESS;
}
