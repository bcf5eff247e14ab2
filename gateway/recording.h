/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A recording: readings saved as a CSV file, read back by the daemon's replay source and by
 * "blegatectl analyze". The first non-empty line is the header; its cells name the columns,
 * case-sensitive and in any order:
 *
 *   timestamp    required: epoch milliseconds ("1515585600123", optionally with a fraction of
 *                up to 9 digits, "1515585600123.5"), or ISO 8601 UTC
 *                "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (a space may replace the "T", "+00:00" the
 *                "Z"; fractions of up to 9 digits, kept to microseconds). Other offsets, times
 *                before 1970 and years after 9999 are rejected.
 *   deviceId     optional; without it every reading comes from device "replay".
 *   deviceType   optional; without it, or where its cell is empty, the type is "replay".
 *   ax ay az gx gy gz mx my mz oa ob og
 *                channel columns (see reading.h): an empty cell is a missing value, anything
 *                else must be a finite decimal number in the C locale.
 *
 * Any other column (e.g. "eventType") is ignored. A header naming a known column twice, or
 * none called "timestamp", is rejected.
 *
 * This is deliberately a small dialect of CSV, the one our own tools and pandas' to_csv()
 * write for these columns: lines end in "\n" or "\r\n", a UTF-8 byte order mark at the start
 * is skipped, empty lines are skipped, a cell may be wrapped in double quotes, which are
 * stripped, but quotes inside a cell and commas inside a quoted cell are not supported (the
 * comma still splits the cell). Lines are limited to RECORDING_LINE_MAX bytes.
 *
 * Every data line that is not a valid reading (wrong number of cells, a bad cell, too long)
 * is reported by recording_next() and skipped, so one bad line never hides the rest of a
 * file. A reading's seq is its line number in the file: increasing per device, and it points
 * the user at the line.
 *
 * The reader does its own buffering and line splitting and allocates nothing per line, since
 * "blegatectl analyze" has to get through a million rows a second.
 */

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"
#include "reading.h"

/* Longest line accepted, without its line terminator. */
#define RECORDING_LINE_MAX (64U * 1024U)

/* Device id and type of readings when the recording does not name them. */
#define RECORDING_DEVICE_DEFAULT "replay"

typedef struct Recording Recording;

/* Opens the file at path ("-" reads standard input) and reads and checks the header. On a bad
 * header returns -EBADMSG and, if ret_error is non-NULL, sets *ret_error to a malloc'd
 * explanation without file name or line (the caller frees it); otherwise *ret_error is NULL. */
int recording_open(const char *path, Recording **ret, char **ret_error);
/* The same on an open fd, which the recording takes ownership of in all cases (it is closed on
 * failure too); name is used in messages. */
int recording_open_fd(int fd, const char *name, Recording **ret, char **ret_error);
Recording *recording_free(Recording *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(Recording *, recording_free);

/* Reads the next reading. Returns > 0 with *ret filled; 0 at the end of the file; -EBADMSG if
 * the next line was malformed and skipped: recording_error() says why, recording_line()
 * where, and the following call goes on with the line after it. Any other negative errno is
 * an I/O error. *ret is only written when > 0 is returned. */
int recording_next(Recording *r, Reading *ret);

/* The name given to recording_open_fd(), the path, or "<stdin>". */
const char *recording_name(const Recording *r);
/* The 1-based line number of the last line returned or rejected (the header's after open). */
unsigned recording_line(const Recording *r);
/* Why the last line was rejected, e.g. "column 'ax': not a number: 'abc'"; "" if it was not. */
const char *recording_error(const Recording *r);
/* Mask of CHANNEL_BIT()s of the channel columns in the header. */
uint32_t recording_channels(const Recording *r);
/* Reads only these channels from now on: the cells of the other channel columns are ignored,
 * as unknown columns are, so they cost nothing and a bad cell there rejects no line. */
void recording_select_channels(Recording *r, uint32_t channels);
bool recording_has_device_id(const Recording *r);
bool recording_has_device_type(const Recording *r);
/* The timestamp cell of the last reading as written, without quotes; "" if the last call did
 * not return a reading. Valid until the next call of recording_next(). */
const char *recording_timestamp(const Recording *r);
