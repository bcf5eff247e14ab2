/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The device-id map. Lookups are on the hot path (every reading finds its device), so the
 * layout is chosen for that: open addressing with linear probing, at most half full, deletion by
 * backward shift (no tombstones); each slot holds the key itself as five 64-bit words, zero past
 * its end, with its hash, so a lookup builds the key in registers, hashes it with a few
 * independent multiplications and compares words, without touching the value or calling strcmp.
 *
 * The hash is not a keyed PRF like SipHash, which would cost a good part of the time budget of
 * a reading. It is seeded per map from getrandom(), so colliding ids cannot simply be looked
 * up; the number of devices is bounded by the caller anyway.
 */

#include <endian.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "idmap.h"

typedef struct Key {
        uint64_t w[5];
} Key;

typedef struct Slot {
        uint64_t hash;
        Key key;
        void *value; /* NULL: empty */
} Slot;

struct IdMap {
        uint64_t seed[5]; /* one per word of a Key */
        Slot *slots;
        size_t n_slots; /* a power of two */
        size_t n_entries;
};

#define SLOTS_MIN 16

/* The bytes of the word at id + off that lie before len, as a mask of the word loaded by
 * le64toh(): bytes in memory order from the low end. */
static inline uint64_t key_word_mask(size_t len, size_t off) {
        if (len >= off + 8)
                return UINT64_MAX;
        if (len <= off)
                return 0;
        return (UINT64_C(1) << (8 * (len - off))) - 1;
}

/* Returns false if the id is empty or fills its whole buffer. The words are loaded straight into
 * registers: building the key in memory and reading it back as words stalls store forwarding
 * on every reading. */
static inline bool key_make(Key *ret, const char id[static DEVICE_ID_MAX + 1]) {
        static_assert(DEVICE_ID_MAX + 1 == 4 * 8 + 4 + 1, "key_make() reads 37 bytes");
        size_t len = strnlen(id, DEVICE_ID_MAX + 1);
        uint64_t w0, w1, w2, w3;
        uint32_t tail4;
        uint8_t tail1;

        if (len == 0 || len > DEVICE_ID_MAX)
                return false;

        memcpy(&w0, id, 8);
        memcpy(&w1, id + 8, 8);
        memcpy(&w2, id + 16, 8);
        memcpy(&w3, id + 24, 8);
        memcpy(&tail4, id + 32, 4);
        memcpy(&tail1, id + 36, 1);

        *ret = (Key) {
                .w = {
                        le64toh(w0) & key_word_mask(len, 0),
                        le64toh(w1) & key_word_mask(len, 8),
                        le64toh(w2) & key_word_mask(len, 16),
                        le64toh(w3) & key_word_mask(len, 24),
                        ((uint64_t) le32toh(tail4) | (uint64_t) tail1 << 32) & key_word_mask(len, 32),
                },
        };
        return true;
}

static inline bool key_equal(const Key *a, const Key *b) {
        /* Written out: a loop is not unrolled at -O2, and this runs for every reading. */
        return ((a->w[0] ^ b->w[0]) | (a->w[1] ^ b->w[1]) | (a->w[2] ^ b->w[2]) | (a->w[3] ^ b->w[3]) |
                (a->w[4] ^ b->w[4])) == 0;
}

/* Each word, mixed with its own part of the seed, is multiplied by its own odd constant and the
 * products combined: they are independent, so the whole takes about three multiplications of
 * latency. One more multiply with shifts spreads the high bits into the low ones used as the
 * slot index. */
static inline uint64_t key_hash(const uint64_t seed[static 5], const Key *key) {
        uint64_t h;

        h = ((key->w[0] ^ seed[0]) * UINT64_C(0x9e3779b97f4a7c15)) ^
                ((key->w[1] ^ seed[1]) * UINT64_C(0xbf58476d1ce4e5b9)) ^
                ((key->w[2] ^ seed[2]) * UINT64_C(0x94d049bb133111eb)) ^
                ((key->w[3] ^ seed[3]) * UINT64_C(0xd6e8feb86659fd93)) ^
                ((key->w[4] ^ seed[4]) * UINT64_C(0xff51afd7ed558ccd));
        h ^= h >> 32;
        h *= UINT64_C(0xc4ceb9fe1a85ec53);
        h ^= h >> 29;
        return h;
}

int idmap_new(IdMap **ret) {
        _cleanup_free_ IdMap *m = NULL;

        m = new0(IdMap, 1);
        if (!m)
                return -ENOMEM;
        m->slots = new0(Slot, SLOTS_MIN);
        if (!m->slots)
                return -ENOMEM;
        m->n_slots = SLOTS_MIN;

        if (getrandom(m->seed, sizeof(m->seed), GRND_NONBLOCK) != sizeof(m->seed))
                /* Early at boot the pool may not be ready; any varying values will do. */
                for (size_t i = 0; i < ELEMENTSOF(m->seed); i++)
                        m->seed[i] = ((uint64_t) (uintptr_t) m ^ (uint64_t) time(NULL) ^ ((uint64_t) getpid() << 32)) *
                                     (2 * i + 1);

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
static inline size_t idmap_find(const IdMap *m, const Key *key, uint64_t hash) {
        size_t mask = m->n_slots - 1;

        for (size_t i = hash & mask;; i = (i + 1) & mask) {
                const Slot *s = m->slots + i;

                if (!s->value || (s->hash == hash && key_equal(&s->key, key)))
                        return i;
        }
}

void *idmap_get(const IdMap *m, const char id[static DEVICE_ID_MAX + 1]) {
        Key key;

        if (!key_make(&key, id))
                return NULL;
        return m->slots[idmap_find(m, &key, key_hash(m->seed, &key))].value;
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

int idmap_put(IdMap *m, const char id[static DEVICE_ID_MAX + 1], void *value) {
        uint64_t hash;
        Key key;
        size_t i;
        int k;

        if (!value || !key_make(&key, id))
                return -EINVAL;
        hash = key_hash(m->seed, &key);
        if (m->slots[idmap_find(m, &key, hash)].value)
                return -EEXIST;

        if (2 * (m->n_entries + 1) > m->n_slots) {
                k = idmap_grow(m);
                if (k < 0)
                        return k;
        }

        i = idmap_find(m, &key, hash);
        m->slots[i] = (Slot) {
                .hash = hash,
                .key = key,
                .value = value,
        };
        m->n_entries++;
        return 0;
}

/* Later entries of the probe run move back into the hole, unless their home slot lies
 * cyclically after the hole (then they must not move before it). */
void *idmap_remove(IdMap *m, const char id[static DEVICE_ID_MAX + 1]) {
        size_t mask = m->n_slots - 1, hole;
        void *value;
        Key key;

        if (!key_make(&key, id))
                return NULL;
        hole = idmap_find(m, &key, key_hash(m->seed, &key));
        value = m->slots[hole].value;
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
