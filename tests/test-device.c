/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The device registry: a device appears with its first reading and counts every later one and
 * every anomaly event; the kind follows the type; the bound refuses new ids and counts their
 * readings; the list is sorted; the change bits say what to publish. */

#include "device.h"
#include "tests.h"

static Reading reading(const char *device, const char *type, uint32_t channels) {
        Reading r = { .channels = channels };

        snprintf(r.device, sizeof(r.device), "%s", device);
        snprintf(r.type, sizeof(r.type), "%s", type);
        return r;
}

static void test_kind(void) {
        ASSERT_EQ(device_kind_from_type("ruuvi"), DEVICE_KIND_RUUVI);
        ASSERT_EQ(device_kind_from_type("sensortag"), DEVICE_KIND_SENSORTAG);
        ASSERT_EQ(device_kind_from_type("thingy52"), DEVICE_KIND_THINGY52);
        ASSERT_EQ(device_kind_from_type("phone"), DEVICE_KIND_PHONE);
        ASSERT_EQ(device_kind_from_type("simulator"), DEVICE_KIND_REPLAY);
        ASSERT_EQ(device_kind_from_type(""), DEVICE_KIND_REPLAY);
        ASSERT_EQ(device_kind_from_type("Ruuvi"), DEVICE_KIND_REPLAY);
        ASSERT_EQ(device_kind_from_string("nope"), _DEVICE_KIND_INVALID);
        for (DeviceKind k = 0; k < _DEVICE_KIND_MAX; k++)
                ASSERT_EQ(device_kind_from_string(device_kind_to_string(k)), k);
        ASSERT_TRUE(device_kind_to_string(_DEVICE_KIND_MAX) == NULL);
}

static void test_readings_and_anomalies(void) {
        _cleanup_(device_registry_freep) DeviceRegistry *reg = NULL;
        Reading r = reading("e0e00f93a567", "ruuvi", CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY));
        AnomalyEvent e = { .device = "e0e00f93a567", .channel = CHANNEL_AX };
        AnomalyEvent unknown = { .device = "nobody" };
        Device *d = NULL, *d2 = NULL;

        ASSERT_ERROR(device_registry_new(0, &reg), EINVAL);
        ASSERT_OK(device_registry_new(8, &reg));

        ASSERT_EQ(device_registry_add_reading(reg, &r, 1000, &d), 1);
        ASSERT_STREQ(d->id, "e0e00f93a567");
        ASSERT_EQ(d->kind, DEVICE_KIND_RUUVI);
        ASSERT_EQ(d->rssi, DEVICE_RSSI_UNKNOWN);
        ASSERT_STREQ(d->address, "");
        ASSERT_TRUE(d->name == NULL);
        ASSERT_FALSE(d->connected);
        ASSERT_U64_EQ(d->readings_received, 1);
        ASSERT_U64_EQ(d->last_seen_usec, 1000);
        ASSERT_EQ(d->channels, CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY));
        ASSERT_EQ(d->changed, DEVICE_CHANGED_SEEN | DEVICE_CHANGED_CHANNELS);

        /* Known channels again: only seen changes. */
        d->changed = 0;
        r.channels = CHANNEL_BIT(CHANNEL_AX);
        ASSERT_EQ(device_registry_add_reading(reg, &r, 2000, &d2), 0);
        ASSERT_TRUE(d2 == d);
        ASSERT_U64_EQ(d->readings_received, 2);
        ASSERT_U64_EQ(d->last_seen_usec, 2000);
        ASSERT_EQ(d->changed, DEVICE_CHANGED_SEEN);

        /* A new channel and a new type. */
        d->changed = 0;
        r = reading("e0e00f93a567", "phone", CHANNEL_BIT(CHANNEL_GZ));
        ASSERT_EQ(device_registry_add_reading(reg, &r, 3000, NULL), 0);
        ASSERT_EQ(d->channels, CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY) | CHANNEL_BIT(CHANNEL_GZ));
        ASSERT_EQ(d->kind, DEVICE_KIND_PHONE);
        ASSERT_STREQ(d->type, "phone");
        ASSERT_EQ(d->changed, DEVICE_CHANGED_SEEN | DEVICE_CHANGED_CHANNELS | DEVICE_CHANGED_TYPE);

        d->changed = 0;
        ASSERT_EQ(device_registry_add_anomaly(reg, &e, &d2), 1);
        ASSERT_TRUE(d2 == d);
        ASSERT_U64_EQ(d->anomalies_detected, 1);
        ASSERT_EQ(d->changed, DEVICE_CHANGED_ANOMALIES);
        ASSERT_EQ(device_registry_add_anomaly(reg, &unknown, NULL), 0);

        r = reading("bad id!", "x", 0);
        ASSERT_ERROR(device_registry_add_reading(reg, &r, 0, NULL), EINVAL);
        ASSERT_EQ(device_registry_size(reg), 1);
}

static void test_lookup(void) {
        _cleanup_(device_registry_freep) DeviceRegistry *reg = NULL;
        Reading r = reading("phone-1", "simulator", 0);

        ASSERT_OK(device_registry_new(8, &reg));
        ASSERT_EQ(device_registry_add_reading(reg, &r, 0, NULL), 1);
        ASSERT_TRUE(device_registry_get(reg, "phone-1") != NULL);
        ASSERT_TRUE(device_registry_get(reg, "phone-2") == NULL);
        ASSERT_TRUE(device_registry_get(reg, "") == NULL);
        /* Any string, as decoded from an object path: too long, or with a slash. */
        ASSERT_TRUE(device_registry_get(reg, "phone-1/x") == NULL);
        ASSERT_TRUE(device_registry_get(reg, "0123456789012345678901234567890123456789") == NULL);
}

static void test_bound_and_list(void) {
        _cleanup_(device_registry_freep) DeviceRegistry *reg = NULL;
        _cleanup_free_ Device **list = NULL;
        const char *ids[] = { "c", "a", "d", "b" };
        Reading r;

        ASSERT_OK(device_registry_new(3, &reg));
        ASSERT_EQ(device_registry_list(reg, &list), 0);
        ASSERT_TRUE(list == NULL);

        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                r = reading(ids[i], "", 0);
                if (i < 3)
                        ASSERT_EQ(device_registry_add_reading(reg, &r, 0, NULL), 1);
                else
                        ASSERT_ERROR(device_registry_add_reading(reg, &r, 0, NULL), ENOSPC);
        }
        ASSERT_ERROR(device_registry_add_reading(reg, &r, 0, NULL), ENOSPC);
        ASSERT_U64_EQ(reg->untracked, 2);
        ASSERT_EQ(device_registry_size(reg), 3);

        /* Known devices still count when full. */
        r = reading("a", "", 0);
        ASSERT_EQ(device_registry_add_reading(reg, &r, 0, NULL), 0);

        ASSERT_EQ(device_registry_list(reg, &list), 3);
        ASSERT_STREQ(list[0]->id, "a");
        ASSERT_STREQ(list[1]->id, "c");
        ASSERT_STREQ(list[2]->id, "d");
        ASSERT_EQ(list[0]->kind, DEVICE_KIND_REPLAY);
        ASSERT_U64_EQ(list[0]->readings_received, 2);
}

static void test_radio(void) {
        _cleanup_(device_registry_freep) DeviceRegistry *reg = NULL;
        Reading r = reading("e0e00f93a567", "ruuvi", CHANNEL_BIT(CHANNEL_AX));
        Device *d;

        ASSERT_OK(device_registry_new(8, &reg));
        ASSERT_EQ(device_registry_add_reading(reg, &r, 0, &d), 1);
        ASSERT_STREQ(d->address, "");
        ASSERT_EQ(d->rssi, DEVICE_RSSI_UNKNOWN);
        ASSERT_TRUE(d->name == NULL);

        d->changed = 0;
        ASSERT_OK(device_set_radio(d, "E0:E0:0F:93:A5:67", -70, "Ruuvi A567"));
        ASSERT_EQ(d->changed, DEVICE_CHANGED_RADIO);
        ASSERT_STREQ(d->address, "E0:E0:0F:93:A5:67");
        ASSERT_EQ(d->rssi, -70);
        ASSERT_STREQ(d->name, "Ruuvi A567");

        /* The same again changes nothing; each field on its own marks the change. */
        d->changed = 0;
        ASSERT_OK(device_set_radio(d, "E0:E0:0F:93:A5:67", -70, "Ruuvi A567"));
        ASSERT_EQ(d->changed, 0);
        ASSERT_OK(device_set_radio(d, "E0:E0:0F:93:A5:67", -71, "Ruuvi A567"));
        ASSERT_EQ(d->changed, DEVICE_CHANGED_RADIO);
        d->changed = 0;
        ASSERT_OK(device_set_radio(d, "E0:E0:0F:93:A5:67", -71, NULL));
        ASSERT_EQ(d->changed, DEVICE_CHANGED_RADIO);
        ASSERT_TRUE(d->name == NULL);
}

int main(void) {
        test_kind();
        test_readings_and_anomalies();
        test_lookup();
        test_bound_and_list();
        test_radio();
        return EXIT_SUCCESS;
}
