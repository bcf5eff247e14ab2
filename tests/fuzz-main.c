/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The standalone driver for our fuzzers: feeds every file named on the command line (or found
 * in a directory named there) to LLVMFuzzerTestOneInput once. Linked into each fuzz-*.c when
 * libFuzzer is not used, so the corpora under tests/fuzz/ run as regression tests in every
 * build, sanitizers included.
 */

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size = 0, alloc = 0, n;

        f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "%s: %m\n", path);
                return -errno;
        }
        do {
                if (size == alloc) {
                        uint8_t *b = realloc(buf, alloc = alloc * 2 + 4096);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                }
                n = fread(buf + size, 1, alloc - size, f);
                size += n;
        } while (n > 0);
        if (ferror(f)) {
                fprintf(stderr, "%s: read error\n", path);
                return -EIO;
        }

        (void) LLVMFuzzerTestOneInput(buf, size);
        return 1;
}

static int run_path(const char *path) {
        struct stat st;
        DIR *d;
        struct dirent *de;
        int r, count = 0;

        if (stat(path, &st) < 0) {
                fprintf(stderr, "%s: %m\n", path);
                return -errno;
        }
        if (!S_ISDIR(st.st_mode))
                return run_file(path);

        d = opendir(path);
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                char p[4096];

                if (de->d_name[0] == '.')
                        continue;
                snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
                r = run_path(p);
                if (r < 0) {
                        closedir(d);
                        return r;
                }
                count += r;
        }
        closedir(d);
        return count;
}

int main(int argc, char *argv[]) {
        int total = 0;

        if (argc < 2) {
                fprintf(stderr, "Usage: %s FILE|DIR...\n", argv[0]);
                return EXIT_FAILURE;
        }
        for (int i = 1; i < argc; i++) {
                int r = run_path(argv[i]);
                if (r < 0)
                        return EXIT_FAILURE;
                total += r;
        }
        if (total == 0) {
                fprintf(stderr, "No corpus files found: a fuzzer regression test without inputs proves nothing.\n");
                return EXIT_FAILURE;
        }
        printf("%d inputs ran cleanly.\n", total);
        return EXIT_SUCCESS;
}
