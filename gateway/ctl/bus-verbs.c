/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blegatectl's commands that talk to the running daemon over D-Bus (docs/org.blegate.*.md):
 *
 *   status, devices, anomalies, sinks, watch    read-only: anyone may run them
 *   set threshold|window, flush, reload         change the gateway: root (or the blegate user)
 *
 * Each prints a plain table for people, or with --json one JSON object per line (one per
 * device, event or sink; status prints one), keyed by the D-Bus property names (Device1 and
 * Sink1 rows carry their object "Path" too) and, for anomaly events, by the argument names of
 * AnomalyDetected. Failures are mapped to the exit codes of verbs.h by bus-util.c.
 */

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "bus-names.h"
#include "bus-util.h"
#include "device.h"
#include "json.h"
#include "log.h"
#include "reading.h"
#include "timestamp.h"
#include "verbs.h"

#define ANOMALIES_LIMIT_DEFAULT 100U

typedef struct VerbHelp {
        const char *usage;       /* after "blegatectl " */
        const char *description;
        bool json;               /* takes --json */
        bool range;              /* takes --since and --limit */
} VerbHelp;

typedef struct VerbOptions {
        bool json;
        const char *since;
        unsigned limit;
        char **args;             /* positional arguments */
        int n_args;
} VerbOptions;

static void help(const VerbHelp *h) {
        printf("Usage: blegatectl %s\n\n%s\n\n", h->usage, h->description);
        if (h->range)
                printf("      --since=TIME   Events that started at TIME or later: epoch ms, ISO 8601 UTC\n"
                       "                     (2018-01-10T00:00:05Z), or relative (-10min, -2h, -1d)\n"
                       "      --limit=N      At most N events, the oldest first (default %u, at most %u)\n",
                       ANOMALIES_LIMIT_DEFAULT, BUS_ANOMALIES_MAX);
        if (h->json)
                printf("      --json         One JSON object per line, keyed by the D-Bus names\n");
        printf("  -h --help          Show this help\n"
               "\n"
               "Exit status: 0 success, 1 failure, 2 bad usage, 3 blegated not running, 4 access denied.\n");
}

/* Returns 1 to go on, 0 after --help, -EINVAL on bad usage (logged). */
static int parse_argv(int argc, char *argv[], const VerbHelp *h, int min_args, int max_args, VerbOptions *o) {
        enum {
                ARG_JSON = 0x100,
                ARG_SINCE,
                ARG_LIMIT,
        };
        static const struct option options[] = {
                { "json",  no_argument,       NULL, ARG_JSON  },
                { "since", required_argument, NULL, ARG_SINCE },
                { "limit", required_argument, NULL, ARG_LIMIT },
                { "help",  no_argument,       NULL, 'h'       },
                {}
        };
        unsigned long long v;
        char *end;
        int c;

        *o = (VerbOptions) { .limit = ANOMALIES_LIMIT_DEFAULT };

        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case ARG_JSON:
                        if (!h->json)
                                return log_error_errno(EINVAL, "'%s' takes no --json; see --help.", argv[0]);
                        o->json = true;
                        break;
                case ARG_SINCE:
                        if (!h->range)
                                return log_error_errno(EINVAL, "'%s' takes no --since; see --help.", argv[0]);
                        o->since = optarg;
                        break;
                case ARG_LIMIT:
                        if (!h->range)
                                return log_error_errno(EINVAL, "'%s' takes no --limit; see --help.", argv[0]);
                        errno = 0;
                        v = strtoull(optarg, &end, 10);
                        if (errno != 0 || end == optarg || *end || optarg[0] == '-' || v < 1 ||
                            v > BUS_ANOMALIES_MAX)
                                return log_error_errno(EINVAL, "Invalid --limit '%s': expected an integer in 1..%u.",
                                                       optarg, BUS_ANOMALIES_MAX);
                        o->limit = (unsigned) v;
                        break;
                case 'h':
                        help(h);
                        return 0;
                default:
                        return -EINVAL;
                }

        o->args = argv + optind;
        o->n_args = argc - optind;
        if (o->n_args < min_args || o->n_args > max_args)
                return log_error_errno(EINVAL, "Usage: blegatectl %s; see --help.", h->usage);
        return 1;
}

/* The start every bus verb shares: its options, then the connection. Returns -1 to go on, or the
 * exit code to return (--help, a usage error, no bus). */
static int verb_start(int argc, char *argv[], const VerbHelp *h, int min_args, int max_args, VerbOptions *o,
                      sd_bus **ret_bus) {
        int k;

        k = parse_argv(argc, argv, h, min_args, max_args, o);
        if (k <= 0)
                return k < 0 ? EXIT_USAGE : EXIT_SUCCESS;
        k = ctl_bus_open(ret_bus);
        return k != 0 ? k : -1;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

typedef struct GatewayInfo {
        char *version;
        char *state;
        uint64_t readings_received;
        uint64_t readings_stored;
        uint64_t buffered_readings;
        uint64_t undelivered_readings;
        uint64_t buffer_bytes;
        uint64_t oldest_undelivered_usec;
        uint64_t readings_dropped;
        uint64_t anomalies_detected;
        uint64_t untracked_readings;
        uint64_t gatt_links;
        uint64_t bluetooth_recoveries;
        double threshold;
        uint32_t window;
        uint32_t min_samples;
        double min_stddev;
} GatewayInfo;

static void gateway_info_done(GatewayInfo *i) {
        free(i->version);
        free(i->state);
}

/* The counters, in the order status prints them in JSON. */
static const struct {
        const char *name;
        size_t offset;
} gateway_counters[] = {
        { "ReadingsReceived",      offsetof(GatewayInfo, readings_received)       },
        { "ReadingsStored",        offsetof(GatewayInfo, readings_stored)         },
        { "BufferedReadings",      offsetof(GatewayInfo, buffered_readings)       },
        { "UndeliveredReadings",   offsetof(GatewayInfo, undelivered_readings)    },
        { "BufferBytes",           offsetof(GatewayInfo, buffer_bytes)            },
        { "OldestUndeliveredUsec", offsetof(GatewayInfo, oldest_undelivered_usec) },
        { "ReadingsDropped",       offsetof(GatewayInfo, readings_dropped)        },
        { "AnomaliesDetected",     offsetof(GatewayInfo, anomalies_detected)      },
        { "UntrackedReadings",     offsetof(GatewayInfo, untracked_readings)      },
        { "GattLinks",             offsetof(GatewayInfo, gatt_links)              },
        { "BluetoothRecoveries",   offsetof(GatewayInfo, bluetooth_recoveries)    },
};

static int count_devices(sd_bus *bus, sd_bus_error *error, uint64_t *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        uint64_t n = 0;
        int k;

        k = sd_bus_call_method(bus, BUS_NAME, BUS_PATH_GATEWAY, BUS_INTERFACE_GATEWAY, "ListDevices", error, &reply,
                               NULL);
        if (k < 0)
                return k;
        k = sd_bus_message_enter_container(reply, 'a', "(osssssnbtttas)");
        if (k < 0)
                return k;
        while ((k = sd_bus_message_skip(reply, "(osssssnbtttas)")) > 0)
                n++;
        if (k < 0)
                return k;
        *ret = n;
        return 0;
}

int verb_status(int argc, char *argv[]) {
        static const VerbHelp h = {
                .usage = "status [--json]",
                .description = "Show the state of the running gateway: readings, buffer, anomalies, devices,\n"
                               "Bluetooth links and recoveries, and the detector settings in force.",
                .json = true,
        };
        static const CtlProperty map[] = {
                { "Version",               's', offsetof(GatewayInfo, version)                 },
                { "State",                 's', offsetof(GatewayInfo, state)                   },
                { "ReadingsReceived",      't', offsetof(GatewayInfo, readings_received)       },
                { "ReadingsStored",        't', offsetof(GatewayInfo, readings_stored)         },
                { "BufferedReadings",      't', offsetof(GatewayInfo, buffered_readings)       },
                { "UndeliveredReadings",   't', offsetof(GatewayInfo, undelivered_readings)    },
                { "BufferBytes",           't', offsetof(GatewayInfo, buffer_bytes)            },
                { "OldestUndeliveredUsec", 't', offsetof(GatewayInfo, oldest_undelivered_usec) },
                { "ReadingsDropped",       't', offsetof(GatewayInfo, readings_dropped)        },
                { "AnomaliesDetected",     't', offsetof(GatewayInfo, anomalies_detected)      },
                { "UntrackedReadings",     't', offsetof(GatewayInfo, untracked_readings)      },
                { "GattLinks",             't', offsetof(GatewayInfo, gatt_links)              },
                { "BluetoothRecoveries",   't', offsetof(GatewayInfo, bluetooth_recoveries)    },
                { "Threshold",             'd', offsetof(GatewayInfo, threshold)               },
                { "Window",                'u', offsetof(GatewayInfo, window)                  },
                { "MinSamples",            'u', offsetof(GatewayInfo, min_samples)             },
                { "MinStdDev",             'd', offsetof(GatewayInfo, min_stddev)              },
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(gateway_info_done) GatewayInfo info = {};
        char size[32], oldest[TIMESTAMP_MAX];
        uint64_t devices = 0;
        VerbOptions o;
        int k;

        k = verb_start(argc, argv, &h, 0, 0, &o, &bus);
        if (k >= 0)
                return k;
        k = ctl_bus_get_all(bus, BUS_PATH_GATEWAY, BUS_INTERFACE_GATEWAY, map, ELEMENTSOF(map), &info, &error);
        if (k >= 0)
                k = count_devices(bus, &error, &devices);
        if (k < 0)
                return ctl_bus_log_error("get the gateway's status", false, &error, k);

        if (o.json) {
                fputs("{\"Version\":", stdout);
                json_print_string(stdout, strempty(info.version));
                fputs(",\"State\":", stdout);
                json_print_string(stdout, strempty(info.state));
                for (size_t i = 0; i < ELEMENTSOF(gateway_counters); i++)
                        printf(",\"%s\":%" PRIu64, gateway_counters[i].name,
                               *(uint64_t *) ((uint8_t *) &info + gateway_counters[i].offset));
                fputs(",\"Threshold\":", stdout);
                json_print_number(stdout, info.threshold);
                printf(",\"Window\":%" PRIu32 ",\"MinSamples\":%" PRIu32 ",\"MinStdDev\":", info.window,
                       info.min_samples);
                json_print_number(stdout, info.min_stddev);
                printf(",\"Devices\":%" PRIu64 "}\n", devices);
                return EXIT_SUCCESS;
        }

        printf("blegated %s: %s\n", strempty(info.version), strempty(info.state));
        printf("   Readings: %" PRIu64 " received, %" PRIu64 " stored, %" PRIu64 " dropped\n",
               info.readings_received, info.readings_stored, info.readings_dropped);
        printf("     Buffer: %" PRIu64 " readings in %s, %" PRIu64 " undelivered", info.buffered_readings,
               ctl_format_bytes(info.buffer_bytes, size, sizeof(size)), info.undelivered_readings);
        if (info.oldest_undelivered_usec > 0)
                printf(", the oldest from %s", timestamp_format(info.oldest_undelivered_usec, oldest));
        printf("\n  Anomalies: %" PRIu64 " events\n", info.anomalies_detected);
        printf("    Devices: %" PRIu64, devices);
        if (info.untracked_readings > 0)
                printf(" (and %" PRIu64 " readings of devices beyond the limit)", info.untracked_readings);
        printf("\n  Bluetooth: %" PRIu64 " GATT link%s streaming, %" PRIu64 " recover%s", info.gatt_links,
               info.gatt_links == 1 ? "" : "s", info.bluetooth_recoveries,
               info.bluetooth_recoveries == 1 ? "y" : "ies");
        printf("\n   Detector: Threshold=%g Window=%" PRIu32 " MinSamples=%" PRIu32 " MinStdDev=%g\n", info.threshold,
               info.window, info.min_samples, info.min_stddev);
        return EXIT_SUCCESS;
}

typedef struct DeviceRow {
        const char *path, *id, *kind, *type, *address, *name;
        int16_t rssi;
        int connected;
        uint64_t last_seen_usec, readings, anomalies;
        char channels[_CHANNEL_MAX * 3];   /* "ax,ay,..." */
} DeviceRow;

static int read_device_row(sd_bus_message *m, DeviceRow *ret) {
        const char *channel;
        size_t n = 0;
        int k;

        k = sd_bus_message_enter_container(m, 'r', "osssssnbtttas");
        if (k <= 0)
                return k;
        k = sd_bus_message_read(m, "osssssnbttt", &ret->path, &ret->id, &ret->kind, &ret->type, &ret->address,
                                &ret->name, &ret->rssi, &ret->connected, &ret->last_seen_usec, &ret->readings,
                                &ret->anomalies);
        if (k < 0)
                return k;
        k = sd_bus_message_enter_container(m, 'a', "s");
        if (k < 0)
                return k;
        ret->channels[0] = '\0';
        while ((k = sd_bus_message_read_basic(m, 's', &channel)) > 0)
                if (n < sizeof(ret->channels))
                        n += snprintf(ret->channels + n, sizeof(ret->channels) - n, "%s%s", n > 0 ? "," : "",
                                      channel);
        if (k < 0)
                return k;
        k = sd_bus_message_exit_container(m);
        if (k < 0)
                return k;
        k = sd_bus_message_exit_container(m);
        return k < 0 ? k : 1;
}

static void print_device_json(const DeviceRow *d) {
        const char *const strings[][2] = {
                { "Path", d->path }, { "Id", d->id }, { "Kind", d->kind }, { "Type", d->type },
                { "Address", d->address }, { "Name", d->name },
        };

        for (size_t i = 0; i < ELEMENTSOF(strings); i++) {
                printf("%s\"%s\":", i == 0 ? "{" : ",", strings[i][0]);
                json_print_string(stdout, strings[i][1]);
        }
        printf(",\"RSSI\":%d,\"Connected\":%s,\"LastSeenUsec\":%" PRIu64 ",\"ReadingsReceived\":%" PRIu64
               ",\"AnomaliesDetected\":%" PRIu64 ",\"Channels\":[",
               d->rssi, d->connected ? "true" : "false", d->last_seen_usec, d->readings, d->anomalies);
        for (const char *p = d->channels; *p;) {
                size_t n = strcspn(p, ",");

                printf("%s\"%.*s\"", p == d->channels ? "" : ",", (int) n, p);
                p += n + (p[n] == ',');
        }
        fputs("]}\n", stdout);
}

int verb_devices(int argc, char *argv[]) {
        static const VerbHelp h = {
                .usage = "devices [--json]",
                .description = "List the devices the gateway has heard from since it started, sorted by id.\n"
                               "RSSI and ADDRESS are \"-\" for devices not heard over the air (a replay);\n"
                               "LINK is \"up\" while the gateway holds a GATT link to the device.",
                .json = true,
        };
        static const char *const headers[] = {
                "ID", "KIND", "ADDRESS", "RSSI", "LINK", "LAST SEEN", "READINGS", "ANOMALIES", "CHANNELS",
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(table_freep) Table *t = NULL;
        uint64_t now = now_usec();
        DeviceRow d;
        VerbOptions o;
        int k;

        k = verb_start(argc, argv, &h, 0, 0, &o, &bus);
        if (k >= 0)
                return k;
        k = sd_bus_call_method(bus, BUS_NAME, BUS_PATH_GATEWAY, BUS_INTERFACE_GATEWAY, "ListDevices", &error, &reply,
                               NULL);
        if (k < 0)
                return ctl_bus_log_error("list the devices", false, &error, k);

        k = table_new(headers, ELEMENTSOF(headers), (1U << 3) | (1U << 6) | (1U << 7), &t);
        if (k < 0)
                return log_oom(), EXIT_FAILURE;

        k = sd_bus_message_enter_container(reply, 'a', "(osssssnbtttas)");
        while (k >= 0 && (k = read_device_row(reply, &d)) > 0) {
                char rssi[8], seen[32], readings[24], anomalies[24];

                if (o.json) {
                        print_device_json(&d);
                        continue;
                }
                snprintf(rssi, sizeof(rssi), "%d", d.rssi);
                snprintf(readings, sizeof(readings), "%" PRIu64, d.readings);
                snprintf(anomalies, sizeof(anomalies), "%" PRIu64, d.anomalies);
                k = table_add_row(t, (const char *const[]) {
                        d.id, d.kind, isempty(d.address) ? NULL : d.address,
                        d.rssi == DEVICE_RSSI_UNKNOWN ? NULL : rssi, d.connected ? "up" : NULL,
                        ctl_format_ago(d.last_seen_usec, now, seen, sizeof(seen)), readings, anomalies,
                        isempty(d.channels) ? NULL : d.channels,
                });
        }
        if (k < 0)
                return log_error_errno(k, "Failed to read the list of devices: %m"), EXIT_FAILURE;

        if (!o.json) {
                table_print(t, stdout);
                printf("\n%zu device%s.\n", table_rows(t), table_rows(t) == 1 ? "" : "s");
        }
        return EXIT_SUCCESS;
}

/* One event: a JSON line, a row of t, or with t NULL a line of fixed widths (watch). */
static int print_anomaly(bool json, const char *device, const char *channel, uint64_t start, uint64_t end,
                         uint32_t readings, double peak_value, double peak_z, Table *t) {
        char ts[TIMESTAMP_MAX], n[16], duration[32], value[32], z[32];

        if (json) {
                fputs("{\"device\":", stdout);
                json_print_string(stdout, device);
                fputs(",\"channel\":", stdout);
                json_print_string(stdout, channel);
                printf(",\"start_usec\":%" PRIu64 ",\"end_usec\":%" PRIu64 ",\"readings\":%" PRIu32 ",\"peak_value\":",
                       start, end, readings);
                json_print_number(stdout, peak_value);
                fputs(",\"peak_z\":", stdout);
                json_print_number(stdout, peak_z);
                fputs("}\n", stdout);
                return 0;
        }

        snprintf(n, sizeof(n), "%" PRIu32, readings);
        snprintf(duration, sizeof(duration), "%.3fs", end >= start ? (double) (end - start) / 1e6 : 0.0);
        snprintf(value, sizeof(value), "%.4g", peak_value);
        snprintf(z, sizeof(z), "%.2f", peak_z);
        if (t)
                return table_add_row(t, (const char *const[]) {
                        timestamp_format(start, ts), device, channel, n, duration, value, z,
                });
        /* watch: a row at a time, so fixed widths that fit the usual ids. */
        printf("%-24s  %-12s  %-7s  %8s  %9s  %10s  %7s\n", timestamp_format(start, ts), device, channel, n, duration,
               value, z);
        return 0;
}

static const char *const anomaly_headers[] = {
        "START", "DEVICE", "CHANNEL", "READINGS", "DURATION", "PEAK VALUE", "PEAK Z",
};
#define ANOMALY_RIGHT_ALIGNED ((1U << 3) | (1U << 4) | (1U << 5) | (1U << 6))

int verb_anomalies(int argc, char *argv[]) {
        static const VerbHelp h = {
                .usage = "anomalies [--since TIME] [--limit N] [--json]",
                .description = "List the anomaly events in the gateway's store, the oldest first: per device\n"
                               "and channel, the run of consecutive flagged readings with its peak value and z.\n"
                               "Times are the readings' own (for a replay, the recording's), in UTC.",
                .json = true,
                .range = true,
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(table_freep) Table *t = NULL;
        const char *device, *channel;
        uint64_t since = 0, start, end;
        double value, z;
        uint32_t n;
        VerbOptions o;
        int k;

        k = parse_argv(argc, argv, &h, 0, 0, &o);
        if (k <= 0)
                return k < 0 ? EXIT_USAGE : EXIT_SUCCESS;
        if (o.since && ctl_parse_time(o.since, now_usec(), &since) < 0) {
                log_error("Invalid --since '%s': expected epoch milliseconds, ISO 8601 UTC (2018-01-10T00:00:05Z) "
                          "or a relative time (-10min).", o.since);
                return EXIT_USAGE;
        }

        k = ctl_bus_open(&bus);
        if (k != 0)
                return k;
        k = sd_bus_call_method(bus, BUS_NAME, BUS_PATH_GATEWAY, BUS_INTERFACE_GATEWAY, "GetAnomalies", &error, &reply,
                               "tu", since, (uint32_t) o.limit);
        if (k < 0)
                return ctl_bus_log_error("get the anomaly events", false, &error, k);

        k = table_new(anomaly_headers, ELEMENTSOF(anomaly_headers), ANOMALY_RIGHT_ALIGNED, &t);
        if (k < 0)
                return log_oom(), EXIT_FAILURE;

        k = sd_bus_message_enter_container(reply, 'a', "(ssttudd)");
        while (k >= 0 && (k = sd_bus_message_read(reply, "(ssttudd)", &device, &channel, &start, &end, &n, &value,
                                                  &z)) > 0)
                k = print_anomaly(o.json, device, channel, start, end, n, value, z, t);
        if (k < 0)
                return log_error_errno(k, "Failed to read the anomaly events: %m"), EXIT_FAILURE;

        if (!o.json) {
                table_print(t, stdout);
                printf("\n%zu anomaly event%s%s.\n", table_rows(t), table_rows(t) == 1 ? "" : "s",
                       table_rows(t) == o.limit ? " (the limit: use --since or --limit for more)" : "");
        }
        return EXIT_SUCCESS;
}

typedef struct SinkInfo {
        char *name;
        char *kind;
        bool connected;
        uint64_t delivered;
        uint64_t pending;
        char *last_error;
        uint64_t last_delivery_usec;
} SinkInfo;

static void sink_info_done(SinkInfo *s) {
        free(s->name);
        free(s->kind);
        free(s->last_error);
        *s = (SinkInfo) {};
}

static void print_sink_json(const char *path, const SinkInfo *s) {
        fputs("{\"Path\":", stdout);
        json_print_string(stdout, path);
        fputs(",\"Name\":", stdout);
        json_print_string(stdout, strempty(s->name));
        fputs(",\"Kind\":", stdout);
        json_print_string(stdout, strempty(s->kind));
        printf(",\"Connected\":%s,\"Delivered\":%" PRIu64 ",\"Pending\":%" PRIu64 ",\"LastError\":",
               s->connected ? "true" : "false", s->delivered, s->pending);
        json_print_string(stdout, strempty(s->last_error));
        printf(",\"LastDeliveryUsec\":%" PRIu64 "}\n", s->last_delivery_usec);
}

int verb_sinks(int argc, char *argv[]) {
        static const VerbHelp h = {
                .usage = "sinks [--json]",
                .description = "List the uplinks (MQTT, CouchDB) with their connection and delivery state.",
                .json = true,
        };
        static const CtlProperty map[] = {
                { "Name",             's', offsetof(SinkInfo, name)               },
                { "Kind",             's', offsetof(SinkInfo, kind)               },
                { "Connected",        'b', offsetof(SinkInfo, connected)          },
                { "Delivered",        't', offsetof(SinkInfo, delivered)          },
                { "Pending",          't', offsetof(SinkInfo, pending)            },
                { "LastError",        's', offsetof(SinkInfo, last_error)         },
                { "LastDeliveryUsec", 't', offsetof(SinkInfo, last_delivery_usec) },
        };
        static const char *const headers[] = {
                "NAME", "KIND", "CONNECTED", "DELIVERED", "PENDING", "LAST DELIVERY", "LAST ERROR",
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(table_freep) Table *t = NULL;
        uint64_t now = now_usec();
        const char *path;
        VerbOptions o;
        int k;

        k = verb_start(argc, argv, &h, 0, 0, &o, &bus);
        if (k >= 0)
                return k;
        /* Every object at once; the sinks are those with a Sink1 interface. */
        k = sd_bus_call_method(bus, BUS_NAME, BUS_PATH_ROOT, "org.freedesktop.DBus.ObjectManager",
                               "GetManagedObjects", &error, &reply, NULL);
        if (k < 0)
                return ctl_bus_log_error("list the sinks", false, &error, k);

        k = table_new(headers, ELEMENTSOF(headers), (1U << 3) | (1U << 4), &t);
        if (k < 0)
                return log_oom(), EXIT_FAILURE;

        k = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
        while (k >= 0 && (k = sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}")) > 0) {
                const char *interface;

                k = sd_bus_message_read(reply, "o", &path);
                if (k >= 0)
                        k = sd_bus_message_enter_container(reply, 'a', "{sa{sv}}");
                while (k >= 0 && (k = sd_bus_message_enter_container(reply, 'e', "sa{sv}")) > 0) {
                        _cleanup_(sink_info_done) SinkInfo s = {};
                        char delivered[24], pending[24], last[32];

                        k = sd_bus_message_read(reply, "s", &interface);
                        if (k < 0)
                                break;
                        if (!streq(interface, BUS_INTERFACE_SINK))
                                k = sd_bus_message_skip(reply, "a{sv}");
                        else {
                                k = ctl_bus_read_properties(reply, map, ELEMENTSOF(map), &s);
                                if (k < 0)
                                        break;
                                if (o.json)
                                        print_sink_json(path, &s);
                                else {
                                        snprintf(delivered, sizeof(delivered), "%" PRIu64, s.delivered);
                                        snprintf(pending, sizeof(pending), "%" PRIu64, s.pending);
                                        k = table_add_row(t, (const char *const[]) {
                                                s.name, s.kind, yes_no(s.connected), delivered, pending,
                                                ctl_format_ago(s.last_delivery_usec, now, last, sizeof(last)),
                                                isempty(s.last_error) ? NULL : s.last_error,
                                        });
                                }
                        }
                        if (k >= 0)
                                k = sd_bus_message_exit_container(reply);
                }
                if (k >= 0)
                        k = sd_bus_message_exit_container(reply);
                if (k >= 0)
                        k = sd_bus_message_exit_container(reply);
        }
        if (k < 0)
                return log_error_errno(k, "Failed to read the list of sinks: %m"), EXIT_FAILURE;

        if (!o.json) {
                if (table_rows(t) == 0)
                        printf("No sinks configured.\n");
                else {
                        table_print(t, stdout);
                        printf("\n%zu sink%s.\n", table_rows(t), table_rows(t) == 1 ? "" : "s");
                }
        }
        return EXIT_SUCCESS;
}

static int on_anomaly_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const VerbOptions *o = userdata;
        const char *device, *channel;
        uint64_t start, end;
        double value, z;
        uint32_t n;
        int k;

        k = sd_bus_message_read(m, "ssttudd", &device, &channel, &start, &end, &n, &value, &z);
        if (k < 0) {
                log_warning_errno(k, "Ignoring a malformed AnomalyDetected signal: %m");
                return 0;
        }
        (void) print_anomaly(o->json, device, channel, start, end, n, value, z, NULL);
        fflush(stdout);
        return 0;
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (isempty(new_owner))
                log_notice("blegated went away; waiting for it to come back.");
        else
                log_notice("blegated is back.");
        return 0;
}

int verb_watch(int argc, char *argv[]) {
        static const VerbHelp h = {
                .usage = "watch [--json]",
                .description = "Follow the anomaly events as the gateway detects them (the AnomalyDetected\n"
                               "signal), one line each, until interrupted with Ctrl-C.",
                .json = true,
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *anomaly_slot = NULL, *owner_slot = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        VerbOptions o;
        int k;

        k = verb_start(argc, argv, &h, 0, 0, &o, &bus);
        if (k >= 0)
                return k;

        /* Subscribe first, then check the daemon is there, so that nothing is missed between. */
        k = sd_bus_match_signal(bus, &anomaly_slot, BUS_NAME, BUS_PATH_GATEWAY, BUS_INTERFACE_GATEWAY,
                                "AnomalyDetected", on_anomaly_signal, &o);
        if (k >= 0)
                k = sd_bus_add_match(bus, &owner_slot,
                                     "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                                     "interface='org.freedesktop.DBus',member='NameOwnerChanged',"
                                     "arg0='" BUS_NAME "'",
                                     on_name_owner_changed, NULL);
        if (k < 0)
                return log_error_errno(k, "Failed to subscribe to the gateway's signals: %m"), EXIT_FAILURE;
        k = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "GetNameOwner", &error, NULL, "s", BUS_NAME);
        if (k < 0)
                return ctl_bus_log_error("watch the gateway", false, &error, k);

        k = sd_event_default(&event);
        if (k >= 0)
                k = sd_event_set_signal_exit(event, true);
        if (k >= 0)
                k = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (k >= 0)
                k = sd_bus_set_exit_on_disconnect(bus, true);
        if (k < 0)
                return log_error_errno(k, "Failed to set up the event loop: %m"), EXIT_FAILURE;

        if (!o.json) {
                printf("%-24s  %-12s  %-7s  %8s  %9s  %10s  %7s\n", anomaly_headers[0], anomaly_headers[1],
                       anomaly_headers[2], anomaly_headers[3], anomaly_headers[4], anomaly_headers[5],
                       anomaly_headers[6]);
                fflush(stdout);
        }

        k = sd_event_loop(event);
        if (k != 0) {
                log_error("Lost the connection to the system bus.");
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

static int set_property(const char *name, const char *type, ...) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        char what[64];
        va_list ap;
        int k;

        k = ctl_bus_open(&bus);
        if (k != 0)
                return k;

        k = sd_bus_message_new_method_call(bus, &m, BUS_NAME, BUS_PATH_GATEWAY, "org.freedesktop.DBus.Properties",
                                           "Set");
        if (k >= 0)
                k = sd_bus_message_append(m, "ss", BUS_INTERFACE_GATEWAY, name);
        if (k >= 0)
                k = sd_bus_message_open_container(m, 'v', type);
        if (k >= 0) {
                va_start(ap, type);
                k = sd_bus_message_appendv(m, type, ap);
                va_end(ap);
        }
        if (k >= 0)
                k = sd_bus_message_close_container(m);
        if (k < 0)
                return log_error_errno(k, "Failed to build the call: %m"), EXIT_FAILURE;

        k = sd_bus_call(bus, m, 0, &error, NULL);
        if (k < 0) {
                snprintf(what, sizeof(what), "set %s", name);
                return ctl_bus_log_error(what, true, &error, k);
        }
        return EXIT_SUCCESS;
}

int verb_set(int argc, char *argv[]) {
        static const VerbHelp h = {
                .usage = "set threshold Z | set window N",
                .description = "Change a detector setting of the running gateway at once, without touching its\n"
                               "configuration: the next reload (SIGHUP, 'blegatectl reload') or restart goes back\n"
                               "to the file, so put the value in /etc/blegate/blegate.conf.d/ to keep it.\n"
                               "\n"
                               "  threshold Z   anomaly when |z| >= Z, a number > 0\n"
                               "  window N      rolling window of N values, 2..100000; every window restarts\n"
                               "                empty, and MinSamples follows when it was equal to the window\n"
                               "\n"
                               "Needs root.",
        };
        unsigned long long n;
        VerbOptions o;
        char *end;
        double z;
        int k;

        k = parse_argv(argc, argv, &h, 2, 2, &o);
        if (k <= 0)
                return k < 0 ? EXIT_USAGE : EXIT_SUCCESS;

        /* Only the syntax is checked here: the daemon knows the ranges, and its InvalidArgs
         * comes back as a usage error with its message. */
        if (streq(o.args[0], "threshold")) {
                errno = 0;
                z = strtod(o.args[1], &end);
                if (errno != 0 || end == o.args[1] || *end) {
                        log_error("Invalid threshold '%s': expected a number.", o.args[1]);
                        return EXIT_USAGE;
                }
                k = set_property("Threshold", "d", z);
        } else if (streq(o.args[0], "window")) {
                errno = 0;
                n = strtoull(o.args[1], &end, 10);
                if (errno != 0 || end == o.args[1] || *end || o.args[1][0] == '-' || n > UINT32_MAX) {
                        log_error("Invalid window '%s': expected a number of values.", o.args[1]);
                        return EXIT_USAGE;
                }
                k = set_property("Window", "u", (uint32_t) n);
        } else {
                log_error("Unknown setting '%s': expected threshold or window.", o.args[0]);
                return EXIT_USAGE;
        }

        if (k == EXIT_SUCCESS)
                log_info("%s is now %s, until the next reload or restart.", o.args[0], o.args[1]);
        return k;
}

/* A verb without arguments that calls one method without arguments: flush, reload. */
static int verb_call_simple(int argc, char *argv[], const VerbHelp *h, const char *method) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        VerbOptions o;
        int k;

        k = verb_start(argc, argv, h, 0, 0, &o, &bus);
        if (k >= 0)
                return k;
        k = sd_bus_call_method(bus, BUS_NAME, BUS_PATH_GATEWAY, BUS_INTERFACE_GATEWAY, method, &error, NULL, NULL);
        if (k < 0)
                return ctl_bus_log_error(h->usage, true, &error, k);
        return EXIT_SUCCESS;
}

int verb_flush(int argc, char *argv[]) {
        static const VerbHelp h = {
                .usage = "flush",
                .description = "Commit every reading and anomaly event the gateway holds in memory to its store\n"
                               "now, instead of at the end of the commit interval. Needs root.",
        };

        return verb_call_simple(argc, argv, &h, "Flush");
}

int verb_reload(int argc, char *argv[]) {
        static const VerbHelp h = {
                .usage = "reload",
                .description = "Make the gateway re-read its configuration, as SIGHUP does. An invalid\n"
                               "configuration is refused with the reason, and the running one kept. Needs root.",
        };

        return verb_call_simple(argc, argv, &h, "Reload");
}
