/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Wall-clock timestamps as blegate writes them: ISO 8601 in UTC with milliseconds and a "Z",
 * the form the Watson IoT historian wrote into Cloudant and the seed notebook parses
 * ("%Y-%m-%dT%H:%M:%S.%fZ").
 */

#include <stdint.h>

#define TIMESTAMP_MAX 64 /* room for any uint64_t input; real ones need 25 bytes */

/* Formats µs since the epoch into buf (at least TIMESTAMP_MAX bytes); returns buf. */
char *timestamp_format(uint64_t usec, char buf[static TIMESTAMP_MAX]);
