/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzzes the configuration parser: arbitrary bytes as one blegate.conf. Whatever the input, the
 * parser must neither crash nor leak; the reports themselves are not looked at.
 */

#include <stdint.h>
#include <stdio.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void report_nothing(const char *file, unsigned line, const char *message, void *userdata) {
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_fclose_ FILE *f = NULL;

        f = fmemopen((void *) data, size, "r");
        if (!f)
                return 0;
        if (config_new(&c) < 0)
                return 0;
        (void) config_parse(c, f, "fuzz.conf", report_nothing, NULL);
        return 0;
}
