/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The phone profile, version 1 (docs/phone-profile.md). A notification is
 *
 *   0  u8   version (1)
 *   1  u8   flags: groups present (accel, gyro, orientation) and "acceleration is linear"
 *   2  u16  sequence number of the first sample, +1 per sample, wrapping
 *   4  u64  time of the notification, µs since the epoch
 *   12      samples: u16 time offset in 100 µs, then int16 x y z of each group present
 *
 * all little-endian, so one sample is 2 + 6 × groups bytes and the number of samples follows
 * from the length. A batch per notification is what makes 100 Hz practical: a connection
 * event carries a few notifications at best, and iOS will not go below a 15 ms interval.
 * Anything the header does not account for exactly is refused rather than guessed at.
 *
 * Setup, after every connection: read the identity (the device id: phones change their BLE
 * address), read the config to learn that the phone speaks version 1, write the config we
 * want, subscribe to the samples.
 */

#include "macro.h"
#include "profile-phone.h"

_Static_assert(PHONE_SAMPLES_MAX <= PROFILE_FRAMES_MAX, "PROFILE_FRAMES_MAX must hold a whole notification");

typedef struct PhoneGroup {
        unsigned flag;
        Channel first;
        double per_unit;
} PhoneGroup;

/* In the order the groups follow each other within a sample. */
static const PhoneGroup groups[] = {
        { PHONE_FLAG_ACCEL,       CHANNEL_AX, PHONE_ACCEL_PER_MS2    },
        { PHONE_FLAG_GYRO,        CHANNEL_GX, PHONE_GYRO_PER_DPS     },
        { PHONE_FLAG_ORIENTATION, CHANNEL_OA, PHONE_ANGLE_PER_DEGREE },
};

int profile_phone_decode(const uint8_t *data, size_t size, ProfileFrame *ret, size_t n_ret) {
        size_t sample_size, n;
        uint64_t time_usec;
        uint16_t seq;
        uint8_t flags;

        if (size < PHONE_HEADER_SIZE || size > PROFILE_VALUE_MAX)
                return -EBADMSG;
        if (data[0] != PHONE_VERSION)
                return -EPROTONOSUPPORT;

        flags = data[1];
        if ((flags & ~PHONE_FLAGS_KNOWN) || !(flags & PHONE_FLAGS_GROUPS))
                return -EBADMSG;
        sample_size = 2 + 6 * __builtin_popcount(flags & PHONE_FLAGS_GROUPS);
        if (size == PHONE_HEADER_SIZE || (size - PHONE_HEADER_SIZE) % sample_size != 0)
                return -EBADMSG;
        n = (size - PHONE_HEADER_SIZE) / sample_size;
        if (n > PHONE_SAMPLES_MAX)
                return -EBADMSG;
        if (n > n_ret)
                return -ENOBUFS;

        seq = profile_read_le16(data + 2);
        time_usec = profile_read_le64(data + 4);

        for (size_t i = 0; i < n; i++) {
                const uint8_t *s = data + PHONE_HEADER_SIZE + i * sample_size, *p = s + 2;
                ProfileFrame *f = ret + i;

                profile_frame_init(f);
                f->has_sensor_seq = true;
                f->sensor_seq = (uint16_t) (seq + i);
                f->has_sensor_time = true;
                f->sensor_time_usec = time_usec + (uint64_t) profile_read_le16(s) * PHONE_OFFSET_USEC;

                for (size_t g = 0; g < ELEMENTSOF(groups); g++) {
                        if (!(flags & groups[g].flag))
                                continue;
                        for (size_t axis = 0; axis < 3; axis++, p += 2)
                                reading_set(&f->reading, groups[g].first + axis,
                                            (int16_t) profile_read_le16(p) / groups[g].per_unit);
                }

                profile_frame_add_number(f, "sequence", f->sensor_seq, true);
                profile_frame_add_number(f, "time_usec", (double) f->sensor_time_usec, true);
                profile_frame_add_number(f, "linear_acceleration", !!(flags & PHONE_FLAG_LINEAR),
                                         flags & PHONE_FLAG_ACCEL);
        }
        return (int) n;
}

int profile_phone_identity(const uint8_t *data, size_t size, char ret[static DEVICE_ID_MAX + 1]) {
        if (!device_id_is_valid((const char *) data, size))
                return -EBADMSG;
        memcpy(ret, data, size);
        ret[size] = '\0';
        return 0;
}

int profile_phone_check_config(const uint8_t *data, size_t size) {
        /* Later versions may append fields: what we know is a prefix. */
        if (size < PHONE_CONFIG_SIZE)
                return -EBADMSG;
        /* The version byte is the newest the phone speaks; every phone speaks version 1 too. */
        if (data[0] < PHONE_VERSION)
                return -EPROTONOSUPPORT;
        if (!(data[1] & PHONE_FLAGS_GROUPS))
                return -EOPNOTSUPP;
        return 0;
}

int profile_phone_config(unsigned rate_hz, uint8_t ret[static PHONE_CONFIG_SIZE]) {
        if (rate_hz < PHONE_RATE_MIN_HZ || rate_hz > PHONE_RATE_MAX_HZ)
                return -EINVAL;

        ret[0] = PHONE_VERSION;
        /* Linear acceleration, as the seed's phones sent (DeviceMotionEvent.acceleration). */
        ret[1] = PHONE_FLAGS_GROUPS | PHONE_FLAG_LINEAR;
        profile_write_le16(ret + 2, rate_hz);
        return 0;
}

static int phone_decode(const ProfileSettings *settings, const uint8_t *data, size_t size, ProfileFrame *ret,
                        size_t n_ret) {
        return profile_phone_decode(data, size, ret, n_ret);
}

static int build_config(const ProfileSettings *settings, uint8_t buf[static PROFILE_WRITE_MAX]) {
        int k = profile_phone_config(settings->phone_rate_hz, buf);

        return k < 0 ? k : PHONE_CONFIG_SIZE;
}

const ProfileDecoder profile_phone_decoder = {
        .name = "phone",
        .uuid = PHONE_SAMPLES_UUID,
        .channels = CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY) | CHANNEL_BIT(CHANNEL_AZ) |
                    CHANNEL_BIT(CHANNEL_GX) | CHANNEL_BIT(CHANNEL_GY) | CHANNEL_BIT(CHANNEL_GZ) |
                    CHANNEL_BIT(CHANNEL_OA) | CHANNEL_BIT(CHANNEL_OB) | CHANNEL_BIT(CHANNEL_OG),
        .frames_max = PHONE_SAMPLES_MAX,
        .expect = "a version 1 notification of the phone profile: a 12-byte header (version 1, flags with at "
                  "least one of the groups 0x01 0x02 0x04 and no bit above 0x08, sequence, time), then 1 to 32 "
                  "samples of 2 + 6 bytes per group (see docs/phone-profile.md)",
        .decode = phone_decode,
};

static const ProfileStep phone_steps[] = {
        { .type = PROFILE_STEP_IDENTIFY, .uuid = PHONE_IDENTITY_UUID, .identify = profile_phone_identity },
        { .type = PROFILE_STEP_CHECK, .uuid = PHONE_CONFIG_UUID, .check = profile_phone_check_config },
        { .type = PROFILE_STEP_WRITE, .uuid = PHONE_CONFIG_UUID, .build = build_config },
        { .type = PROFILE_STEP_NOTIFY, .uuid = PHONE_SAMPLES_UUID, .decoder = &profile_phone_decoder },
};

const Profile profile_phone = {
        .kind = PROFILE_PHONE,
        .name = "phone",
        .service_uuid = PHONE_SERVICE_UUID,
        .steps = phone_steps,
        .n_steps = ELEMENTSOF(phone_steps),
};
