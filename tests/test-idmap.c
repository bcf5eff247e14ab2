/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The device-id map against a plain array as the model: put, get, remove in random order,
 * growth, removal inside probe runs, and iteration that sees every entry exactly once. */

#include "idmap.h"
#include "reading.h"
#include "tests.h"

#define N 5000

static char keys[N][DEVICE_ID_MAX + 1];
static bool present[N];

static uint64_t rng_state = 42;
static uint64_t rng(void) {
        uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static void check_model(IdMap *m) {
        size_t n = 0, seen = 0;
        void *v;

        for (size_t i = 0; i < N; i++) {
                void *got = idmap_get(m, keys[i]);
                if (present[i]) {
                        ASSERT_TRUE(got == keys[i]);
                        n++;
                } else
                        ASSERT_TRUE(got == NULL);
        }
        ASSERT_EQ(idmap_size(m), n);

        IDMAP_FOREACH(v, m) {
                size_t i = (size_t) ((char(*)[DEVICE_ID_MAX + 1]) v - keys);
                ASSERT_TRUE(i < N && present[i]);
                seen++;
        }
        ASSERT_EQ(seen, n);
}

/* An id in a Reading.device sized buffer, with junk after its NUL that must not matter. */
static const char *id(char buf[static DEVICE_ID_MAX + 1], const char *s) {
        memset(buf, 'x', DEVICE_ID_MAX + 1);
        strcpy(buf, s);
        return buf;
}

static void test_basic(void) {
        _cleanup_(idmap_freep) IdMap *m = NULL;
        char a[DEVICE_ID_MAX + 1], b[DEVICE_ID_MAX + 1], k[DEVICE_ID_MAX + 1], full[DEVICE_ID_MAX + 1];
        int va, vb;

        ASSERT_OK(idmap_new(&m));
        ASSERT_TRUE(idmap_get(m, id(k, "phone-1")) == NULL);
        ASSERT_OK(idmap_put(m, id(a, "phone-1"), &va));
        ASSERT_ERROR(idmap_put(m, id(k, "phone-1"), &vb), EEXIST);
        ASSERT_ERROR(idmap_put(m, id(b, "c1a2b3d4e5f6"), NULL), EINVAL);
        ASSERT_ERROR(idmap_put(m, id(k, ""), &vb), EINVAL);
        memset(full, 'a', sizeof(full)); /* no NUL within the buffer */
        ASSERT_ERROR(idmap_put(m, full, &vb), EINVAL);
        ASSERT_TRUE(idmap_get(m, full) == NULL);
        ASSERT_OK(idmap_put(m, b, &vb));

        /* Keys are copied: the caller's buffer may change. */
        id(a, "something-else");
        ASSERT_TRUE(idmap_get(m, id(k, "phone-1")) == &va);
        ASSERT_TRUE(idmap_get(m, id(k, "c1a2b3d4e5f6")) == &vb);
        ASSERT_TRUE(idmap_get(m, id(k, "phone-2")) == NULL);
        ASSERT_TRUE(idmap_get(m, id(k, "phone-")) == NULL);
        ASSERT_TRUE(idmap_get(m, id(k, "")) == NULL);
        ASSERT_TRUE(idmap_get(m, id(k, "123456789012345678901234567890123456")) == NULL);
        ASSERT_TRUE(idmap_remove(m, id(k, "phone-1")) == &va);
        ASSERT_TRUE(idmap_remove(m, id(k, "phone-1")) == NULL);
        ASSERT_EQ(idmap_size(m), 1);
}

static void test_random(void) {
        _cleanup_(idmap_freep) IdMap *m = NULL;

        ASSERT_OK(idmap_new(&m));
        for (size_t i = 0; i < N; i++)
                /* ids of every length 1..36, sharing long prefixes as MACs and phone ids do */
                snprintf(keys[i], sizeof(keys[i]), "%.*s%zu", (int) (i % 30), "dev-0000000000000000000000000000", i);

        for (unsigned round = 0; round < 20 * N; round++) {
                size_t i = rng() % N;

                if (present[i]) {
                        ASSERT_TRUE(idmap_remove(m, keys[i]) == keys[i]);
                        present[i] = false;
                } else {
                        ASSERT_OK(idmap_put(m, keys[i], keys[i]));
                        present[i] = true;
                }
                if (round % 4096 == 0)
                        check_model(m);
        }
        check_model(m);

        for (size_t i = 0; i < N; i++)
                if (present[i]) {
                        ASSERT_TRUE(idmap_remove(m, keys[i]) == keys[i]);
                        present[i] = false;
                }
        check_model(m);
        ASSERT_EQ(idmap_size(m), 0);
}

int main(void) {
        test_basic();
        test_random();
        return EXIT_SUCCESS;
}
