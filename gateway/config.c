/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading blegate.conf. libinih splits lines into sections, keys and values; everything else is
 * ours. Our line reader sits in front of inih and is the one place that sees whole lines: it
 * counts them (inih's handler gets no line number), rejects what inih would silently truncate
 * or misread (over-long lines, NUL bytes, indented lines that inih would glue onto the previous
 * value, malformed headers and assignments, of which inih only reports the first), and hands
 * inih a blank line instead, so inih only ever sees lines we already accepted. A static table
 * maps each (section, key) to a parser and a field of Config; adding a key is adding a row.
 *
 * Every problem is reported and parsing carries on, so one run shows every mistake; the result
 * is used only if nothing was reported.
 */

#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "ble.h"
#include "config.h"
#include "profile.h"

#define WHITESPACE " \t\n\r\v\f"
#define DIGITS "0123456789"
#define KEY_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" DIGITS "_-."

typedef struct ConfigItem ConfigItem;

/* Stores value into field, or returns -EINVAL and writes what it expected ("an integer in
 * 2..100000") into expected. The empty value resets the field to its default. */
typedef int (*ConfigParseFunc)(const ConfigItem *item, const char *value, void *field, char *expected, size_t size);

struct ConfigItem {
        const char *section;
        const char *key;
        ConfigParseFunc parse;
        size_t offset;
        double min, max;    /* numbers only; inclusive unless min_exclusive */
        bool min_exclusive;
};

/* Where each key was last set, so a check across keys can point at the line to fix. */
typedef struct ConfigOrigin {
        const char *file;
        unsigned line;
} ConfigOrigin;

/* The defaults, in the layout of Config so that resetting a key copies its field from here. */
static const Config config_defaults = {
        /* Not derived from the build's localstatedir: the unit's StateDirectory= is always here. */
        .store_path = (char *) "/var/lib/blegate/buffer.db",
        .store_max_size = UINT64_C(256) << 20,
        .store_commit_interval = 0.25,
        .store_commit_readings = 500,
        .window = 100,
        .threshold = 3.0,
        .min_stddev = 0.001,
        .min_samples = 0, /* same as Window, resolved by config_load() */
        .replay_file = NULL,
        .replay_speed = 1.0,
        .status_interval = 0.0,
        .ble_enable = true,
        .ble_adapters = NULL,
        .ble_power_on = false,
        .ble_passive = true,
        .ble_max_connections = 5,
        .ble_allow = NULL,
        .ble_deny = NULL,
        .ble_stall_timeout = 60.0,
};

#define DEFAULT_FIELD(item) ((const void *) ((const uint8_t *) &config_defaults + (item)->offset))

static int parse_unsigned(const ConfigItem *item, const char *value, void *field, char *expected, size_t size) {
        unsigned *u = field;
        unsigned long long v;
        char *end;

        if (value[0] == '\0') {
                *u = *(const unsigned *) DEFAULT_FIELD(item);
                return 0;
        }

        /* Digits only: strtoull() would also take leading blanks, a sign ("-1" wraps) and "0x". */
        errno = 0;
        if (!strchr(DIGITS, value[0]) || (v = strtoull(value, &end, 10), errno != 0 || *end != '\0') ||
            v < item->min || v > item->max) {
                snprintf(expected, size, "an integer in %.0f..%.0f", item->min, item->max);
                return -EINVAL;
        }
        *u = (unsigned) v;
        return 0;
}

static int parse_double(const ConfigItem *item, const char *value, void *field, char *expected, size_t size) {
        double *d = field, v;
        char *end;

        if (value[0] == '\0') {
                *d = *(const double *) DEFAULT_FIELD(item);
                return 0;
        }

        /* Plain decimal notation only: strtod() would also take "nan", "inf", hex floats and
         * leading blanks. The daemon never sets LC_NUMERIC, so the decimal point is '.'. Overflow
         * and underflow (ERANGE) are rejected rather than rounded to infinity or zero. */
        errno = 0;
        if (value[strspn(value, DIGITS ".eE+-")] != '\0' || (v = strtod(value, &end), errno != 0 || *end != '\0') ||
            !isfinite(v) || v < item->min || (item->min_exclusive && v == item->min) || v > item->max) {
                if (isfinite(item->max))
                        snprintf(expected, size, "a number in %g..%g", item->min, item->max);
                else
                        snprintf(expected, size, "a number %s %g", item->min_exclusive ? ">" : ">=", item->min);
                return -EINVAL;
        }
        *d = v;
        return 0;
}

/* Bytes, with an optional binary suffix as in systemd: K, M, G, T (1024-based). */
static int parse_size(const ConfigItem *item, const char *value, void *field, char *expected, size_t size) {
        static const char suffixes[] = "KMGT";
        uint64_t *u = field;
        unsigned long long v;
        const char *sfx;
        char *end;
        int shift = 0;

        if (value[0] == '\0') {
                *u = *(const uint64_t *) DEFAULT_FIELD(item);
                return 0;
        }

        errno = 0;
        if (!strchr(DIGITS, value[0]) || (v = strtoull(value, &end, 10), errno != 0))
                goto fail;
        if (*end != '\0') {
                sfx = strchr(suffixes, *end);
                if (!sfx || end[1] != '\0')
                        goto fail;
                shift = 10 * (int) (sfx - suffixes + 1);
                if (v > (UINT64_MAX >> shift))
                        goto fail;
        }
        v <<= shift;
        if (v < item->min || v > item->max)
                goto fail;
        *u = v;
        return 0;
fail:
        snprintf(expected, size, "a size in bytes from %.0fM to %.0fG, with an optional K, M, G or T suffix",
                 item->min / (1 << 20), item->max / (1 << 30));
        return -EINVAL;
}

static int parse_string(const ConfigItem *item, const char *value, void *field, char *expected, size_t size) {
        char **s = field, *v = NULL;

        if (value[0] == '\0') {
                const char *d = *(char *const *) DEFAULT_FIELD(item);

                if (d) {
                        v = strdup(d);
                        if (!v)
                                return -ENOMEM;
                }
        } else {
                /* Control characters only ever get here by mistake, and would end up in logs. */
                for (const char *p = value; *p; p++)
                        if ((unsigned char) *p < ' ' || *p == 0x7f) {
                                snprintf(expected, size, "text without control characters");
                                return -EINVAL;
                        }
                v = strdup(value);
                if (!v)
                        return -ENOMEM;
        }

        free(*s);
        *s = v;
        return 0;
}

static int parse_path(const ConfigItem *item, const char *value, void *field, char *expected, size_t size) {
        size_t n = strlen(value);

        /* The daemon runs with / as working directory, so a relative name would only surprise. */
        if (n > 0 && (value[0] != '/' || value[n - 1] == '/' || n >= PATH_MAX)) {
                snprintf(expected, size, "an absolute file name");
                return -EINVAL;
        }
        return parse_string(item, value, field, expected, size);
}

/* Case-insensitive, like systemd's parse_boolean(). */
static int parse_bool(const ConfigItem *item, const char *value, void *field, char *expected, size_t size) {
        static const char *const yes[] = { "yes", "true", "on", "1" }, *const no[] = { "no", "false", "off", "0" };
        bool *b = field;

        if (value[0] == '\0') {
                *b = *(const bool *) DEFAULT_FIELD(item);
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(value, yes[i]) == 0) {
                        *b = true;
                        return 0;
                }
                if (strcasecmp(value, no[i]) == 0) {
                        *b = false;
                        return 0;
                }
        }
        snprintf(expected, size, "a boolean (yes/no, true/false, on/off, 1/0)");
        return -EINVAL;
}

/* A list of words separated by blanks, each of which word_ok() accepts (and may rewrite in
 * place, keeping its length). Stored joined by single spaces; NULL when there are none. */
static int parse_words(const char *value, bool (*word_ok)(char *word), char **field) {
        _cleanup_free_ char *v = NULL;
        size_t n = 0;

        v = new(char, strlen(value) + 1);
        if (!v)
                return -ENOMEM;
        for (const char *p = value + strspn(value, WHITESPACE); *p; p += strspn(p, WHITESPACE)) {
                size_t k = strcspn(p, WHITESPACE);
                char word[32];

                if (k >= sizeof(word))
                        return -EINVAL;
                memcpy(word, p, k);
                word[k] = '\0';
                if (!word_ok(word))
                        return -EINVAL;
                if (n > 0)
                        v[n++] = ' ';
                memcpy(v + n, word, k);
                n += k;
                p += k;
        }
        v[n] = '\0';

        free(*field);
        *field = n > 0 ? TAKE_PTR(v) : NULL;
        return 0;
}

/* An adapter name as the kernel gives it ("hci0"): letters, digits and '_'. */
static bool adapter_name_ok(char *word) {
        return word[strspn(word, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" DIGITS "_")] == '\0';
}

/* Adapter names, separated by blanks; none (the default) means every adapter. The BLE source
 * splits the list. */
static int parse_adapters(const ConfigItem *item, const char *value, void *field, char *expected, size_t size) {
        int k = parse_words(value, adapter_name_ok, field);

        if (k == -EINVAL)
                snprintf(expected, size, "adapter names such as hci0, separated by spaces");
        return k;
}

/* A device match for Allow=/Deny=: an address (AA:BB:CC:DD:EE:FF, any case, kept in upper case)
 * or a profile's kind ("sensortag"). */
static bool device_match_ok(char *word) {
        if (!ble_address_is_valid(word))
                return profile_kind_from_string(word) >= 0;
        for (char *c = word; *c; c++)
                *c = (char) toupper((unsigned char) *c);
        return true;
}

static int parse_matches(const ConfigItem *item, const char *value, void *field, char *expected, size_t size) {
        int k = parse_words(value, device_match_ok, field);

        if (k == -EINVAL)
                snprintf(expected, size, "addresses such as AA:BB:CC:DD:EE:FF or kinds (ruuvi, sensortag, thingy52, "
                         "phone), separated by spaces");
        return k;
}

#define ROW(section, key, parse, field, ...) { section, key, parse, offsetof(Config, field), __VA_ARGS__ }

/* Keep in step with blegate.conf(5) and units/blegate.conf. */
static const ConfigItem config_items[] = {
        ROW("Store",    "Path",           parse_path,     store_path),
        ROW("Store",    "MaxSize",        parse_size,     store_max_size,  .min = 1 << 20, .max = 0x1p40),
        ROW("Store",    "CommitInterval", parse_double,   store_commit_interval, .min = 0.001, .max = 60),
        ROW("Store",    "CommitReadings", parse_unsigned, store_commit_readings, .min = 1, .max = 100000),
        ROW("Detector", "Window",         parse_unsigned, window,          .min = CONFIG_WINDOW_MIN, .max = CONFIG_WINDOW_MAX),
        ROW("Detector", "Threshold",      parse_double,   threshold,       .min = 0, .max = INFINITY, .min_exclusive = true),
        ROW("Detector", "MinStdDev",      parse_double,   min_stddev,      .min = 0, .max = INFINITY, .min_exclusive = true),
        ROW("Detector", "MinSamples",     parse_unsigned, min_samples,     .min = 1, .max = CONFIG_WINDOW_MAX),
        ROW("Replay",   "File",           parse_path,     replay_file),
        ROW("Replay",   "Speed",          parse_double,   replay_speed,    .min = 0, .max = INFINITY),
        ROW("Gateway",  "StatusInterval", parse_double,   status_interval, .min = 0, .max = 86400),
        ROW("BLE",      "Enable",         parse_bool,     ble_enable),
        ROW("BLE",      "Adapters",       parse_adapters, ble_adapters),
        ROW("BLE",      "PowerOn",        parse_bool,     ble_power_on),
        ROW("BLE",      "PassiveScan",    parse_bool,     ble_passive),
        ROW("BLE",      "MaxConnections", parse_unsigned, ble_max_connections, .min = 1, .max = 32),
        ROW("BLE",      "Allow",          parse_matches,  ble_allow),
        ROW("BLE",      "Deny",           parse_matches,  ble_deny),
        ROW("BLE",      "StallTimeout",   parse_double,   ble_stall_timeout, .min = 0, .max = 86400),
};

static const ConfigItem *config_item_find(const char *section, const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                if (streq(config_items[i].section, section) && streq(config_items[i].key, key))
                        return config_items + i;
        return NULL;
}

static bool config_section_is_known(const char *name, size_t n) {
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                if (strlen(config_items[i].section) == n && memcmp(config_items[i].section, name, n) == 0)
                        return true;
        return false;
}

/* Makes untrusted bytes safe to quote in a log line: anything but printable ASCII becomes \xNN,
 * so neither terminal escapes nor invalid UTF-8 (or an invisible stray BOM) reach the log. */
static const char *escape(const char *s, size_t n, char *buf, size_t size) {
        size_t k = 0;

        assert(size >= 5);
        for (size_t i = 0; i < n && s[i]; i++) {
                unsigned char c = s[i];

                if (k + 5 > size)
                        break;
                if (c < ' ' || c >= 0x7f)
                        k += snprintf(buf + k, size - k, "\\x%02x", c);
                else
                        buf[k++] = c;
        }
        buf[k] = '\0';
        return buf;
}

typedef struct ConfigParser {
        Config *config;
        FILE *f;
        const char *name;
        ConfigReportFunc report;
        void *userdata;
        ConfigOrigin *origins;  /* indexed like config_items, or NULL */
        unsigned line;
        unsigned n_reported;
        bool skip_section;      /* the last header was bad and reported: its keys are not */
        int error;              /* what stopped reading: -ENOMEM or a read error */
} ConfigParser;

_printf_(3, 4) static void parser_report(ConfigParser *p, unsigned line, const char *format, ...) {
        char msg[2048];
        va_list ap;

        p->n_reported++;
        if (!p->report)
                return;
        va_start(ap, format);
        (void) vsnprintf(msg, sizeof(msg), format, ap);
        va_end(ap);
        p->report(p->name, line, msg, p->userdata);
}

static bool parser_check_header(ConfigParser *p, const char *s) {
        const char *end = strchr(s, ']'), *rest;
        char esc[1024];

        if (!end) {
                parser_report(p, p->line, "Missing ']' in section header '%s'", escape(s, SIZE_MAX, esc, sizeof(esc)));
                return false;
        }
        /* inih ignores whatever follows the ']'; we only allow a comment there. */
        rest = end + 1 + strspn(end + 1, WHITESPACE);
        if (*rest != '\0' && *rest != ';') {
                parser_report(p, p->line, "Unexpected text after section header: '%s'",
                              escape(rest, SIZE_MAX, esc, sizeof(esc)));
                return false;
        }
        if (!config_section_is_known(s + 1, end - s - 1)) {
                parser_report(p, p->line, "Unknown section [%s]", escape(s + 1, end - s - 1, esc, sizeof(esc)));
                return false;
        }
        return true;
}

static bool parser_check_assignment(ConfigParser *p, const char *s) {
        const char *q;
        bool was_space = false;
        size_t n;
        char esc[1024];

        /* Find the '=' as inih does: a ';' after a blank starts a comment, even before the '='. */
        for (q = s; *q != '\0' && *q != '='; q++) {
                if (was_space && *q == ';')
                        break;
                was_space = strchr(WHITESPACE, *q);
        }
        if (*q != '=') {
                parser_report(p, p->line, "Missing '=' in '%s'", escape(s, SIZE_MAX, esc, sizeof(esc)));
                return false;
        }
        for (n = q - s; n > 0 && strchr(WHITESPACE, s[n - 1]); n--)
                ;
        if (n == 0) {
                parser_report(p, p->line, "Missing key name before '='");
                return false;
        }
        /* Also keeps out ':', which inih would take for a separator ("Key: value"). */
        if (strspn(s, KEY_CHARS) < n) {
                parser_report(p, p->line, "Invalid key name '%s'", escape(s, n, esc, sizeof(esc)));
                return false;
        }
        return true;
}

/* inih's ini_reader: fgets() semantics, but whole lines only. */
static char *parser_read_line(char *buf, int size, void *userdata) {
        ConfigParser *p = userdata;
        size_t n = 0, max;
        bool too_long = false, nul = false;
        char *s;
        int c;

        if (p->error < 0)
                return NULL;

        /* Room for the NUL, and for a '\n' as fgets() would keep it, so the limit is inih's own. */
        assert(size >= 3);
        max = (size_t) size - 2;

        for (;;) {
                c = getc(p->f);
                if (c == EOF || c == '\n')
                        break;
                if (c == '\0')
                        nul = true;
                if (n < max)
                        buf[n++] = (char) c;
                else
                        too_long = true;
        }
        if (c == EOF) {
                if (ferror(p->f)) {
                        p->error = negative_errno();
                        parser_report(p, 0, "Failed to read: %s", strerror(-p->error));
                        return NULL;
                }
                if (n == 0)
                        return NULL;
        }
        buf[n] = '\0';
        p->line++;

        if (too_long) {
                parser_report(p, p->line, "Line too long (more than %zu bytes)", max);
                buf[0] = '\0';
                return buf;
        }
        /* inih works on C strings and would silently drop everything after the NUL. */
        if (nul) {
                parser_report(p, p->line, "Line contains a NUL byte");
                buf[0] = '\0';
                return buf;
        }

        s = buf;
        if (p->line == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
                s += 3;
        /* No indentation reaches inih: it would take an indented line for a continuation of the
         * previous value (Python configparser style) rather than a line of its own. */
        s += strspn(s, WHITESPACE);

        if (*s == '\0' || *s == '#' || *s == ';')
                ; /* blank or comment */
        else if (*s == '[') {
                p->skip_section = !parser_check_header(p, s);
                if (p->skip_section)
                        s = (char *) "";
        } else if (!parser_check_assignment(p, s))
                s = (char *) "";

        memmove(buf, s, strlen(s) + 1);
        return buf;
}

static int parser_handle(void *userdata, const char *section, const char *key, const char *value) {
        ConfigParser *p = userdata;
        const ConfigItem *item;
        char expected[128], esc[1024];
        int r;

        if (p->skip_section)
                return 1;
        if (section[0] == '\0') {
                parser_report(p, p->line, "Key '%s' outside of any section", key);
                return 1;
        }
        item = config_item_find(section, key);
        if (!item) {
                parser_report(p, p->line, "Unknown key '%s' in section [%s]", key, section);
                return 1;
        }

        /* An empty value resets the key to its default, as in systemd. */
        r = item->parse(item, value, (uint8_t *) p->config + item->offset, expected, sizeof(expected));
        if (r == -EINVAL) {
                parser_report(p, p->line, "Invalid value for %s= '%s': expected %s", key,
                              escape(value, SIZE_MAX, esc, sizeof(esc)), expected);
                return 1;
        }
        if (r < 0) {
                p->error = r;
                return 1;
        }
        if (p->origins)
                p->origins[item - config_items] = (ConfigOrigin) { p->name, p->line };
        return 1;
}

static int parse_internal(Config *c, FILE *f, const char *name, ConfigReportFunc report, void *userdata,
                          ConfigOrigin *origins) {
        ConfigParser p = {
                .config = c,
                .f = f,
                .name = name,
                .report = report,
                .userdata = userdata,
                .origins = origins,
        };
        int r;

        assert(c);
        assert(f);

        r = ini_parse_stream(parser_read_line, &p, parser_handle, &p);
        if (r < 0)
                return -ENOMEM; /* inih's only failure of its own: allocating its line buffer */
        if (r > 0)
                /* Our reader only passes lines inih accepts; if that ever stops being true
                 * (another inih build), the line is still not silently dropped. */
                parser_report(&p, r, "Syntax error");
        if (p.error < 0)
                return p.error;
        return p.n_reported > 0 ? -EINVAL : 0;
}

int config_parse(Config *c, FILE *f, const char *name, ConfigReportFunc report, void *userdata) {
        return parse_internal(c, f, name, report, userdata, NULL);
}

int config_new(Config **ret) {
        _cleanup_(config_freep) Config *c = NULL;
        char expected[128];
        int r;

        assert(ret);

        c = new0(Config, 1);
        if (!c)
                return -ENOMEM;
        /* Every field has a row, so resetting every key fills in all of Config. */
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                r = config_items[i].parse(config_items + i, "", (uint8_t *) c + config_items[i].offset,
                                          expected, sizeof(expected));
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        free(c->store_path);
        free(c->replay_file);
        free(c->ble_adapters);
        free(c->ble_allow);
        free(c->ble_deny);
        return mfree(c);
}

static void report_errno(ConfigReportFunc report, void *userdata, const char *file, const char *what, int r) {
        char msg[256];

        if (!report)
                return;
        snprintf(msg, sizeof(msg), "%s: %s", what, strerror(-r));
        report(file, 0, msg, userdata);
}

static int load_file(Config *c, const char *path, bool missing_ok, ConfigReportFunc report, void *userdata,
                     ConfigOrigin *origins) {
        _cleanup_fclose_ FILE *f = NULL;
        int r;

        f = fopen(path, "re");
        if (!f) {
                r = negative_errno();
                if (r == -ENOENT && missing_ok)
                        return 0;
                report_errno(report, userdata, path, "Failed to open", r);
                return r;
        }
        return parse_internal(c, f, path, report, userdata, origins);
}

static int dropin_filter(const struct dirent *de) {
        size_t n = strlen(de->d_name);

        /* Hidden files are editors' and package managers' leftovers, not configuration. */
        return de->d_name[0] != '.' && n > strlen(".conf") && streq(de->d_name + n - strlen(".conf"), ".conf");
}

static int dropin_compare(const struct dirent **a, const struct dirent **b) {
        /* Byte order, not alphasort()'s strcoll(): the order must not depend on the locale. */
        return strcmp((*a)->d_name, (*b)->d_name);
}

static void dropins_free(char ***paths) {
        for (size_t i = 0; *paths && (*paths)[i]; i++)
                free((*paths)[i]);
        free(*paths);
}

/* The drop-ins' paths, in the order they apply, NULL-terminated; none if there is no directory. */
static int dropins_list(const char *dir, ConfigReportFunc report, void *userdata, char ***ret) {
        struct dirent **des = NULL;
        char **paths;
        int n, r = 0;

        n = scandir(dir, &des, dropin_filter, dropin_compare);
        if (n < 0) {
                r = negative_errno();
                if (r != -ENOENT)
                        report_errno(report, userdata, dir, "Failed to list drop-ins", r);
                n = 0;
        }
        paths = new0(char *, n + 1);
        for (int i = 0; i < n; i++) {
                if (paths && asprintf(&paths[i], "%s/%s", dir, des[i]->d_name) < 0) {
                        paths[i] = NULL;
                        dropins_free(&paths);
                        paths = NULL;
                }
                free(des[i]);
        }
        free(des);
        if (!paths)
                return -ENOMEM;
        *ret = paths;
        return r == -ENOENT ? 0 : r;
}

/* The first error that is not a plain "something was reported" wins. */
static void merge_error(int *r, int k) {
        if (k < 0 && (*r == 0 || *r == -EINVAL))
                *r = k;
}

int config_load(const char *path, bool must_exist, ConfigReportFunc report, void *userdata, Config **ret) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(dropins_free) char **dropins = NULL;
        _cleanup_free_ char *dir = NULL;
        ConfigOrigin origins[ELEMENTSOF(config_items)] = {};
        int r = 0, k;

        assert(path);
        assert(ret);

        k = config_new(&c);
        if (k < 0)
                return k;

        k = load_file(c, path, !must_exist, report, userdata, origins);
        if (k == -ENOMEM)
                return k;
        merge_error(&r, k);

        if (asprintf(&dir, "%s.d", path) < 0)
                return -ENOMEM;
        k = dropins_list(dir, report, userdata, &dropins);
        if (k == -ENOMEM)
                return k;
        merge_error(&r, k);

        for (size_t i = 0; dropins && dropins[i]; i++) {
                k = load_file(c, dropins[i], false, report, userdata, origins);
                if (k == -ENOMEM)
                        return k;
                merge_error(&r, k);
        }

        /* Checked once all files are read: a drop-in may change Window after MinSamples was set. */
        if (c->min_samples > c->window) {
                const ConfigOrigin *o = origins + (config_item_find("Detector", "MinSamples") - config_items);
                char msg[128];

                assert(o->file);
                snprintf(msg, sizeof(msg), "MinSamples=%u is greater than Window=%u", c->min_samples, c->window);
                if (report)
                        report(o->file, o->line, msg, userdata);
                merge_error(&r, -EINVAL);
        }
        if (r < 0)
                return r;

        if (c->min_samples == 0)
                c->min_samples = c->window;
        *ret = TAKE_PTR(c);
        return 0;
}
