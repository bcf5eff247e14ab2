/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzzes every sensor decoder with bytes as they come off the air. The first input byte
 * selects the target, the rest is the value:
 *
 *   low 3 bits  0 ruuvi, 1 sensortag, 2 thingy52-raw, 3 thingy52-euler, 4 phone,
 *               5 phone identity, 6 phone config (as read), 7 every decoder of the table
 *   bits 4-5    the SensorTag range: 2 << n g
 *
 * The value is copied into a buffer of exactly its size, so a read past the end trips ASan in
 * the corpus driver too. Whatever the bytes: no crash, no leak, only the documented errors,
 * and what a decoder returns stays within what it declares.
 */

#include <math.h>

#include "macro.h"
#include "profile-phone.h"
#include "profile.h"

/* Not assert(): these checks are the point of the fuzzer, in every build. */
#define CHECK(expr)                     \
        do {                            \
                if (!(expr))            \
                        abort();        \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_frame(const ProfileDecoder *d, const ProfileFrame *f) {
        CHECK((f->reading.channels & ~d->channels) == 0);
        for (Channel c = 0; c < _CHANNEL_MAX; c++)
                if (reading_has(&f->reading, c))
                        CHECK(isfinite(f->reading.values[c]));
        CHECK(f->reading.device[0] == '\0');
        CHECK(f->reading.time_usec == 0 && f->reading.seq == 0);

        CHECK(f->n_fields <= PROFILE_FIELDS_MAX);
        for (size_t i = 0; i < f->n_fields; i++) {
                const ProfileField *field = f->fields + i;

                CHECK(field->name && field->name[0]);
                if (field->is_text)
                        CHECK(strnlen(field->text, sizeof(field->text)) < sizeof(field->text));
                else
                        CHECK(isfinite(field->number));
        }
}

static void fuzz_decoder(const ProfileDecoder *d, const ProfileSettings *s, const uint8_t *value, size_t size) {
        static ProfileFrame frames[PROFILE_FRAMES_MAX], again[PROFILE_FRAMES_MAX];
        int k;

        k = profile_decode(d, s, value, size, frames, ELEMENTSOF(frames));
        if (k < 0) {
                CHECK(k == -EBADMSG || k == -EOPNOTSUPP || k == -EPROTONOSUPPORT);
                return;
        }
        CHECK(k >= 1 && (size_t) k <= d->frames_max);
        for (int i = 0; i < k; i++)
                check_frame(d, frames + i);

        /* Pure: the same bytes decode the same way, and a short array is refused whole. */
        CHECK(profile_decode(d, s, value, size, again, ELEMENTSOF(again)) == k);
        for (int i = 0; i < k; i++) {
                CHECK(again[i].reading.channels == frames[i].reading.channels);
                CHECK(memcmp(again[i].reading.values, frames[i].reading.values, sizeof(frames[i].reading.values)) == 0);
                CHECK(again[i].n_fields == frames[i].n_fields);
                CHECK(again[i].sensor_seq == frames[i].sensor_seq);
        }
        CHECK(profile_decode(d, s, value, size, again, k - 1) == -ENOBUFS);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const names[] = { "ruuvi", "sensortag", "thingy52-raw", "thingy52-euler", "phone" };
        ProfileSettings settings = PROFILE_SETTINGS_DEFAULTS;
        _cleanup_free_ uint8_t *value = NULL;
        char id[DEVICE_ID_MAX + 1];
        unsigned target;
        int k;

        if (size < 1 || size > PROFILE_VALUE_MAX + 1)
                return 0;
        target = data[0] & 7;
        settings.sensortag_range_g = 2u << ((data[0] >> 4) & 3);

        /* At least one byte, so the value has an address of its own even when empty. */
        value = malloc(MAX(size - 1, (size_t) 1));
        if (!value)
                return 0;
        memcpy(value, data + 1, size - 1);
        size--;

        switch (target) {
        case 5:
                k = profile_phone_identity(value, size, id);
                CHECK(k == 0 || k == -EBADMSG);
                if (k == 0)
                        CHECK(strlen(id) == size && device_id_is_valid(id, size));
                break;
        case 6:
                k = profile_phone_check_config(value, size);
                CHECK(k == 0 || k == -EBADMSG || k == -EOPNOTSUPP || k == -EPROTONOSUPPORT);
                break;
        case 7:
                for (size_t i = 0; profile_decoder_get(i); i++)
                        fuzz_decoder(profile_decoder_get(i), &settings, value, size);
                break;
        default: {
                const ProfileDecoder *d = profile_decoder_from_name(names[target]);

                CHECK(d);
                fuzz_decoder(d, &settings, value, size);
        }
        }
        return 0;
}
