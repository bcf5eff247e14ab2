/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blegatectl decode: one value as a sensor sends it (manufacturer data or a GATT
 * notification, in hex) through the same decoder the daemon uses, printed as one JSON object
 * per reading. For checking a sensor against its documentation, or a phone app against
 * docs/phone-profile.md, without a gateway. Every channel the profile can carry is printed,
 * null when the sensor marks it unavailable, then the profile's extra fields.
 */

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "json.h"
#include "log.h"
#include "profile-sensortag.h"
#include "profile.h"
#include "verbs.h"

typedef struct DecodeOptions {
        ProfileSettings settings;
        bool range_set;
        const ProfileDecoder *decoder;
        char **hex;
        size_t n_hex;
} DecodeOptions;

static void help(void) {
        printf("Usage: blegatectl decode [OPTIONS] PROFILE HEX...\n"
               "\n"
               "Decode one value received from a sensor and print every reading it holds as a JSON\n"
               "object per line, in SI units: the profile's channels (null when the sensor marks\n"
               "them unavailable), then its extra fields.\n"
               "\n"
               "PROFILE is one of these, or the UUID of the characteristic:\n");
        for (ProfileKind k = 0; k < _PROFILE_KIND_MAX; k++) {
                const Profile *p = profile_get(k);

                if (p->advert)
                        printf("  %-16s manufacturer data of company 0x%04x\n", p->advert->name, p->company_id);
                for (size_t i = 0; i < p->n_steps; i++)
                        if (p->steps[i].type == PROFILE_STEP_NOTIFY)
                                printf("  %-16s characteristic %s\n", p->steps[i].decoder->name, p->steps[i].uuid);
        }
        printf("\n"
               "HEX is the value in hexadecimal, e.g. 05:12:FC:... or \"05 12 FC ...\"; spaces and\n"
               "colons between bytes are ignored and several HEX arguments are joined.\n"
               "\n"
               "      --range=G      SensorTag accelerometer range in g: 2, 4, 8 or 16\n"
               "                     (default %u, what blegated configures)\n"
               "  -h --help          Show this help\n",
               PROFILE_SETTINGS_DEFAULTS.sensortag_range_g);
}

static const ProfileDecoder *decoder_from_argument(const char *name) {
        return profile_decoder_from_name(name) ?: profile_decoder_from_uuid(name);
}

static void append_name(char *buf, size_t size, size_t *n, const char *name) {
        if (*n < size)
                *n += snprintf(buf + *n, size - *n, "%s%s", *n > 0 ? ", " : "", name);
}

static void log_unknown_profile(const char *name) {
        const Profile *p = profile_get(profile_kind_from_string(name));
        const ProfileDecoder *d;
        char known[256] = "";
        size_t n = 0;

        if (p) {
                /* A kind whose streams have names of their own (thingy52). */
                for (size_t i = 0; i < p->n_steps; i++)
                        if (p->steps[i].type == PROFILE_STEP_NOTIFY)
                                append_name(known, sizeof(known), &n, p->steps[i].decoder->name);
                log_error("Profile '%s' has several streams; name one: %s.", name, known);
                return;
        }

        for (size_t i = 0; (d = profile_decoder_get(i)); i++)
                append_name(known, sizeof(known), &n, d->name);
        log_error("Unknown profile '%s'; expected one of: %s, or a characteristic UUID.", name, known);
}

static int parse_argv(int argc, char *argv[], DecodeOptions *o) {
        enum {
                ARG_RANGE = 0x100,
        };
        static const struct option options[] = {
                { "range", required_argument, NULL, ARG_RANGE },
                { "help",  no_argument,       NULL, 'h'       },
                {}
        };
        uint8_t config[SENSORTAG_CONFIG_SIZE];
        char *end;
        int c;

        *o = (DecodeOptions) {
                .settings = PROFILE_SETTINGS_DEFAULTS,
        };

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case ARG_RANGE: {
                        unsigned long v;

                        /* A valid range is one the tag can be configured with. */
                        errno = 0;
                        v = strtoul(optarg, &end, 10);
                        if (errno != 0 || end == optarg || *end || optarg[0] == '-' || v > UINT_MAX ||
                            profile_sensortag_config(v, config) < 0)
                                return log_error_errno(EINVAL, "Invalid --range '%s': expected 2, 4, 8 or 16.",
                                                       optarg);
                        o->settings.sensortag_range_g = v;
                        o->range_set = true;
                        break;
                }
                case 'h':
                        help();
                        return 0;
                default:
                        return -EINVAL;
                }

        if (argc - optind < 2)
                return log_error_errno(EINVAL, "Expected a PROFILE and the HEX of a value; see --help.");

        o->decoder = decoder_from_argument(argv[optind]);
        if (!o->decoder) {
                log_unknown_profile(argv[optind]);
                return -ENOENT;
        }
        if (o->range_set && o->decoder != &profile_sensortag_decoder)
                return log_error_errno(EINVAL, "--range applies to the sensortag profile only.");

        o->hex = argv + optind + 1;
        o->n_hex = argc - optind - 1;
        return 1;
}

static int hex_digit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

static bool is_separator(char c) {
        return c == ' ' || c == ':' || c == '\t';
}

/* The bytes of all HEX arguments, logging what is wrong. A run of digits between separators
 * must hold whole bytes: "5 12" is an error, not 0x05 0x12. */
static int parse_hex(char **args, size_t n_args, uint8_t buf[static PROFILE_VALUE_MAX], size_t *ret_size) {
        size_t size = 0;

        for (size_t a = 0; a < n_args; a++)
                for (const char *p = args[a]; *p;) {
                        size_t run;

                        if (is_separator(*p)) {
                                p++;
                                continue;
                        }

                        for (run = 0; p[run] && !is_separator(p[run]); run++)
                                if (hex_digit(p[run]) < 0)
                                        return log_error_errno(EINVAL, "Invalid character '%c' in HEX '%s': expected "
                                                               "hex digits, optionally separated by spaces or colons.",
                                                               p[run], args[a]);
                        if (run % 2 != 0)
                                return log_error_errno(EINVAL, "Odd number of hex digits (%zu) in '%.*s': every byte "
                                                       "takes two.", run, (int) run, p);
                        if (size + run / 2 > PROFILE_VALUE_MAX)
                                return log_error_errno(E2BIG, "HEX holds more than %d bytes, the most one BLE value "
                                                       "can hold.", PROFILE_VALUE_MAX);

                        for (size_t i = 0; i < run; i += 2)
                                buf[size++] = hex_digit(p[i]) << 4 | hex_digit(p[i + 1]);
                        p += run;
                }

        if (size == 0)
                return log_error_errno(EINVAL, "HEX holds no bytes.");
        *ret_size = size;
        return 0;
}

static void print_frame(FILE *out, const ProfileDecoder *d, const ProfileFrame *f) {
        uint32_t channels = d->channels | f->reading.channels;
        const char *comma = "";

        fputc('{', out);
        for (Channel c = 0; c < _CHANNEL_MAX; c++) {
                if (!(channels & CHANNEL_BIT(c)))
                        continue;
                fprintf(out, "%s\"%s\":", comma, channel_to_string(c));
                if (reading_has(&f->reading, c))
                        json_print_number(out, f->reading.values[c]);
                else
                        fputs("null", out);
                comma = ",";
        }
        for (size_t i = 0; i < f->n_fields; i++) {
                const ProfileField *field = f->fields + i;

                fputs(comma, out);
                json_print_string(out, field->name);
                fputc(':', out);
                if (!field->valid)
                        fputs("null", out);
                else if (field->is_text)
                        json_print_string(out, field->text);
                else
                        json_print_number(out, field->number);
                comma = ",";
        }
        fputs("}\n", out);
}

int verb_decode(int argc, char *argv[]) {
        static ProfileFrame frames[PROFILE_FRAMES_MAX];
        static uint8_t buf[PROFILE_VALUE_MAX];
        DecodeOptions o;
        size_t size = 0;
        int k;

        k = parse_argv(argc, argv, &o);
        if (k == -ENOENT)
                return EXIT_FAILURE;
        if (k <= 0)
                return k < 0 ? EXIT_USAGE : EXIT_SUCCESS;

        if (parse_hex(o.hex, o.n_hex, buf, &size) < 0)
                return EXIT_FAILURE;

        k = profile_decode(o.decoder, &o.settings, buf, size, frames, ELEMENTSOF(frames));
        switch (k) {
        case -EBADMSG:
                log_error("Cannot decode these %zu bytes as %s: expected %s.", size, o.decoder->name,
                          o.decoder->expect);
                return EXIT_FAILURE;
        case -EPROTONOSUPPORT:
                log_error("Cannot decode these %zu bytes as %s: protocol version %u is not supported; expected %s.",
                          size, o.decoder->name, buf[0], o.decoder->expect);
                return EXIT_FAILURE;
        case -EOPNOTSUPP:
                /* Not an error: the gateway skips these values the same way. */
                log_notice("This %s value (format 0x%02x) carries no motion data; blegated skips it.",
                           o.decoder->name, buf[0]);
                return EXIT_SUCCESS;
        default:
                if (k < 0)
                        return log_error_errno(k, "Failed to decode as %s: %m", o.decoder->name), EXIT_FAILURE;
        }

        for (int i = 0; i < k; i++)
                print_frame(stdout, o.decoder, frames + i);

        if (fflush(stdout) != 0 || ferror(stdout))
                return log_error_errno(errno ?: EIO, "Failed to write the output: %m"), EXIT_FAILURE;
        return EXIT_SUCCESS;
}
