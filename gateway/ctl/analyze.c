/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blegatectl analyze: the gateway's anomaly detection run offline over a recording, without a
 * daemon. Two modes:
 *
 *   streaming (default)  exactly what blegated does: the Detector's rolling z-score per group,
 *                        one pass, constant memory per group;
 *   --batch              the seed notebook's maths: mean and population std over all values
 *                        of a group, then z for every value. This needs every value before the
 *                        first can be scored, so the values of the chosen channels are kept in
 *                        memory (8 bytes per value plus the timestamp text).
 *
 * Groups are devices, or device types with --group-by type (the notebook's grouping). Output
 * is one row per scored value in input order; for one reading, channels in the order of
 * reading.h. Values are printed with the fewest digits (15 to 17) that round-trip the double.
 */

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "detector.h"
#include "idmap.h"
#include "json.h"
#include "log.h"
#include "recording.h"
#include "verbs.h"

typedef enum OutputFormat {
        FORMAT_CSV,
        FORMAT_JSON,
} OutputFormat;

typedef struct AnalyzeOptions {
        DetectorSettings settings;
        bool batch;
        bool group_by_type;
        bool anomalies_only;
        bool strict;
        uint32_t channels; /* 0: every channel the recording has */
        OutputFormat format;
        const char *path;
} AnalyzeOptions;

#define OUTPUT_BUFFER_SIZE (1U << 20)

static void help(void) {
        printf("Usage: blegatectl analyze [OPTIONS] FILE|-\n"
               "\n"
               "Score every value of a recording (CSV with a timestamp column, see blegatectl(1))\n"
               "with a z-score and print one row per scored value.\n"
               "\n"
               "      --window=N          Rolling window in values (default 100)\n"
               "      --threshold=Z       Anomaly when |z| >= Z (default 3)\n"
               "      --min-std=S         Floor of the rolling std (default 0.001)\n"
               "      --min-samples=M     Values needed before scoring (default: the window)\n"
               "      --batch             Whole-group mean and std, as the seed notebook\n"
               "      --group-by=WHAT     device (default) or type\n"
               "      --channels=LIST     Channels to score, e.g. ax,ay,az (default: all present)\n"
               "      --anomalies-only    Print only anomalous values\n"
               "      --format=FORMAT     csv (default) or json (one object per line)\n"
               "      --strict            Fail on the first malformed line instead of skipping it\n"
               "  -h --help               Show this help\n");
}

static int parse_unsigned(const char *name, const char *s, unsigned min, unsigned max, unsigned *ret) {
        unsigned long long v;
        char *end;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || end == s || *end || s[0] == '-' || v < min || v > max)
                return log_error_errno(EINVAL, "Invalid %s '%s': expected an integer in %u..%u.", name, s, min, max);
        *ret = (unsigned) v;
        return 0;
}

static int parse_positive(const char *name, const char *s, double *ret) {
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || end == s || *end || !isfinite(v) || v <= 0)
                return log_error_errno(EINVAL, "Invalid %s '%s': expected a number > 0.", name, s);
        *ret = v;
        return 0;
}

static int parse_channels(const char *s, uint32_t *ret) {
        uint32_t mask = 0;

        for (const char *p = s;;) {
                size_t n = strcspn(p, ",");
                Channel c = channel_from_substring(p, n);

                if (c < 0)
                        return log_error_errno(EINVAL, "Unknown channel '%.*s' in --channels; known: "
                                               "ax ay az gx gy gz mx my mz oa ob og.", (int) n, p);
                mask |= CHANNEL_BIT(c);
                if (!p[n])
                        break;
                p += n + 1;
        }
        *ret = mask;
        return 0;
}

static int parse_argv(int argc, char *argv[], AnalyzeOptions *o) {
        enum {
                ARG_WINDOW = 0x100,
                ARG_THRESHOLD,
                ARG_MIN_STD,
                ARG_MIN_SAMPLES,
                ARG_BATCH,
                ARG_GROUP_BY,
                ARG_CHANNELS,
                ARG_ANOMALIES_ONLY,
                ARG_FORMAT,
                ARG_STRICT,
        };
        static const struct option options[] = {
                { "window",         required_argument, NULL, ARG_WINDOW         },
                { "threshold",      required_argument, NULL, ARG_THRESHOLD      },
                { "min-std",        required_argument, NULL, ARG_MIN_STD        },
                { "min-samples",    required_argument, NULL, ARG_MIN_SAMPLES    },
                { "batch",          no_argument,       NULL, ARG_BATCH          },
                { "group-by",       required_argument, NULL, ARG_GROUP_BY       },
                { "channels",       required_argument, NULL, ARG_CHANNELS       },
                { "anomalies-only", no_argument,       NULL, ARG_ANOMALIES_ONLY },
                { "format",         required_argument, NULL, ARG_FORMAT         },
                { "strict",         no_argument,       NULL, ARG_STRICT         },
                { "help",           no_argument,       NULL, 'h'                },
                {}
        };
        unsigned min_samples = 0;
        int c;

        *o = (AnalyzeOptions) {
                .settings = { .window = 100, .threshold = 3, .min_stddev = 0.001 },
        };

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case ARG_WINDOW:
                        if (parse_unsigned("--window", optarg, 1, WINDOW_SIZE_MAX, &o->settings.window) < 0)
                                return -EINVAL;
                        break;
                case ARG_THRESHOLD:
                        if (parse_positive("--threshold", optarg, &o->settings.threshold) < 0)
                                return -EINVAL;
                        break;
                case ARG_MIN_STD:
                        if (parse_positive("--min-std", optarg, &o->settings.min_stddev) < 0)
                                return -EINVAL;
                        break;
                case ARG_MIN_SAMPLES:
                        if (parse_unsigned("--min-samples", optarg, 1, WINDOW_SIZE_MAX, &min_samples) < 0)
                                return -EINVAL;
                        break;
                case ARG_BATCH:
                        o->batch = true;
                        break;
                case ARG_GROUP_BY:
                        if (streq(optarg, "device"))
                                o->group_by_type = false;
                        else if (streq(optarg, "type"))
                                o->group_by_type = true;
                        else
                                return log_error_errno(EINVAL, "Invalid --group-by '%s': expected device or type.",
                                                       optarg);
                        break;
                case ARG_CHANNELS:
                        if (parse_channels(optarg, &o->channels) < 0)
                                return -EINVAL;
                        break;
                case ARG_ANOMALIES_ONLY:
                        o->anomalies_only = true;
                        break;
                case ARG_FORMAT:
                        if (streq(optarg, "csv"))
                                o->format = FORMAT_CSV;
                        else if (streq(optarg, "json"))
                                o->format = FORMAT_JSON;
                        else
                                return log_error_errno(EINVAL, "Invalid --format '%s': expected csv or json.", optarg);
                        break;
                case ARG_STRICT:
                        o->strict = true;
                        break;
                case 'h':
                        help();
                        return 0;
                default:
                        return -EINVAL;
                }

        o->settings.min_samples = min_samples ?: o->settings.window;
        if (o->settings.min_samples > o->settings.window)
                return log_error_errno(EINVAL, "--min-samples=%u is larger than --window=%u.",
                                       o->settings.min_samples, o->settings.window);

        if (optind + 1 != argc)
                return log_error_errno(EINVAL, "Expected exactly one FILE (or - for standard input); see --help.");
        o->path = argv[optind];
        return 1;
}

/* One output row. NaN (a batch group whose values are all equal) prints as an empty CSV cell,
 * as pandas writes it, and as null in JSON. */
static void print_number(FILE *out, OutputFormat format, double v) {
        char buf[JSON_NUMBER_MAX];

        if (format == FORMAT_JSON)
                json_print_number(out, v);
        else if (isfinite(v))
                fputs(json_format_number(v, buf), out);
        else if (!isnan(v))
                fputs(v > 0 ? "inf" : "-inf", out);
}

static void print_row(FILE *out, const AnalyzeOptions *o, const char *timestamp, const char *device, Channel c,
                      double value, double mean, double std, double z, bool anomaly) {
        const double numbers[] = { value, mean, std, z };
        static const char *const json_keys[] = { "\"value\":", "\"mean\":", "\"std\":", "\"z\":" };

        if (o->format == FORMAT_JSON)
                /* Timestamps and device ids were validated by the reader: nothing to escape. */
                fprintf(out, "{\"timestamp\":\"%s\",\"deviceId\":\"%s\",\"channel\":\"%s\"", timestamp, device,
                        channel_to_string(c));
        else
                fprintf(out, "%s,%s,%s", timestamp, device, channel_to_string(c));

        for (size_t i = 0; i < ELEMENTSOF(numbers); i++) {
                fputc(',', out);
                if (o->format == FORMAT_JSON)
                        fputs(json_keys[i], out);
                print_number(out, o->format, numbers[i]);
        }

        if (o->format == FORMAT_JSON)
                fprintf(out, ",\"anomaly\":%s}\n", anomaly ? "true" : "false");
        else
                fprintf(out, ",%d\n", anomaly);
}

static void print_header(FILE *out, const AnalyzeOptions *o) {
        if (o->format == FORMAT_CSV)
                fputs("timestamp,deviceId,channel,value,mean,std,z,anomaly\n", out);
}

/* The next reading, with malformed lines warned about and skipped (or fatal with --strict).
 * Returns > 0 with a reading, 0 at the end, negative on error (logged). */
static int analyze_next(Recording *rec, const AnalyzeOptions *o, unsigned *n_malformed, Reading *ret) {
        int k;

        for (;;) {
                k = recording_next(rec, ret);
                if (k == -EBADMSG) {
                        if (o->strict)
                                return log_error_errno(k, "%s:%u: %s.", recording_name(rec), recording_line(rec),
                                                       recording_error(rec));
                        log_warning("%s:%u: %s, skipping line.", recording_name(rec), recording_line(rec),
                                    recording_error(rec));
                        (*n_malformed)++;
                        continue;
                }
                if (k < 0)
                        return log_error_errno(k, "Failed to read %s: %m", recording_name(rec));
                /* Grouping by type: the type is the detector's key. */
                if (k > 0 && o->group_by_type)
                        memcpy(ret->device, ret->type, sizeof(ret->device));
                return k;
        }
}

static int analyze_streaming(Recording *rec, const AnalyzeOptions *o, FILE *out, unsigned *n_malformed) {
        _cleanup_(detector_freep) Detector *d = NULL;
        Score scores[_CHANNEL_MAX];
        Reading r;
        int k;

        k = detector_new(&o->settings, NULL, NULL, &d);
        if (k < 0)
                return log_error_errno(k, "Failed to set up the detector: %m");

        print_header(out, o);
        while ((k = analyze_next(rec, o, n_malformed, &r)) > 0) {
                k = detector_feed(d, &r, scores);
                if (k < 0)
                        return log_error_errno(k, "Failed to score line %u: %m", recording_line(rec));
                if (o->anomalies_only && k == 0)
                        continue;

                for (uint32_t m = r.channels; m; m &= m - 1) {
                        Channel c = __builtin_ctz(m);
                        const Score *s = scores + c;

                        if (!s->scored || (o->anomalies_only && !s->anomaly))
                                continue;
                        print_row(out, o, recording_timestamp(rec), r.device, c, s->value, s->mean, s->std, s->z,
                                  s->anomaly);
                }
        }
        return k;
}

/*
 * Batch mode. Every reading becomes a Row holding the index of its timestamp text, its group,
 * and its values; the sums per group and channel are taken in a first pass over the rows, the
 * deviations from the mean in a second (the two-pass formula pandas uses, so std is exact),
 * and the third pass prints.
 */

typedef struct Row {
        size_t timestamp;  /* offset into the text arena */
        size_t group;
        uint32_t channels;
        double values[];   /* one per set bit of channels, in channel order */
} Row;

typedef struct Group {
        char id[DEVICE_ID_MAX + 1];
        uint64_t n[_CHANNEL_MAX];
        double sum[_CHANNEL_MAX];
        double mean[_CHANNEL_MAX];
        double m2[_CHANNEL_MAX];
} Group;

typedef struct Batch {
        char *text;        /* NUL-separated timestamps */
        size_t text_size, text_alloc;
        uint8_t *rows;     /* packed Rows */
        size_t rows_size, rows_alloc;
        Group **groups;
        size_t n_groups;
        IdMap *group_map;  /* group id -> index + 1 */
} Batch;

static void batch_done(Batch *b) {
        for (size_t i = 0; i < b->n_groups; i++)
                free(b->groups[i]);
        free(b->groups);
        free(b->text);
        free(b->rows);
        idmap_free(b->group_map);
}

static void *grow(void *p, size_t *alloc, size_t need) {
        size_t n = MAX(*alloc * 2, MAX(need, (size_t) 4096));
        void *q;

        if (need <= *alloc)
                return p;
        q = realloc(p, n);
        if (q)
                *alloc = n;
        return q;
}

static int batch_group(Batch *b, const char *id, size_t *ret) {
        Group *g, **groups;
        void *v;
        int k;

        v = idmap_get(b->group_map, id);
        if (v) {
                *ret = (uintptr_t) v - 1;
                return 0;
        }

        groups = reallocarray(b->groups, b->n_groups + 1, sizeof(Group *));
        if (!groups)
                return -ENOMEM;
        b->groups = groups;

        g = new0(Group, 1);
        if (!g)
                return -ENOMEM;
        memcpy(g->id, id, strnlen(id, DEVICE_ID_MAX));
        b->groups[b->n_groups] = g;

        k = idmap_put(b->group_map, g->id, (void *) (uintptr_t) (b->n_groups + 1));
        if (k < 0) {
                free(g);
                return k;
        }
        *ret = b->n_groups++;
        return 0;
}

static int batch_add(Batch *b, const Reading *r, const char *timestamp) {
        size_t ts_len = strlen(timestamp) + 1, n = __builtin_popcount(r->channels), size, group;
        Row *row;
        void *p;
        int k;

        k = batch_group(b, r->device, &group);
        if (k < 0)
                return k;

        p = grow(b->text, &b->text_alloc, b->text_size + ts_len);
        if (!p)
                return -ENOMEM;
        b->text = p;

        /* Keep rows 8-byte aligned so their doubles are. */
        size = (sizeof(Row) + n * sizeof(double) + 7) & ~(size_t) 7;
        p = grow(b->rows, &b->rows_alloc, b->rows_size + size);
        if (!p)
                return -ENOMEM;
        b->rows = p;

        row = (Row *) (b->rows + b->rows_size);
        *row = (Row) {
                .timestamp = b->text_size,
                .group = group,
                .channels = r->channels,
        };
        n = 0;
        for (uint32_t m = r->channels; m; m &= m - 1) {
                Channel c = __builtin_ctz(m);

                row->values[n++] = r->values[c];
                b->groups[group]->n[c]++;
                b->groups[group]->sum[c] += r->values[c];
        }

        memcpy(b->text + b->text_size, timestamp, ts_len);
        b->text_size += ts_len;
        b->rows_size += size;
        return 0;
}

#define BATCH_FOREACH_ROW(row, b)                                                               \
        for (Row *row = (Row *) (b)->rows; (uint8_t *) row < (b)->rows + (b)->rows_size;        \
             row = (Row *) ((uint8_t *) row +                                                   \
                            ((sizeof(Row) + __builtin_popcount(row->channels) * sizeof(double) + 7) & ~(size_t) 7)))

static void batch_compute(Batch *b) {
        for (size_t i = 0; i < b->n_groups; i++)
                for (Channel c = 0; c < _CHANNEL_MAX; c++)
                        b->groups[i]->mean[c] = b->groups[i]->n[c] > 0 ? b->groups[i]->sum[c] / b->groups[i]->n[c] : NAN;

        BATCH_FOREACH_ROW(row, b) {
                Group *g = b->groups[row->group];
                size_t n = 0;

                for (uint32_t m = row->channels; m; m &= m - 1) {
                        Channel c = __builtin_ctz(m);
                        double dev = row->values[n++] - g->mean[c];

                        g->m2[c] += dev * dev;
                }
        }
}

static void batch_print(const Batch *b, const AnalyzeOptions *o, FILE *out) {
        print_header(out, o);
        BATCH_FOREACH_ROW(row, b) {
                const Group *g = b->groups[row->group];
                size_t n = 0;

                for (uint32_t m = row->channels; m; m &= m - 1) {
                        Channel c = __builtin_ctz(m);
                        double x = row->values[n++], std = sqrt(g->m2[c] / g->n[c]), z = (x - g->mean[c]) / std;
                        bool anomaly = zscore_is_anomaly(z, o->settings.threshold);

                        if (o->anomalies_only && !anomaly)
                                continue;
                        print_row(out, o, b->text + row->timestamp, g->id, c, x, g->mean[c], std, z, anomaly);
                }
        }
}

static int analyze_batch(Recording *rec, const AnalyzeOptions *o, FILE *out, unsigned *n_malformed) {
        _cleanup_(batch_done) Batch b = {};
        Reading r;
        int k;

        k = idmap_new(&b.group_map);
        if (k < 0)
                return log_oom();

        while ((k = analyze_next(rec, o, n_malformed, &r)) > 0) {
                k = batch_add(&b, &r, recording_timestamp(rec));
                if (k < 0)
                        return log_oom();
        }
        if (k < 0)
                return k;

        batch_compute(&b);
        batch_print(&b, o, out);
        return 0;
}

int verb_analyze(int argc, char *argv[]) {
        _cleanup_(recording_freep) Recording *rec = NULL;
        static char buffer[OUTPUT_BUFFER_SIZE];
        _cleanup_free_ char *error = NULL;
        AnalyzeOptions o;
        unsigned n_malformed = 0;
        uint32_t channels;
        int k;

        k = parse_argv(argc, argv, &o);
        if (k <= 0)
                return k < 0 ? EXIT_USAGE : EXIT_SUCCESS;

        k = recording_open(o.path, &rec, &error);
        if (k == -EBADMSG)
                return log_error_errno(k, "%s: %s.", o.path, error), EXIT_FAILURE;
        if (k < 0)
                return log_error_errno(k, "Failed to open %s: %m", o.path), EXIT_FAILURE;

        channels = recording_channels(rec);
        if (o.channels & ~channels) {
                for (Channel c = 0; c < _CHANNEL_MAX; c++)
                        if (o.channels & ~channels & CHANNEL_BIT(c))
                                log_error("%s has no column '%s'.", o.path, channel_to_string(c));
                return EXIT_FAILURE;
        }
        if (o.channels)
                recording_select_channels(rec, o.channels);

        /* Output is the hot path when every value is printed: one large buffer, no line flushing. */
        (void) setvbuf(stdout, buffer, _IOFBF, sizeof(buffer));

        if (o.batch)
                k = analyze_batch(rec, &o, stdout, &n_malformed);
        else
                k = analyze_streaming(rec, &o, stdout, &n_malformed);

        if (fflush(stdout) != 0 || ferror(stdout))
                k = log_error_errno(errno ?: EIO, "Failed to write the output: %m");
        if (k < 0)
                return EXIT_FAILURE;

        if (n_malformed > 0)
                log_warning("%s: %u malformed line%s skipped.", o.path, n_malformed, n_malformed == 1 ? "" : "s");
        return EXIT_SUCCESS;
}
