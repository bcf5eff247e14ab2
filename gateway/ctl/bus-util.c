/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The helpers of blegatectl's bus commands. Errors are logged here once, in words a user can
 * act on ("blegated is not running", "run it as root"), and mapped to the exit codes of
 * verbs.h, so every command reports the same failure the same way.
 */

#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "bus-names.h"
#include "bus-properties.h"
#include "bus-util.h"
#include "log.h"
#include "verbs.h"

int ctl_bus_open(sd_bus **ret) {
        int k;

        k = sd_bus_open_system(ret);
        if (k < 0) {
                log_error_errno(k, "Failed to connect to the system bus: %m. Is D-Bus running? blegated cannot "
                                "be reached without it.");
                return EXIT_NOT_RUNNING;
        }
        return 0;
}

int ctl_bus_log_error(const char *what, bool changes, const sd_bus_error *error, int r) {
        if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER)) {
                log_error("blegated is not running: nothing owns " BUS_NAME " on the system bus.");
                return EXIT_NOT_RUNNING;
        }
        if (sd_bus_error_has_name(error, SD_BUS_ERROR_ACCESS_DENIED) || r == -EACCES || r == -EPERM) {
                const char *why = sd_bus_error_is_set(error) ? error->message : strerror(-r);

                if (changes)
                        log_error("Access denied: '%s' changes the gateway, run it as root. (%s)", what, why);
                else
                        log_error("Access denied to blegated: %s. Is its D-Bus policy "
                                  "(org.blegate.Gateway1.conf) installed?", why);
                return EXIT_ACCESS_DENIED;
        }
        if (sd_bus_error_has_name(error, SD_BUS_ERROR_INVALID_ARGS)) {
                log_error("Failed to %s: %s", what, error->message);
                return EXIT_USAGE;
        }
        if (sd_bus_error_has_names(error, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT)) {
                log_error("blegated did not answer '%s' in time: %s", what, error->message);
                return EXIT_FAILURE;
        }
        if (sd_bus_error_is_set(error))
                log_error("Failed to %s: %s", what, error->message);
        else
                log_error_errno(r, "Failed to %s: %m", what);
        return EXIT_FAILURE;
}

static int read_property(sd_bus_message *m, char type, void *field) {
        const char *s;
        int b, k;

        switch (type) {
        case 's':
                k = sd_bus_message_read_basic(m, 's', &s);
                if (k < 0)
                        return k;
                free(*(char **) field);
                *(char **) field = strdup(s);
                return *(char **) field ? 0 : -ENOMEM;
        case 'b':
                k = sd_bus_message_read_basic(m, 'b', &b);
                if (k < 0)
                        return k;
                *(bool *) field = b;
                return 0;
        default:
                return sd_bus_message_read_basic(m, type, field);
        }
}

typedef struct PropertyMap {
        const CtlProperty *map;
        size_t n_map;
        void *ret;
} PropertyMap;

static int map_property(sd_bus_message *m, const char *name, void *userdata) {
        const PropertyMap *pm = userdata;
        const CtlProperty *p = NULL;
        const char *contents;
        int k;

        for (size_t i = 0; i < pm->n_map; i++)
                if (streq(pm->map[i].name, name))
                        p = pm->map + i;

        k = sd_bus_message_peek_type(m, NULL, &contents);
        if (k < 0)
                return k;
        /* A property of another type than we know is a newer daemon's: skip, don't fail. */
        if (!p || contents[1] != '\0' || contents[0] != p->type)
                return 0;

        k = sd_bus_message_enter_container(m, 'v', contents);
        if (k < 0)
                return k;
        k = read_property(m, p->type, (uint8_t *) pm->ret + p->offset);
        if (k < 0)
                return k;
        k = sd_bus_message_exit_container(m);
        return k < 0 ? k : 1;
}

int ctl_bus_read_properties(sd_bus_message *m, const CtlProperty *map, size_t n_map, void *ret) {
        PropertyMap pm = { .map = map, .n_map = n_map, .ret = ret };

        return bus_message_foreach_property(m, map_property, &pm);
}

int ctl_bus_get_all(sd_bus *bus, const char *path, const char *interface, const CtlProperty *map, size_t n_map,
                    void *ret, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int k;

        k = sd_bus_call_method(bus, BUS_NAME, path, "org.freedesktop.DBus.Properties", "GetAll", error, &reply, "s",
                               interface);
        if (k < 0)
                return k;
        return ctl_bus_read_properties(reply, map, n_map, ret);
}

static int parse_digits(const char **p, unsigned n, unsigned *ret) {
        unsigned v = 0;

        for (unsigned i = 0; i < n; i++, (*p)++) {
                if (**p < '0' || **p > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned) (**p - '0');
        }
        *ret = v;
        return 0;
}

/* YYYY-MM-DD[(T| )HH:MM[:SS[.frac]]][Z|+00:00], UTC. */
static int parse_iso8601(const char *s, uint64_t *ret) {
        unsigned year, month, day, hour = 0, minute = 0, second = 0;
        uint64_t usec = 0;
        struct tm tm = {};
        const char *p = s;
        time_t t;

        if (parse_digits(&p, 4, &year) < 0 || *p++ != '-' || parse_digits(&p, 2, &month) < 0 || *p++ != '-' ||
            parse_digits(&p, 2, &day) < 0)
                return -EINVAL;
        if (*p == 'T' || *p == ' ') {
                p++;
                if (parse_digits(&p, 2, &hour) < 0 || *p++ != ':' || parse_digits(&p, 2, &minute) < 0)
                        return -EINVAL;
                if (*p == ':') {
                        p++;
                        if (parse_digits(&p, 2, &second) < 0)
                                return -EINVAL;
                        if (*p == '.') {
                                uint64_t scale = 100000;

                                p++;
                                if (*p < '0' || *p > '9')
                                        return -EINVAL;
                                for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
                                        usec += (uint64_t) (*p - '0') * scale;
                        }
                }
        }
        if (streq(p, "Z") || streq(p, "+00:00"))
                p = "";
        if (*p || year < 1970 || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 ||
            second > 60)
                return -EINVAL;

        tm = (struct tm) {
                .tm_year = (int) year - 1900,
                .tm_mon = (int) month - 1,
                .tm_mday = (int) day,
                .tm_hour = (int) hour,
                .tm_min = (int) minute,
                .tm_sec = (int) second,
        };
        t = timegm(&tm);
        /* timegm() normalises 2018-02-31 to March: refuse what is not a real date. */
        if (t == (time_t) -1 || tm.tm_mday != (int) day || tm.tm_mon != (int) month - 1)
                return -EINVAL;
        *ret = (uint64_t) t * 1000000 + usec;
        return 0;
}

static int parse_relative(const char *s, uint64_t now_usec, uint64_t *ret) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "us",  1                           },
                { "ms",  1000                        },
                { "s",   1000000                     },
                { "sec", 1000000                     },
                { "m",   60 * UINT64_C(1000000)      },
                { "min", 60 * UINT64_C(1000000)      },
                { "h",   3600 * UINT64_C(1000000)    },
                { "d",   86400 * UINT64_C(1000000)   },
                { "w",   604800 * UINT64_C(1000000)  },
        };
        char *end;
        double v;

        if (s[0] != '-' || !(s[1] >= '0' && s[1] <= '9'))
                return -EINVAL;
        errno = 0;
        v = strtod(s + 1, &end);
        if (errno != 0 || !isfinite(v))
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (streq(end, units[i].suffix)) {
                        double d = v * (double) units[i].usec;

                        *ret = d >= (double) now_usec ? 0 : now_usec - (uint64_t) d;
                        return 0;
                }
        return -EINVAL;
}

int ctl_parse_time(const char *s, uint64_t now_usec, uint64_t *ret) {
        size_t n = strlen(s);

        if (streq(s, "now")) {
                *ret = now_usec;
                return 0;
        }
        if (s[0] == '-')
                return parse_relative(s, now_usec, ret);
        if (n > 0 && strspn(s, "0123456789") == n) {
                unsigned long long ms;

                errno = 0;
                ms = strtoull(s, NULL, 10);
                if (errno != 0 || ms > UINT64_MAX / 1000)
                        return -EINVAL;
                *ret = (uint64_t) ms * 1000;
                return 0;
        }
        return parse_iso8601(s, ret);
}

char *ctl_format_ago(uint64_t usec, uint64_t now_usec, char *buf, size_t size) {
        uint64_t d;

        if (usec == 0) {
                snprintf(buf, size, "-");
                return buf;
        }
        if (usec > now_usec) {
                snprintf(buf, size, "just now");
                return buf;
        }
        d = (now_usec - usec) / 1000000;
        if (d < 1)
                snprintf(buf, size, "just now");
        else if (d < 120)
                snprintf(buf, size, "%" PRIu64 "s ago", d);
        else if (d < 2 * 3600)
                snprintf(buf, size, "%" PRIu64 "min ago", d / 60);
        else if (d < 2 * 86400)
                snprintf(buf, size, "%" PRIu64 "h ago", d / 3600);
        else
                snprintf(buf, size, "%" PRIu64 "d ago", d / 86400);
        return buf;
}

char *ctl_format_bytes(uint64_t bytes, char *buf, size_t size) {
        static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
        double v = (double) bytes;
        size_t i = 0;

        if (bytes < 1024) {
                snprintf(buf, size, "%" PRIu64 " B", bytes);
                return buf;
        }
        v /= 1024;
        while (v >= 1024 && i + 1 < ELEMENTSOF(units)) {
                v /= 1024;
                i++;
        }
        snprintf(buf, size, "%.1f %s", v, units[i]);
        return buf;
}

struct Table {
        size_t n_columns;
        uint32_t right_aligned;
        char **cells;          /* rows × n_columns, the header row first */
        size_t n_cells;
};

int table_new(const char *const *headers, size_t n_columns, uint32_t right_aligned, Table **ret) {
        _cleanup_(table_freep) Table *t = NULL;
        int k;

        t = new0(Table, 1);
        if (!t)
                return -ENOMEM;
        t->n_columns = n_columns;
        t->right_aligned = right_aligned;
        k = table_add_row(t, headers);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(t);
        return 0;
}

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        strv_free_contents(t->cells, t->n_cells);
        free(t->cells);
        return mfree(t);
}

int table_add_row(Table *t, const char *const *cells) {
        char **a;

        a = reallocarray(t->cells, t->n_cells + t->n_columns, sizeof(char *));
        if (!a)
                return -ENOMEM;
        t->cells = a;
        for (size_t i = 0; i < t->n_columns; i++) {
                a[t->n_cells] = strdup(cells[i] ?: "-");
                if (!a[t->n_cells])
                        return -ENOMEM;
                t->n_cells++;
        }
        return 0;
}

size_t table_rows(const Table *t) {
        return t->n_cells / t->n_columns - 1;
}

void table_print(const Table *t, FILE *f) {
        size_t width[32] = {};

        assert(t->n_columns <= ELEMENTSOF(width));

        for (size_t i = 0; i < t->n_cells; i++)
                width[i % t->n_columns] = MAX(width[i % t->n_columns], strlen(t->cells[i]));

        for (size_t i = 0; i < t->n_cells; i++) {
                size_t c = i % t->n_columns;
                bool last = c + 1 == t->n_columns;

                if (t->right_aligned & (UINT32_C(1) << c))
                        fprintf(f, "%*s", (int) width[c], t->cells[i]);
                else
                        fprintf(f, "%-*s", last ? 0 : (int) width[c], t->cells[i]);
                fputs(last ? "\n" : "  ", f);
        }
}
