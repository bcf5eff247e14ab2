/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * JSON output helpers for blegatectl: numbers that round-trip and strings escaped as
 * RFC 8259 requires. Output only; nothing in blegate parses JSON.
 */

#include <math.h>
#include <stdlib.h>

#include "json.h"

const char *json_format_number(double v, char buf[static JSON_NUMBER_MAX]) {
        /* Whole numbers up to 2^53 (counters, timestamps in µs) are exact: print every digit
         * rather than %g's "1.7e+15". */
        if (v == trunc(v) && fabs(v) <= 0x1p53) {
                snprintf(buf, JSON_NUMBER_MAX, "%.0f", v);
                return buf;
        }

        for (int digits = 15; digits <= 17; digits++) {
                snprintf(buf, JSON_NUMBER_MAX, "%.*g", digits, v);
                if (digits == 17 || strtod(buf, NULL) == v)
                        break;
        }
        return buf;
}

void json_print_number(FILE *out, double v) {
        char buf[JSON_NUMBER_MAX];

        if (isfinite(v))
                fputs(json_format_number(v, buf), out);
        else
                fputs(isnan(v) ? "null" : v > 0 ? "1e999" : "-1e999", out);
}

void json_print_string(FILE *out, const char *s) {
        fputc('"', out);
        for (; *s; s++) {
                unsigned char c = *s;

                if (c == '"' || c == '\\')
                        fprintf(out, "\\%c", c);
                else if (c < 0x20)
                        fprintf(out, "\\u%04x", c);
                else
                        fputc(c, out);
        }
        fputc('"', out);
}
