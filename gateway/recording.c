/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The recording reader: turns the lines of a CSV recording (format in recording.h) into
 * readings. It reads the file through one buffer of its own and hands out lines in place, so
 * a line costs two memchr() passes (one for its end, one for its commas), one conversion per
 * channel value and no allocation. Short decimals, nearly every value, are converted by hand
 * to the very double strtod() would give (see parse_number_fast()), the rest by strtod().
 * Timestamps are parsed by hand too: strptime() and timegm() would be slower and depend on
 * the process's locale and TZ, and the set of formats we take is small.
 *
 * A line is only ever taken as a whole: one that does not fit (longer than
 * RECORDING_LINE_MAX) is dropped while it streams past, never truncated into a reading.
 */

#include <assert.h>
#include <fcntl.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "recording.h"

/* Large reads for throughput; at least twice a line, so that after moving an unfinished line
 * to the front there is always room to read more of it. */
#define BUFFER_SIZE (256U * 1024U)
static_assert(BUFFER_SIZE > 2 * (RECORDING_LINE_MAX + 2), "buffer must hold a line and more");

/* 10000-01-01T00:00:00Z: timestamps stay within four-digit years, in both forms. */
#define TIME_USEC_END UINT64_C(253402300800000000)

/* What each header cell names: a channel (its Channel value), or one of these. */
enum {
        COLUMN_TIMESTAMP = _CHANNEL_MAX,
        COLUMN_DEVICE_ID,
        COLUMN_DEVICE_TYPE,
        COLUMN_IGNORED,
};

struct Recording {
        int fd;
        char *name;

        /* buf[start..end) is read but not yet consumed. One byte more than BUFFER_SIZE is
         * allocated, for the NUL after a last line that has no "\n". */
        char *buf;
        size_t start, end;
        bool eof;
        bool discarding; /* inside a line too long to keep: dropping bytes until its end */
        unsigned line;

        uint8_t *columns; /* what each header cell names */
        size_t n_columns;
        uint32_t channels;
        bool has_device_id, has_device_type;

        locale_t c_locale; /* strtod() in the C locale whatever the program's LC_NUMERIC */
        const char *timestamp;
        char error[256];
};

static const char *column_name(unsigned column) {
        switch (column) {
        case COLUMN_TIMESTAMP:
                return "timestamp";
        case COLUMN_DEVICE_ID:
                return "deviceId";
        case COLUMN_DEVICE_TYPE:
                return "deviceType";
        default:
                return channel_to_string(column);
        }
}

/* Enough for a whole device id. */
#define EXCERPT_MAX 40

/* Quotes bytes from the file for a message: short, and escaped, so that junk in a file cannot
 * flood or garble the user's terminal. */
static const char *cell_excerpt(char *buf, size_t size, const char *s, size_t n) {
        size_t k = 0;

        assert(size >= 5);

        for (size_t i = 0; i < n; i++) {
                unsigned char c = s[i];

                if (i >= EXCERPT_MAX || k + 4 + 4 >= size) {
                        memcpy(buf + k, "...", 4);
                        return buf;
                }
                if (c >= 0x20 && c < 0x7f && c != '\\')
                        buf[k++] = c;
                else
                        k += snprintf(buf + k, size - k, "\\x%02x", c);
        }
        buf[k] = '\0';
        return buf;
}

_printf_(2, 3) static int recording_fail(Recording *r, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(r->error, sizeof(r->error), format, ap);
        va_end(ap);
        return -EBADMSG;
}

static int recording_fail_cell(Recording *r, unsigned column, const char *why, const char *s, size_t n) {
        char excerpt[EXCERPT_MAX * 4 + 8];

        return recording_fail(r, "column '%s': %s: '%s'", column_name(column), why,
                              cell_excerpt(excerpt, sizeof(excerpt), s, n));
}

/* Moves the unconsumed bytes to the front and reads more after them. */
static int recording_fill(Recording *r) {
        ssize_t n;

        if (r->start > 0) {
                memmove(r->buf, r->buf + r->start, r->end - r->start);
                r->end -= r->start;
                r->start = 0;
        }
        assert(r->end < BUFFER_SIZE);

        do
                n = read(r->fd, r->buf + r->end, BUFFER_SIZE - r->end);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        if (n == 0)
                r->eof = true;
        r->end += n;
        return 0;
}

/* Returns 1 and the next line, without its terminator and NUL-terminated in place (valid until
 * the next call); 0 at the end of the file; -EBADMSG after dropping a line that is too long. */
static int recording_read_line(Recording *r, char **ret_line, size_t *ret_len) {
        size_t scanned = 0; /* bytes after start known to hold no "\n" */
        char *p, *nl;
        size_t len;
        int k;

        for (;;) {
                p = r->buf + r->start;
                nl = memchr(p + scanned, '\n', r->end - r->start - scanned);
                if (nl) {
                        len = nl - p;
                        r->start += len + 1;
                        break;
                }
                if (r->eof) {
                        if (r->start == r->end && !r->discarding)
                                return 0;
                        len = r->end - r->start; /* the last line, without "\n" */
                        r->start = r->end;
                        break;
                }

                /* No whole line buffered. Beyond this size it cannot be a good one (+1 for a
                 * "\r"), and dropping it keeps the buffer from ever holding more than a line. */
                if (r->end - r->start > RECORDING_LINE_MAX + 1) {
                        r->discarding = true;
                        r->start = r->end;
                }
                scanned = r->end - r->start;
                k = recording_fill(r);
                if (k < 0)
                        return k;
        }

        r->line++;
        if (len > 0 && p[len - 1] == '\r')
                len--;
        if (r->discarding || len > RECORDING_LINE_MAX) {
                r->discarding = false;
                return recording_fail(r, "line longer than %u bytes", RECORDING_LINE_MAX);
        }

        p[len] = '\0';
        *ret_line = p;
        *ret_len = len;
        return 1;
}

static void cell_unquote(char **s, char **e) {
        if (*e - *s >= 2 && (*s)[0] == '"' && (*e)[-1] == '"') {
                (*s)++;
                (*e)--;
        }
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* Exactly n digits. */
static bool parse_fixed(const char *s, size_t n, unsigned *ret) {
        unsigned v = 0;

        for (size_t i = 0; i < n; i++) {
                if (!is_digit(s[i]))
                        return false;
                v = v * 10 + (unsigned) (s[i] - '0');
        }
        *ret = v;
        return true;
}

/* The digits after a decimal point, 1 to 9 of them, as nanoseconds of the unit they divide.
 * Returns the end of the digits, or NULL. */
static const char *parse_fraction(const char *s, const char *e, uint32_t *ret) {
        uint32_t v = 0, scale = 1000000000;
        const char *p = s;

        for (; p < e && is_digit(*p); p++) {
                if (p - s >= 9)
                        return NULL;
                scale /= 10;
                v += (uint32_t) (*p - '0') * scale;
        }
        if (p == s)
                return NULL;
        *ret = v;
        return p;
}

static bool year_is_leap(unsigned y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned month_days(unsigned y, unsigned m) {
        static const uint8_t days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

        return days[m - 1] + (m == 2 && year_is_leap(y));
}

/* Leap years in [1, y). */
static unsigned leap_years_before(unsigned y) {
        return (y - 1) / 4 - (y - 1) / 100 + (y - 1) / 400;
}

/* Days from 1970-01-01 to y-m-d (y >= 1970) in the proleptic Gregorian calendar that POSIX
 * time uses: 365 a year, plus one per leap year passed, plus the months of this year. */
static uint64_t days_since_epoch(unsigned y, unsigned m, unsigned d) {
        static const uint16_t before_month[12] = { 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334 };
        uint64_t days = 365 * (uint64_t) (y - 1970) + leap_years_before(y) - leap_years_before(1970);

        days += before_month[m - 1] + (m > 2 && year_is_leap(y));
        return days + d - 1;
}

/* YYYY-MM-DD[T ]HH:MM:SS[.fraction](Z|+00:00). Returns NULL or why not. */
static const char *parse_iso8601(const char *s, size_t n, uint64_t *ret) {
        const char *p, *e = s + n;
        unsigned y, mo, d, h, mi, sec;
        uint32_t frac = 0;

        if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') || s[13] != ':' || s[16] != ':')
                return "not a timestamp";
        if (!parse_fixed(s, 4, &y) || !parse_fixed(s + 5, 2, &mo) || !parse_fixed(s + 8, 2, &d) ||
            !parse_fixed(s + 11, 2, &h) || !parse_fixed(s + 14, 2, &mi) || !parse_fixed(s + 17, 2, &sec))
                return "not a timestamp";

        p = s + 19;
        if (*p == '.') {
                p = parse_fraction(p + 1, e, &frac);
                if (!p)
                        return "not a timestamp";
        }
        if (e - p == 6 && (p[0] == '+' || p[0] == '-') && is_digit(p[1]) && is_digit(p[2]) && p[3] == ':' &&
            is_digit(p[4]) && is_digit(p[5])) {
                if (memcmp(p, "+00:00", 6) != 0)
                        return "not UTC";
        } else if (e - p != 1 || *p != 'Z')
                return "not a timestamp";

        /* No leap second: POSIX time has no place for it. */
        if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 || sec > 59)
                return "out of range";

        *ret = ((days_since_epoch(y, mo, d) * 24 + h) * 60 + mi) * 60 + sec;
        *ret = *ret * 1000000 + frac / 1000;
        return NULL;
}

/* Epoch milliseconds, digits with an optional fraction. Returns NULL or why not. */
static const char *parse_epoch_msec(const char *s, size_t n, uint64_t *ret) {
        const char *p = s, *e = s + n;
        uint64_t msec = 0;
        uint32_t frac = 0;
        unsigned digits = 0;

        for (; p < e && is_digit(*p); p++) {
                /* 16 significant digits are beyond TIME_USEC_END, and cannot overflow. */
                if (digits < 16)
                        msec = msec * 10 + (uint64_t) (*p - '0');
                if (msec > 0)
                        digits++;
        }
        if (p == s)
                return "not a timestamp";
        if (p < e && *p == '.') {
                p = parse_fraction(p + 1, e, &frac);
                if (!p)
                        return "not a timestamp";
        }
        if (p != e)
                return "not a timestamp";
        if (digits >= 16 || msec >= TIME_USEC_END / 1000)
                return "out of range";

        *ret = msec * 1000 + frac / 1000000;
        return NULL;
}

static const char *parse_timestamp(const char *s, size_t n, uint64_t *ret) {
        if (n > 4 && s[4] == '-')
                return parse_iso8601(s, n, ret);
        return parse_epoch_msec(s, n, ret);
}

/* Most numbers in a recording are short decimals. For those, one exact floating-point
 * operation gives the same, correctly rounded, double as strtod(), in a fraction of its time:
 * a mantissa of at most 2^53 and a power of ten of at most 10^22 are both exact doubles, and
 * IEEE 754 rounds the one product or quotient correctly. Returns false for anything else, and
 * where intermediate results may carry excess precision (x87), leaving it to strtod(). */
static bool parse_number_fast(const char *s, const char *e, double *ret) {
#if FLT_EVAL_METHOD == 0
        static const double powers_of_ten[] = {
                1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
        };
        bool negative = false, any = false;
        unsigned digits = 0;
        int exp10 = 0;
        uint64_t m = 0;
        double v;

        if (s < e && (*s == '-' || *s == '+'))
                negative = *s++ == '-';
        for (bool fraction = false;; s++) {
                if (s < e && *s == '.' && !fraction) {
                        fraction = true;
                        continue;
                }
                if (s >= e || !is_digit(*s))
                        break;
                any = true;
                exp10 -= fraction;
                if (m == 0 && *s == '0')
                        continue; /* leading zeros are not significant */
                if (++digits > 19)
                        return false;
                m = m * 10 + (uint64_t) (*s - '0');
        }
        if (!any)
                return false;
        if (s < e && (*s == 'e' || *s == 'E')) {
                bool exp_negative = false;
                const char *start;
                int x = 0;

                if (++s < e && (*s == '-' || *s == '+'))
                        exp_negative = *s++ == '-';
                for (start = s; s < e && is_digit(*s); s++) {
                        if (s - start >= 4)
                                return false;
                        x = x * 10 + (*s - '0');
                }
                if (s == start)
                        return false;
                exp10 += exp_negative ? -x : x;
        }
        if (s != e || m > UINT64_C(1) << 53 || exp10 < -22 || exp10 > 22)
                return false;

        v = (double) m;
        v = exp10 < 0 ? v / powers_of_ten[-exp10] : v * powers_of_ten[exp10];
        *ret = negative ? -v : v;
        return true;
#else
        return false;
#endif
}

/* strtod() takes more than we want (hex, "nan", "inf", leading blanks): let only plain decimal
 * notation through to it. */
static bool number_is_plain(const char *s, const char *e) {
        for (; s < e; s++)
                if (!is_digit(*s) && *s != '.' && *s != '-' && *s != '+' && *s != 'e' && *s != 'E')
                        return false;
        return true;
}

static int recording_parse_cell(Recording *r, unsigned column, char *s, char *e, Reading *reading) {
        const char *why;
        char *end;
        double v;

        cell_unquote(&s, &e);

        switch (column) {
        case COLUMN_TIMESTAMP:
                why = parse_timestamp(s, e - s, &reading->time_usec);
                if (why)
                        return recording_fail_cell(r, column, why, s, e - s);
                *e = '\0';
                r->timestamp = s;
                return 0;

        case COLUMN_DEVICE_ID:
                if (!device_id_is_valid(s, e - s))
                        return recording_fail_cell(r, column, "not a valid device id", s, e - s);
                memcpy(reading->device, s, e - s);
                return 0;

        case COLUMN_DEVICE_TYPE:
                if (s == e)
                        return 0;
                if (!device_id_is_valid(s, e - s))
                        return recording_fail_cell(r, column, "not a valid device type", s, e - s);
                memcpy(reading->type, s, e - s);
                return 0;

        case COLUMN_IGNORED:
                return 0;

        default:
                assert(column < _CHANNEL_MAX);

                if (s == e)
                        return 0; /* missing value */
                if (parse_number_fast(s, e, &v)) {
                        reading_set(reading, column, v);
                        return 0;
                }
                if (!number_is_plain(s, e))
                        return recording_fail_cell(r, column, "not a number", s, e - s);
                *e = '\0';
                v = strtod_l(s, &end, r->c_locale);
                if (end != e)
                        return recording_fail_cell(r, column, "not a number", s, e - s);
                if (!isfinite(v))
                        return recording_fail_cell(r, column, "out of range", s, e - s);
                reading_set(reading, column, v);
                return 0;
        }
}

static int recording_parse_line(Recording *r, char *line, size_t len, Reading *ret) {
        Reading reading = { .seq = r->line };
        char *p = line, *end = line + len;
        size_t n_cells = 0;
        int error = 0;

        /* Split all of the line even after a bad cell: a wrong number of cells explains a bad
         * cell better than the other way round (a shifted column), so it is reported first. */
        for (;;) {
                char *comma = memchr(p, ',', end - p), *e = comma ?: end;

                if (n_cells < r->n_columns && error == 0)
                        error = recording_parse_cell(r, r->columns[n_cells], p, e, &reading);
                n_cells++;
                if (!comma)
                        break;
                p = comma + 1;
        }
        if (n_cells != r->n_columns) {
                r->timestamp = NULL;
                return recording_fail(r, "%zu cells, but the header has %zu", n_cells, r->n_columns);
        }
        if (error < 0) {
                r->timestamp = NULL;
                return error;
        }

        if (reading.device[0] == '\0')
                strcpy(reading.device, RECORDING_DEVICE_DEFAULT);
        if (reading.type[0] == '\0')
                strcpy(reading.type, RECORDING_DEVICE_DEFAULT);
        *ret = reading;
        return 1;
}

_printf_(2, 3) static int header_fail(char **ret_error, const char *format, ...) {
        va_list ap;
        int k;

        if (!ret_error)
                return -EBADMSG;

        va_start(ap, format);
        k = vasprintf(ret_error, format, ap);
        va_end(ap);
        if (k < 0) {
                *ret_error = NULL;
                return -ENOMEM;
        }
        return -EBADMSG;
}

static int recording_parse_header(Recording *r, char *line, size_t len, char **ret_error) {
        char *p = line, *end = line + len;
        bool timestamp = false;

        r->n_columns = 1;
        for (char *c = line; (c = memchr(c, ',', end - c)); c++)
                r->n_columns++;
        r->columns = new(uint8_t, r->n_columns);
        if (!r->columns)
                return -ENOMEM;

        for (size_t i = 0; i < r->n_columns; i++) {
                char *comma = memchr(p, ',', end - p), *e = comma ?: end, *s = p;
                unsigned column = COLUMN_IGNORED;
                Channel c;

                cell_unquote(&s, &e);
                c = channel_from_substring(s, e - s);
                if (c >= 0) {
                        if (r->channels & CHANNEL_BIT(c))
                                return header_fail(ret_error, "duplicate column '%s'", channel_to_string(c));
                        r->channels |= CHANNEL_BIT(c);
                        column = c;
                } else if (e - s == 9 && memcmp(s, "timestamp", 9) == 0) {
                        if (timestamp)
                                return header_fail(ret_error, "duplicate column 'timestamp'");
                        timestamp = true;
                        column = COLUMN_TIMESTAMP;
                } else if (e - s == 8 && memcmp(s, "deviceId", 8) == 0) {
                        if (r->has_device_id)
                                return header_fail(ret_error, "duplicate column 'deviceId'");
                        r->has_device_id = true;
                        column = COLUMN_DEVICE_ID;
                } else if (e - s == 10 && memcmp(s, "deviceType", 10) == 0) {
                        if (r->has_device_type)
                                return header_fail(ret_error, "duplicate column 'deviceType'");
                        r->has_device_type = true;
                        column = COLUMN_DEVICE_TYPE;
                }
                r->columns[i] = column;
                if (comma)
                        p = comma + 1;
        }

        if (!timestamp)
                return header_fail(ret_error, "no 'timestamp' column");
        return 0;
}

int recording_open_fd(int fd, const char *name, Recording **ret, char **ret_error) {
        _cleanup_close_ int fd_owned = fd;
        _cleanup_(recording_freep) Recording *r = NULL;
        char *line;
        size_t len;
        int k;

        assert(fd >= 0);
        assert(name);
        assert(ret);

        if (ret_error)
                *ret_error = NULL;

        r = new0(Recording, 1);
        if (!r)
                return -ENOMEM;
        r->fd = TAKE_FD(fd_owned);

        r->name = strdup(name);
        r->buf = malloc(BUFFER_SIZE + 1);
        if (!r->name || !r->buf)
                return -ENOMEM;
        r->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t) 0);
        if (!r->c_locale)
                return negative_errno();

        /* Only a hint; fails on pipes. */
        (void) posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);

        while (r->end < 3 && !r->eof) {
                k = recording_fill(r);
                if (k < 0)
                        return k;
        }
        if (r->end >= 3 && memcmp(r->buf, "\xEF\xBB\xBF", 3) == 0)
                r->start = 3;

        do {
                k = recording_read_line(r, &line, &len);
                if (k == -EBADMSG)
                        return header_fail(ret_error, "header line longer than %u bytes", RECORDING_LINE_MAX);
                if (k < 0)
                        return k;
                if (k == 0)
                        return header_fail(ret_error, "no header line");
        } while (len == 0);

        k = recording_parse_header(r, line, len, ret_error);
        if (k < 0)
                return k;

        *ret = TAKE_PTR(r);
        return 0;
}

int recording_open(const char *path, Recording **ret, char **ret_error) {
        const char *name = path;
        int fd;

        assert(path);
        assert(ret);

        if (ret_error)
                *ret_error = NULL;

        /* A copy, so that freeing the recording does not close the process's stdin. */
        if (streq(path, "-")) {
                fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
                name = "<stdin>";
        } else
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;

        return recording_open_fd(fd, name, ret, ret_error);
}

Recording *recording_free(Recording *r) {
        if (!r)
                return NULL;

        safe_close(r->fd);
        if (r->c_locale)
                freelocale(r->c_locale);
        free(r->columns);
        free(r->buf);
        free(r->name);
        return mfree(r);
}

int recording_next(Recording *r, Reading *ret) {
        char *line;
        size_t len;
        int k;

        assert(r);
        assert(ret);

        r->timestamp = NULL;
        r->error[0] = '\0';

        do {
                k = recording_read_line(r, &line, &len);
                if (k <= 0)
                        return k;
        } while (len == 0);

        return recording_parse_line(r, line, len, ret);
}

const char *recording_name(const Recording *r) {
        assert(r);
        return r->name;
}

unsigned recording_line(const Recording *r) {
        assert(r);
        return r->line;
}

const char *recording_error(const Recording *r) {
        assert(r);
        return r->error;
}

void recording_select_channels(Recording *r, uint32_t channels) {
        for (size_t i = 0; i < r->n_columns; i++)
                if (r->columns[i] < _CHANNEL_MAX && !(channels & CHANNEL_BIT(r->columns[i])))
                        r->columns[i] = COLUMN_IGNORED;
        r->channels &= channels;
}

uint32_t recording_channels(const Recording *r) {
        assert(r);
        return r->channels;
}

bool recording_has_device_id(const Recording *r) {
        assert(r);
        return r->has_device_id;
}

bool recording_has_device_type(const Recording *r) {
        assert(r);
        return r->has_device_type;
}

const char *recording_timestamp(const Recording *r) {
        assert(r);
        return strempty(r->timestamp);
}
