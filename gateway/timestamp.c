/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Formatting of UTC timestamps with civil-from-days arithmetic, so the result never depends
 * on the TZ environment or on the C library's time zone state.
 */

#include <inttypes.h>
#include <stdio.h>

#include "timestamp.h"

char *timestamp_format(uint64_t usec, char buf[static TIMESTAMP_MAX]) {
        uint64_t secs = usec / 1000000, days = secs / 86400, sod = secs % 86400;
        /* Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here). */
        int64_t z = (int64_t) days + 719468, era = z / 146097, doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
        int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
        int64_t y = yoe + era * 400 + (m <= 2);

        snprintf(buf, TIMESTAMP_MAX, "%04" PRId64 "-%02" PRId64 "-%02" PRId64 "T%02u:%02u:%02u.%03uZ", y, m, d,
                 (unsigned) (sod / 3600), (unsigned) (sod / 60 % 60), (unsigned) (sod % 60),
                 (unsigned) (usec / 1000 % 1000));
        return buf;
}
