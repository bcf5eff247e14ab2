/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The few pieces of JSON output the CLI shares: numbers that read back as the same double,
 * and strings with the escapes JSON requires.
 */

#include <stdio.h>

#define JSON_NUMBER_MAX 32

/* The shortest of 15, 16 or 17 significant digits that reads back as v (which must be finite):
 * values read from text print as written, computed ones exactly. Whole numbers up to 2^53
 * print as integers. Returns buf. */
const char *json_format_number(double v, char buf[static JSON_NUMBER_MAX]);

/* v as a JSON number; NaN as null and ±infinity as ±1e999 (which parsers read as infinity). */
void json_print_number(FILE *out, double v);

/* s as a JSON string, quotes included. */
void json_print_string(FILE *out, const char *s);
