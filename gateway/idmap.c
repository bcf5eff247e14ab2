/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The device-id map. Lookups are on the hot path (every reading finds its device), so a slot
 * keeps the key's hash beside the pointers and probing rarely touches the key itself.
 *
 * The hash is not a keyed PRF like SipHash, which would cost a good part of the time budget of
 * a reading: a seeded multiply-xorshift over 8-byte words. The seed differs per map, so ids
 * that collide cannot simply be precomputed; the number of devices is bounded by the caller.
 */

#include <stdint.h>
#include <string.h>
#include <time.h>

#include "idmap.h"

typedef struct Slot {
        uint64_t hash;
        const char *key;
        void *value; /* NULL: empty */
} Slot;

struct IdMap {
        uint64_t seed;
        Slot *slots;
        size_t n_slots; /* a power of two */
        size_t n_entries;
};

#define SLOTS_MIN 16

static uint64_t idmap_hash(uint64_t seed, const char *key, size_t len) {
        const uint64_t k = UINT64_C(0xbf58476d1ce4e5b9);
        uint64_t h = seed ^ (len * UINT64_C(0x9e3779b97f4a7c15)), w;
        size_t i;

        for (i = 0; i + 8 <= len; i += 8) {
                memcpy(&w, key + i, 8);
                h = (h ^ w) * k;
                h ^= h >> 31;
        }
        if (i < len) {
                w = 0;
                memcpy(&w, key + i, len - i);
                h = (h ^ w) * k;
        }

        /* splitmix64's finaliser, so that the low bits used as the slot index depend on all bits */
        h ^= h >> 30;
        h *= k;
        h ^= h >> 27;
        h *= UINT64_C(0x94d049bb133111eb);
        h ^= h >> 31;
        return h;
}

int idmap_new(IdMap **ret) {
        _cleanup_free_ IdMap *m = NULL;
        struct timespec ts;

        m = new0(IdMap, 1);
        if (!m)
                return -ENOMEM;
        m->slots = new0(Slot, SLOTS_MIN);
        if (!m->slots)
                return -ENOMEM;
        m->n_slots = SLOTS_MIN;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        m->seed = idmap_hash((uint64_t) ts.tv_nsec ^ ((uint64_t) ts.tv_sec << 32), (const char *) &m, sizeof(m));

        *ret = TAKE_PTR(m);
        return 0;
}

IdMap *idmap_free(IdMap *m) {
        if (!m)
                return NULL;
        free(m->slots);
        return mfree(m);
}

/* The slot holding the key, or the empty slot where it would go. */
static size_t idmap_find(const IdMap *m, const char *key, uint64_t hash) {
        size_t mask = m->n_slots - 1;

        for (size_t i = hash & mask;; i = (i + 1) & mask) {
                const Slot *s = m->slots + i;

                if (!s->value || (s->hash == hash && streq(s->key, key)))
                        return i;
        }
}

void *idmap_get(const IdMap *m, const char *key) {
        return m->slots[idmap_find(m, key, idmap_hash(m->seed, key, strlen(key)))].value;
}

static int idmap_grow(IdMap *m) {
        size_t n = m->n_slots * 2, mask = n - 1;
        Slot *slots;

        slots = new0(Slot, n);
        if (!slots)
                return -ENOMEM;

        for (size_t i = 0; i < m->n_slots; i++) {
                size_t j;

                if (!m->slots[i].value)
                        continue;
                for (j = m->slots[i].hash & mask; slots[j].value; j = (j + 1) & mask)
                        ;
                slots[j] = m->slots[i];
        }

        free(m->slots);
        m->slots = slots;
        m->n_slots = n;
        return 0;
}

int idmap_put(IdMap *m, const char *key, void *value) {
        uint64_t hash = idmap_hash(m->seed, key, strlen(key));
        size_t i;
        int k;

        if (!value)
                return -EINVAL;
        if (m->slots[idmap_find(m, key, hash)].value)
                return -EEXIST;

        if (2 * (m->n_entries + 1) > m->n_slots) {
                k = idmap_grow(m);
                if (k < 0)
                        return k;
        }

        i = idmap_find(m, key, hash);
        m->slots[i] = (Slot) {
                .hash = hash,
                .key = key,
                .value = value,
        };
        m->n_entries++;
        return 0;
}

/* Without tombstones: later entries of the probe run move back into the hole, unless their home
 * slot lies cyclically after the hole (then they must not move before it). */
void *idmap_remove(IdMap *m, const char *key) {
        size_t mask = m->n_slots - 1, hole = idmap_find(m, key, idmap_hash(m->seed, key, strlen(key)));
        void *value = m->slots[hole].value;

        if (!value)
                return NULL;

        for (size_t j = hole;;) {
                size_t home;

                j = (j + 1) & mask;
                if (!m->slots[j].value)
                        break;

                home = m->slots[j].hash & mask;
                if (hole <= j ? (hole < home && home <= j) : (hole < home || home <= j))
                        continue;

                m->slots[hole] = m->slots[j];
                hole = j;
        }

        m->slots[hole] = (Slot) {};
        m->n_entries--;
        return value;
}

size_t idmap_size(const IdMap *m) {
        return m->n_entries;
}

bool idmap_iterate(const IdMap *m, size_t *i, void **ret_value) {
        for (; *i < m->n_slots; (*i)++)
                if (m->slots[*i].value) {
                        *ret_value = m->slots[(*i)++].value;
                        return true;
                }
        return false;
}
