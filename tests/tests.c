/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Scratch files for unit tests: one private directory per test binary under $TMPDIR, removed
 * with everything in it when the binary exits, so tests never see each other's files.
 */

#include <ftw.h>
#include <limits.h>

#include "tests.h"

static char tmpdir[PATH_MAX];

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        return remove(path);
}

static void tmpdir_remove(void) {
        if (tmpdir[0])
                (void) nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *test_tmpdir(void) {
        if (!tmpdir[0]) {
                const char *t = getenv("TMPDIR") ?: "/tmp";

                snprintf(tmpdir, sizeof(tmpdir), "%s/blegate-test-XXXXXX", t);
                if (!mkdtemp(tmpdir))
                        TEST_FAIL("mkdtemp(%s): %m", tmpdir);
                atexit(tmpdir_remove);
        }
        return tmpdir;
}

const char *test_write_file(const char *name, const char *text) {
        static char path[PATH_MAX + 64];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", test_tmpdir(), name);
        f = fopen(path, "we");
        if (!f)
                TEST_FAIL("fopen(%s): %m", path);
        fputs(text, f);
        if (fclose(f) != 0)
                TEST_FAIL("fclose(%s): %m", path);
        return path;
}
