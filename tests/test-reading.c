/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Channel names round-trip, device-id rules match Watson IoT's [A-Za-z0-9-_.]{1,36}, and the
 * timestamp format is the historian's. */

#include "reading.h"
#include "tests.h"
#include "timestamp.h"

static void test_channels(void) {
        static const char *const names[] = { "ax", "ay", "az", "gx", "gy", "gz",
                                             "mx", "my", "mz", "oa", "ob", "og" };

        for (Channel c = 0; c < _CHANNEL_MAX; c++) {
                ASSERT_STREQ(channel_to_string(c), names[c]);
                ASSERT_EQ(channel_from_string(channel_to_string(c)), c);
        }
        ASSERT_EQ(channel_from_string("AX"), _CHANNEL_INVALID);
        ASSERT_EQ(channel_from_string("a"), _CHANNEL_INVALID);
        ASSERT_EQ(channel_from_string("axx"), _CHANNEL_INVALID);
        ASSERT_EQ(channel_from_string(NULL), _CHANNEL_INVALID);
        ASSERT_EQ(channel_from_substring("ob,og", 2), CHANNEL_OB);
        ASSERT_TRUE(channel_to_string(_CHANNEL_MAX) == NULL);
}

static void test_device_ids(void) {
        ASSERT_TRUE(device_id_is_valid("phone", 5));
        ASSERT_TRUE(device_id_is_valid("c1a2b3d4e5f6", 12));
        ASSERT_TRUE(device_id_is_valid("A-Z_a.z-09", 10));
        ASSERT_TRUE(device_id_is_valid("123456789012345678901234567890123456", 36));
        ASSERT_FALSE(device_id_is_valid("1234567890123456789012345678901234567", 37));
        ASSERT_FALSE(device_id_is_valid("", 0));
        ASSERT_FALSE(device_id_is_valid("c1:a2", 5));
        ASSERT_FALSE(device_id_is_valid("a b", 3));
        ASSERT_FALSE(device_id_is_valid("a/b", 3));
        ASSERT_FALSE(device_id_is_valid("ä", 2));
}

static void test_reading_mask(void) {
        Reading r = {};

        ASSERT_FALSE(reading_has(&r, CHANNEL_AX));
        reading_set(&r, CHANNEL_OG, -1.5);
        ASSERT_TRUE(reading_has(&r, CHANNEL_OG));
        ASSERT_EQ(r.channels, CHANNEL_BIT(CHANNEL_OG));
        ASSERT_TRUE(r.values[CHANNEL_OG] == -1.5);
}

static void test_timestamp_format(void) {
        char buf[TIMESTAMP_MAX];

        ASSERT_STREQ(timestamp_format(0, buf), "1970-01-01T00:00:00.000Z");
        ASSERT_STREQ(timestamp_format(UINT64_C(1515542400000000), buf), "2018-01-10T00:00:00.000Z");
        ASSERT_STREQ(timestamp_format(UINT64_C(951782400123999), buf), "2000-02-29T00:00:00.123Z");
        ASSERT_STREQ(timestamp_format(UINT64_C(4102444799999000), buf), "2099-12-31T23:59:59.999Z");
        ASSERT_STREQ(timestamp_format(UINT64_C(253402300799000000), buf), "9999-12-31T23:59:59.000Z");
}

int main(void) {
        test_channels();
        test_device_ids();
        test_reading_mask();
        test_timestamp_format();
        return EXIT_SUCCESS;
}
