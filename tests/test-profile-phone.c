/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The phone profile: notifications encoded here by hand from docs/phone-profile.md decode back
 * to the same values, one frame per sample with its own sequence number and time, for every
 * combination of groups; the example of the document decodes as it says; truncated, oversized,
 * unknown-version and malformed notifications are refused; identity and config
 * characteristics; the GATT setup as data. */

#include "profile-phone.h"
#include "tests.h"

typedef struct Sample {
        uint16_t offset; /* 100 µs */
        int16_t accel[3], gyro[3], angles[3];
} Sample;

/* The encoder a phone app would write, from the document's tables. */
static size_t encode(uint8_t version, uint8_t flags, uint16_t seq, uint64_t time_usec, const Sample *samples,
                     size_t n, uint8_t *buf, size_t max) {
        size_t size = PHONE_HEADER_SIZE;

        ASSERT_TRUE(max >= PHONE_HEADER_SIZE);
        buf[0] = version;
        buf[1] = flags;
        profile_write_le16(buf + 2, seq);
        for (size_t i = 0; i < 8; i++)
                buf[4 + i] = (uint8_t) (time_usec >> (8 * i));

        for (size_t i = 0; i < n; i++) {
                const int16_t *groups[] = { samples[i].accel, samples[i].gyro, samples[i].angles };

                ASSERT_TRUE(size + 20 <= max);
                profile_write_le16(buf + size, samples[i].offset);
                size += 2;
                for (size_t g = 0; g < 3; g++) {
                        if (!(flags & (1 << g)))
                                continue;
                        for (size_t axis = 0; axis < 3; axis++, size += 2)
                                profile_write_le16(buf + size, (uint16_t) groups[g][axis]);
                }
        }
        return size;
}

static const Sample samples[3] = {
        { 0,   { 12, -5, 20 },         { 15, -3, 0 },          { 17999, -625, 2251 } },
        { 100, { 32767, -32768, 0 },   { -32768, 32767, 1 },   { -32768, 32767, -1 } },
        { 250, { 981, 0, -981 },       { 18000, -18000, 5 },   { 0, 9000, -4500 } },
};

static void assert_sample(const ProfileFrame *f, uint8_t flags, const Sample *s) {
        uint32_t expected = 0;

        if (flags & PHONE_FLAG_ACCEL) {
                expected |= CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY) | CHANNEL_BIT(CHANNEL_AZ);
                for (size_t i = 0; i < 3; i++)
                        ASSERT_TRUE(f->reading.values[CHANNEL_AX + i] == s->accel[i] / 100.0);
        }
        if (flags & PHONE_FLAG_GYRO) {
                expected |= CHANNEL_BIT(CHANNEL_GX) | CHANNEL_BIT(CHANNEL_GY) | CHANNEL_BIT(CHANNEL_GZ);
                for (size_t i = 0; i < 3; i++)
                        ASSERT_TRUE(f->reading.values[CHANNEL_GX + i] == s->gyro[i] / 10.0);
        }
        if (flags & PHONE_FLAG_ORIENTATION) {
                expected |= CHANNEL_BIT(CHANNEL_OA) | CHANNEL_BIT(CHANNEL_OB) | CHANNEL_BIT(CHANNEL_OG);
                for (size_t i = 0; i < 3; i++)
                        ASSERT_TRUE(f->reading.values[CHANNEL_OA + i] == s->angles[i] / 50.0);
        }
        ASSERT_EQ(f->reading.channels, expected);
}

static void test_round_trip(void) {
        const uint64_t t0 = UINT64_C(1700000000000000);
        ProfileFrame frames[PHONE_SAMPLES_MAX];
        uint8_t buf[PROFILE_VALUE_MAX];

        /* Every combination of groups, with and without the linear flag; the sequence wraps. */
        for (uint8_t groups = 1; groups <= PHONE_FLAGS_GROUPS; groups++)
                for (uint8_t linear = 0; linear <= PHONE_FLAG_LINEAR; linear += PHONE_FLAG_LINEAR) {
                        uint8_t flags = groups | linear;
                        size_t size = encode(1, flags, 0xFFFE, t0, samples, 3, buf, sizeof(buf));

                        ASSERT_EQ(size, PHONE_HEADER_SIZE + 3 * (2 + 6 * __builtin_popcount(groups)));
                        ASSERT_EQ(profile_phone_decode(buf, size, frames, ELEMENTSOF(frames)), 3);
                        for (size_t i = 0; i < 3; i++) {
                                const ProfileField *lin = profile_frame_get_field(frames + i, "linear_acceleration");

                                assert_sample(frames + i, flags, samples + i);
                                ASSERT_TRUE(frames[i].has_sensor_seq);
                                ASSERT_TRUE(frames[i].has_sensor_time);
                                ASSERT_U64_EQ(frames[i].sensor_time_usec, t0 + samples[i].offset * 100);
                                ASSERT_TRUE(profile_frame_get_field(frames + i, "time_usec")->number ==
                                            (double) (t0 + samples[i].offset * 100));
                                ASSERT_TRUE(profile_frame_get_field(frames + i, "sequence")->number ==
                                            frames[i].sensor_seq);
                                ASSERT_EQ(lin->valid, !!(flags & PHONE_FLAG_ACCEL));
                                if (lin->valid)
                                        ASSERT_TRUE(lin->number == !!linear);
                                ASSERT_STREQ(frames[i].reading.device, "");
                        }
                        ASSERT_EQ(frames[0].sensor_seq, 0xFFFE);
                        ASSERT_EQ(frames[1].sensor_seq, 0xFFFF);
                        ASSERT_EQ(frames[2].sensor_seq, 0);
                }
}

static void test_document_example(void) {
        /* The example notification of docs/phone-profile.md, byte for byte. */
        static const uint8_t example[] = {
                0x01, 0x0F, 0x02, 0x01, 0x00, 0x40, 0x1E, 0x18, 0x24, 0x0A, 0x06, 0x00,
                0x00, 0x00, 0x0C, 0x00, 0xFB, 0xFF, 0x14, 0x00, 0x0F, 0x00, 0xFD, 0xFF, 0x00, 0x00,
                0x4F, 0x46, 0x8F, 0xFD, 0xCB, 0x08,
                0x64, 0x00, 0x0F, 0x00, 0xFC, 0xFF, 0x12, 0x00, 0x15, 0x00, 0xFC, 0xFF, 0x01, 0x00,
                0x01, 0x00, 0x91, 0xFD, 0xCA, 0x08,
        };
        ProfileFrame f[2];

        ASSERT_EQ(profile_phone_decode(example, sizeof(example), f, 2), 2);
        ASSERT_EQ(f[0].sensor_seq, 258);
        ASSERT_U64_EQ(f[0].sensor_time_usec, UINT64_C(1700000000000000));
        ASSERT_TRUE(f[0].reading.values[CHANNEL_AX] == 0.12);
        ASSERT_TRUE(f[0].reading.values[CHANNEL_AY] == -0.05);
        ASSERT_TRUE(f[0].reading.values[CHANNEL_AZ] == 0.2);
        ASSERT_TRUE(f[0].reading.values[CHANNEL_GX] == 1.5);
        ASSERT_TRUE(f[0].reading.values[CHANNEL_GY] == -0.3);
        ASSERT_TRUE(f[0].reading.values[CHANNEL_GZ] == 0);
        ASSERT_TRUE(f[0].reading.values[CHANNEL_OA] == 359.98);
        ASSERT_TRUE(f[0].reading.values[CHANNEL_OB] == -12.5);
        ASSERT_TRUE(f[0].reading.values[CHANNEL_OG] == 45.02);
        ASSERT_EQ(f[1].sensor_seq, 259);
        ASSERT_U64_EQ(f[1].sensor_time_usec, UINT64_C(1700000000010000));
        ASSERT_TRUE(f[1].reading.values[CHANNEL_AX] == 0.15);
        ASSERT_TRUE(f[1].reading.values[CHANNEL_AY] == -0.04);
        ASSERT_TRUE(f[1].reading.values[CHANNEL_AZ] == 0.18);
        ASSERT_TRUE(f[1].reading.values[CHANNEL_GX] == 2.1);
        ASSERT_TRUE(f[1].reading.values[CHANNEL_GY] == -0.4);
        ASSERT_TRUE(f[1].reading.values[CHANNEL_GZ] == 0.1);
        ASSERT_TRUE(f[1].reading.values[CHANNEL_OA] == 0.02);
        ASSERT_TRUE(f[1].reading.values[CHANNEL_OB] == -12.46);
        ASSERT_TRUE(f[1].reading.values[CHANNEL_OG] == 45);
        ASSERT_TRUE(profile_frame_get_field(f + 1, "linear_acceleration")->number == 1);
}

static void test_limits(void) {
        static Sample many[PHONE_SAMPLES_MAX + 1];
        static ProfileFrame frames[PHONE_SAMPLES_MAX];
        uint8_t buf[1024];
        size_t size;

        for (size_t i = 0; i < ELEMENTSOF(many); i++)
                many[i] = (Sample) { .offset = i * 100, .accel = { i, -(int) i, 1 } };

        /* 32 samples fit; the caller's array must hold them all. */
        size = encode(1, PHONE_FLAG_ACCEL, 7, 1, many, PHONE_SAMPLES_MAX, buf, sizeof(buf));
        ASSERT_EQ(profile_phone_decode(buf, size, frames, PHONE_SAMPLES_MAX), PHONE_SAMPLES_MAX);
        ASSERT_EQ(frames[31].sensor_seq, 7 + 31);
        ASSERT_TRUE(frames[31].reading.values[CHANNEL_AY] == -0.31);
        ASSERT_ERROR(profile_phone_decode(buf, size, frames, PHONE_SAMPLES_MAX - 1), ENOBUFS);
        ASSERT_EQ(profile_decode(&profile_phone_decoder, NULL, buf, size, frames, PHONE_SAMPLES_MAX),
                  PHONE_SAMPLES_MAX);

        /* 33 are more than the protocol allows, even where they would fit in 512 bytes. */
        size = encode(1, PHONE_FLAG_ACCEL, 7, 1, many, PHONE_SAMPLES_MAX + 1, buf, sizeof(buf));
        ASSERT_TRUE(size <= PROFILE_VALUE_MAX);
        ASSERT_ERROR(profile_phone_decode(buf, size, frames, PHONE_SAMPLES_MAX), EBADMSG);

        /* More than an attribute value can hold. */
        size = encode(1, PHONE_FLAGS_GROUPS, 7, 1, many, 26, buf, sizeof(buf));
        ASSERT_TRUE(size > PROFILE_VALUE_MAX);
        ASSERT_ERROR(profile_phone_decode(buf, size, frames, PHONE_SAMPLES_MAX), EBADMSG);
}

static void test_malformed(void) {
        ProfileFrame frames[PHONE_SAMPLES_MAX];
        uint8_t buf[PROFILE_VALUE_MAX], good[PROFILE_VALUE_MAX];
        size_t size = encode(1, 0x0F, 1, 1, samples, 2, good, sizeof(good));

        /* Truncated anywhere, or one byte too many: the length must be header + whole samples. */
        for (size_t n = 0; n < size + 20; n++) {
                memset(buf, 0, sizeof(buf));
                memcpy(buf, good, MIN(n, size));
                if (n != size && n != size - 20)
                        ASSERT_ERROR(profile_phone_decode(buf, n, frames, ELEMENTSOF(frames)), EBADMSG);
        }
        ASSERT_EQ(profile_phone_decode(good, size - 20, frames, ELEMENTSOF(frames)), 1);
        ASSERT_ERROR(profile_phone_decode(NULL, 0, frames, ELEMENTSOF(frames)), EBADMSG);
        /* A header without samples. */
        ASSERT_ERROR(profile_phone_decode(good, PHONE_HEADER_SIZE, frames, ELEMENTSOF(frames)), EBADMSG);

        /* Versions we do not speak. */
        for (unsigned v = 0; v <= 0xFF; v++) {
                if (v == PHONE_VERSION)
                        continue;
                memcpy(buf, good, size);
                buf[0] = v;
                ASSERT_ERROR(profile_phone_decode(buf, size, frames, ELEMENTSOF(frames)), EPROTONOSUPPORT);
        }

        /* No group, only the linear flag, or a reserved bit. */
        memcpy(buf, good, size);
        buf[1] = 0;
        ASSERT_ERROR(profile_phone_decode(buf, PHONE_HEADER_SIZE + 2, frames, ELEMENTSOF(frames)), EBADMSG);
        buf[1] = PHONE_FLAG_LINEAR;
        ASSERT_ERROR(profile_phone_decode(buf, PHONE_HEADER_SIZE + 2, frames, ELEMENTSOF(frames)), EBADMSG);
        for (unsigned bit = 4; bit < 8; bit++) {
                buf[1] = 0x0F | 1 << bit;
                ASSERT_ERROR(profile_phone_decode(buf, size, frames, ELEMENTSOF(frames)), EBADMSG);
        }

        /* A frame the caller gets back on error is not touched. */
        frames[0].reading.channels = 0xABC;
        buf[0] = 2;
        ASSERT_ERROR(profile_phone_decode(buf, size, frames, ELEMENTSOF(frames)), EPROTONOSUPPORT);
        ASSERT_EQ(frames[0].reading.channels, 0xABC);
}

static void test_identity(void) {
        char id[DEVICE_ID_MAX + 1];

        ASSERT_OK(profile_phone_identity((const uint8_t *) "pixel-7a.anna_1", 15, id));
        ASSERT_STREQ(id, "pixel-7a.anna_1");
        ASSERT_OK(profile_phone_identity((const uint8_t *) "0f8fad5b-d9cb-469f-a165-70867728950e", 36, id));
        ASSERT_STREQ(id, "0f8fad5b-d9cb-469f-a165-70867728950e");

        ASSERT_ERROR(profile_phone_identity((const uint8_t *) "0f8fad5b-d9cb-469f-a165-70867728950e1", 37, id), EBADMSG);
        ASSERT_ERROR(profile_phone_identity((const uint8_t *) "", 0, id), EBADMSG);
        ASSERT_ERROR(profile_phone_identity(NULL, 0, id), EBADMSG);
        ASSERT_ERROR(profile_phone_identity((const uint8_t *) "phone\0", 6, id), EBADMSG);
        ASSERT_ERROR(profile_phone_identity((const uint8_t *) "anna phone", 10, id), EBADMSG);
        ASSERT_ERROR(profile_phone_identity((const uint8_t *) "t\xc3\xa9l", 4, id), EBADMSG);
        ASSERT_ERROR(profile_phone_identity((const uint8_t *) "a/b", 3, id), EBADMSG);
}

static void test_config(void) {
        uint8_t buf[PHONE_CONFIG_SIZE];

        ASSERT_OK(profile_phone_check_config((const uint8_t[]) { 1, 0x07, 100, 0 }, 4));
        ASSERT_OK(profile_phone_check_config((const uint8_t[]) { 1, 0x01, 50, 0 }, 4));
        /* A newer phone speaks version 1 too, and may append fields. */
        ASSERT_OK(profile_phone_check_config((const uint8_t[]) { 2, 0x0F, 100, 0, 9, 9 }, 6));
        ASSERT_ERROR(profile_phone_check_config((const uint8_t[]) { 0, 0x07, 100, 0 }, 4), EPROTONOSUPPORT);
        ASSERT_ERROR(profile_phone_check_config((const uint8_t[]) { 1, 0x08, 100, 0 }, 4), EOPNOTSUPP);
        ASSERT_ERROR(profile_phone_check_config((const uint8_t[]) { 1, 0x07, 100 }, 3), EBADMSG);
        ASSERT_ERROR(profile_phone_check_config(NULL, 0), EBADMSG);

        ASSERT_OK(profile_phone_config(100, buf));
        ASSERT_TRUE(memcmp(buf, (const uint8_t[]) { 0x01, 0x0F, 0x64, 0x00 }, 4) == 0);
        ASSERT_OK(profile_phone_config(200, buf));
        ASSERT_EQ(profile_read_le16(buf + 2), 200);
        ASSERT_OK(profile_phone_config(1, buf));
        ASSERT_ERROR(profile_phone_config(0, buf), EINVAL);
        ASSERT_ERROR(profile_phone_config(201, buf), EINVAL);
}

static void test_gatt_setup(void) {
        ProfileSettings settings = PROFILE_SETTINGS_DEFAULTS;
        const Profile *p = profile_from_service_uuid("34BA0100-423B-4CAE-B2F8-FCF1B6678A74");
        uint8_t buf[PROFILE_WRITE_MAX];
        char id[DEVICE_ID_MAX + 1];

        ASSERT_TRUE(p == &profile_phone);
        ASSERT_TRUE(profile_get(PROFILE_PHONE) == p);
        ASSERT_EQ(profile_kind_from_string("phone"), PROFILE_PHONE);
        ASSERT_EQ(profile_kind_from_string("iphone"), _PROFILE_KIND_INVALID);
        ASSERT_EQ(profile_kind_from_string(NULL), _PROFILE_KIND_INVALID);
        ASSERT_TRUE(profile_kind_to_string(_PROFILE_KIND_MAX) == NULL);
        ASSERT_TRUE(profile_from_service_uuid("0000180f-0000-1000-8000-00805f9b34fb") == NULL);
        ASSERT_TRUE(profile_from_service_uuid(NULL) == NULL);

        /* Identity first (phones change their address), then the version check, the config
         * we want, and the subscription. */
        ASSERT_EQ(p->n_steps, 4);
        ASSERT_EQ(p->steps[0].type, PROFILE_STEP_IDENTIFY);
        ASSERT_STREQ(p->steps[0].uuid, PHONE_IDENTITY_UUID);
        ASSERT_OK(p->steps[0].identify((const uint8_t *) "phone-1", 7, id));
        ASSERT_STREQ(id, "phone-1");
        ASSERT_EQ(p->steps[1].type, PROFILE_STEP_CHECK);
        ASSERT_STREQ(p->steps[1].uuid, PHONE_CONFIG_UUID);
        ASSERT_ERROR(p->steps[1].check((const uint8_t[]) { 0, 7, 100, 0 }, 4), EPROTONOSUPPORT);
        ASSERT_EQ(p->steps[2].type, PROFILE_STEP_WRITE);
        ASSERT_STREQ(p->steps[2].uuid, PHONE_CONFIG_UUID);
        ASSERT_EQ(p->steps[2].build(&settings, buf), PHONE_CONFIG_SIZE);
        ASSERT_EQ(profile_read_le16(buf + 2), 100);
        settings.phone_rate_hz = 0;
        ASSERT_ERROR(p->steps[2].build(&settings, buf), EINVAL);
        ASSERT_EQ(p->steps[3].type, PROFILE_STEP_NOTIFY);
        ASSERT_TRUE(p->steps[3].decoder == &profile_phone_decoder);
        ASSERT_TRUE(profile_decoder_from_uuid(PHONE_SAMPLES_UUID) == &profile_phone_decoder);
        ASSERT_TRUE(profile_decoder_from_name("phone") == &profile_phone_decoder);

        /* Every decoder of the table is reachable, by name and by UUID, and fits the limits. */
        for (size_t i = 0; profile_decoder_get(i); i++) {
                const ProfileDecoder *d = profile_decoder_get(i);

                ASSERT_TRUE(profile_decoder_from_name(d->name) == d);
                ASSERT_TRUE(!d->uuid || profile_decoder_from_uuid(d->uuid) == d);
                ASSERT_TRUE(d->frames_max >= 1 && d->frames_max <= PROFILE_FRAMES_MAX);
                ASSERT_TRUE(d->channels != 0 && (d->channels & ~CHANNELS_ALL) == 0);
                ASSERT_TRUE(d->expect && d->decode);
        }
        ASSERT_TRUE(profile_decoder_get(5) == NULL);
        ASSERT_TRUE(profile_decoder_from_name(NULL) == NULL);
        ASSERT_TRUE(profile_decoder_from_uuid(NULL) == NULL);
}

int main(void) {
        test_round_trip();
        test_document_example();
        test_limits();
        test_malformed();
        test_identity();
        test_config();
        test_gatt_setup();
        return EXIT_SUCCESS;
}
