/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blegated: parses the command line and runs the manager. Nothing else lives here.
 *
 * Exit codes: 0 after a clean stop or a completed --drain-and-exit, 1 when the daemon could not
 * start (bad command line, invalid configuration, unreadable recording) or failed while running.
 */

#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "config-paths.h"
#include "log.h"
#include "manager-bus.h"
#include "manager.h"

static void help(void) {
        printf("Usage: blegated [OPTIONS]\n"
               "\n"
               "The blegate BLE edge gateway daemon: takes motion readings, scores every one with\n"
               "a streaming z-score, and forwards readings and anomalies.\n"
               "\n"
               "  -c --config=FILE      Configuration file (default: %s/blegate/blegate.conf,\n"
               "                        plus FILE.d/*.conf drop-ins in lexical order)\n"
               "     --replay=FILE      Replay a recording (CSV) as a source; overrides [Replay] File=\n"
               "     --speed=X          Replay speed factor, 0 = as fast as possible; overrides [Replay] Speed=\n"
               "     --drain-and-exit   Exit 0 once the replay has ended and everything is handled\n"
               "     --log-level=LEVEL  err, warning, notice, info (default) or debug\n"
               "     --bus-introspect=INTERFACE\n"
               "                        Print the introspection XML of a D-Bus interface and exit\n"
               "  -h --help             Show this help\n"
               "     --version          Show the version\n"
               "\n"
               "See blegate.conf(5) for the configuration.\n",
               SYSCONFDIR);
}

static int parse_argv(int argc, char *argv[], ManagerOptions *o) {
        enum {
                ARG_REPLAY = 0x100,
                ARG_SPEED,
                ARG_DRAIN_AND_EXIT,
                ARG_LOG_LEVEL,
                ARG_BUS_INTROSPECT,
                ARG_VERSION,
        };
        static const struct option options[] = {
                { "config",         required_argument, NULL, 'c'                },
                { "replay",         required_argument, NULL, ARG_REPLAY         },
                { "speed",          required_argument, NULL, ARG_SPEED          },
                { "drain-and-exit", no_argument,       NULL, ARG_DRAIN_AND_EXIT },
                { "log-level",      required_argument, NULL, ARG_LOG_LEVEL      },
                { "bus-introspect", required_argument, NULL, ARG_BUS_INTROSPECT },
                { "help",           no_argument,       NULL, 'h'                },
                { "version",        no_argument,       NULL, ARG_VERSION        },
                {}
        };
        _cleanup_free_ char *xml = NULL;
        int c, k, level;
        char *end;

        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        o->config_path = optarg;
                        break;
                case ARG_REPLAY:
                        o->replay_path = optarg;
                        break;
                case ARG_SPEED:
                        errno = 0;
                        o->replay_speed = strtod(optarg, &end);
                        if (errno != 0 || end == optarg || *end || !isfinite(o->replay_speed) || o->replay_speed < 0)
                                return log_error_errno(EINVAL, "Invalid --speed '%s': expected a number >= 0.", optarg);
                        break;
                case ARG_DRAIN_AND_EXIT:
                        o->drain_and_exit = true;
                        break;
                case ARG_LOG_LEVEL:
                        level = log_level_from_string(optarg);
                        if (level < 0)
                                return log_error_errno(EINVAL, "Invalid --log-level '%s'.", optarg);
                        log_set_max_level(level);
                        break;
                case ARG_BUS_INTROSPECT:
                        k = bus_introspect(optarg, &xml);
                        if (k == -ENOENT)
                                return log_error_errno(k, "Unknown interface '%s': expected %s, %s or %s.", optarg,
                                                       "org.blegate.Gateway1", "org.blegate.Device1",
                                                       "org.blegate.Sink1");
                        if (k < 0)
                                return log_error_errno(k, "Failed to introspect %s: %m", optarg);
                        fputs(xml, stdout);
                        return 0;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("blegated " PACKAGE_VERSION "\n");
                        return 0;
                case '?':
                        return -EINVAL;
                default:
                        assert(!"Unhandled option");
                }

        if (optind < argc)
                return log_error_errno(EINVAL, "Unexpected argument '%s'; see --help.", argv[optind]);
        return 1;
}

int main(int argc, char *argv[]) {
        ManagerOptions options = { .replay_speed = -1 };
        _cleanup_(manager_freep) Manager *m = NULL;
        sigset_t mask;
        int k;

        log_open();

        k = parse_argv(argc, argv, &options);
        if (k <= 0)
                return k < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        /* Block before any thread exists so that every thread inherits the mask and the signals
         * reach the loop's signalfd only. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        k = pthread_sigmask(SIG_BLOCK, &mask, NULL);
        if (k != 0)
                return log_error_errno(k, "Failed to block signals: %m"), EXIT_FAILURE;

        k = manager_new(&options, &m);
        if (k < 0)
                return EXIT_FAILURE;

        k = manager_start(m);
        if (k < 0)
                return EXIT_FAILURE;

        k = manager_run(m);
        return k == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
