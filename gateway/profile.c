/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The table of sensor profiles and the lookups over it (by D-Bus Kind name, manufacturer data
 * key, service UUID, decoder name or characteristic UUID), plus the frame helpers every
 * decoder shares. The profiles themselves live in profile-<family>.c.
 */

#include <assert.h>
#include <string.h>
#include <strings.h>

#include "macro.h"
#include "profile-phone.h"
#include "profile-ruuvi.h"
#include "profile-sensortag.h"
#include "profile-thingy52.h"
#include "profile.h"

static const Profile *const profiles[_PROFILE_KIND_MAX] = {
        [PROFILE_RUUVI] = &profile_ruuvi,
        [PROFILE_SENSORTAG] = &profile_sensortag,
        [PROFILE_THINGY52] = &profile_thingy52,
        [PROFILE_PHONE] = &profile_phone,
};

const Profile *profile_get(ProfileKind kind) {
        if (kind < 0 || kind >= _PROFILE_KIND_MAX)
                return NULL;
        return profiles[kind];
}

const char *profile_kind_to_string(ProfileKind kind) {
        const Profile *p = profile_get(kind);

        return p ? p->name : NULL;
}

ProfileKind profile_kind_from_string(const char *s) {
        if (!s)
                return _PROFILE_KIND_INVALID;
        for (ProfileKind k = 0; k < _PROFILE_KIND_MAX; k++)
                if (streq(profiles[k]->name, s))
                        return k;
        return _PROFILE_KIND_INVALID;
}

const Profile *profile_from_company_id(uint16_t company_id) {
        for (ProfileKind k = 0; k < _PROFILE_KIND_MAX; k++)
                if (profiles[k]->advert && profiles[k]->company_id == company_id)
                        return profiles[k];
        return NULL;
}

const Profile *profile_from_service_uuid(const char *uuid) {
        if (!uuid)
                return NULL;
        for (ProfileKind k = 0; k < _PROFILE_KIND_MAX; k++)
                if (profiles[k]->service_uuid && strcasecmp(profiles[k]->service_uuid, uuid) == 0)
                        return profiles[k];
        return NULL;
}

const ProfileDecoder *profile_decoder_get(size_t index) {
        for (ProfileKind k = 0; k < _PROFILE_KIND_MAX; k++) {
                const Profile *p = profiles[k];

                if (p->advert && index-- == 0)
                        return p->advert;
                for (size_t i = 0; i < p->n_steps; i++)
                        if (p->steps[i].type == PROFILE_STEP_NOTIFY && index-- == 0)
                                return p->steps[i].decoder;
        }
        return NULL;
}

const ProfileDecoder *profile_decoder_from_name(const char *name) {
        const ProfileDecoder *d;

        if (!name)
                return NULL;
        for (size_t i = 0; (d = profile_decoder_get(i)); i++)
                if (streq(d->name, name))
                        return d;
        return NULL;
}

const ProfileDecoder *profile_decoder_from_uuid(const char *uuid) {
        const ProfileDecoder *d;

        if (!uuid)
                return NULL;
        for (size_t i = 0; (d = profile_decoder_get(i)); i++)
                if (d->uuid && strcasecmp(d->uuid, uuid) == 0)
                        return d;
        return NULL;
}

int profile_decode(const ProfileDecoder *d, const ProfileSettings *settings, const uint8_t *data, size_t size,
                   ProfileFrame *ret, size_t n_ret) {
        assert(d);
        assert(data || size == 0);
        assert(ret || n_ret == 0);

        return d->decode(settings ?: &PROFILE_SETTINGS_DEFAULTS, data, size, ret, n_ret);
}

void profile_frame_init(ProfileFrame *f) {
        *f = (ProfileFrame) {};
}

static ProfileField *frame_add(ProfileFrame *f, const char *name, bool valid) {
        /* The decoders add a fixed set of fields: running out is a programming error. */
        assert(f->n_fields < PROFILE_FIELDS_MAX);

        f->fields[f->n_fields] = (ProfileField) {
                .name = name,
                .valid = valid,
        };
        return &f->fields[f->n_fields++];
}

void profile_frame_add_number(ProfileFrame *f, const char *name, double value, bool valid) {
        frame_add(f, name, valid)->number = valid ? value : 0;
}

void profile_frame_add_text(ProfileFrame *f, const char *name, const char *text, bool valid) {
        ProfileField *field = frame_add(f, name, valid);

        field->is_text = true;
        if (valid) {
                assert(strlen(text) < sizeof(field->text));
                strcpy(field->text, text);
        }
}

const ProfileField *profile_frame_get_field(const ProfileFrame *f, const char *name) {
        for (size_t i = 0; i < f->n_fields; i++)
                if (streq(f->fields[i].name, name))
                        return &f->fields[i];
        return NULL;
}
