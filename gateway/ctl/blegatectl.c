/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blegatectl: the command line of blegate. This file only dispatches to the verbs; each verb
 * lives in its own file (analyze.c: the offline analysis of a recording; decode.c: sensor bytes
 * to readings).
 * bus-verbs.c holds the commands that query and steer the running daemon over D-Bus.
 */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "config-paths.h"
#include "log.h"
#include "macro.h"
#include "verbs.h"

typedef struct Verb {
        const char *name;
        int (*run)(int argc, char *argv[]);
        const char *summary;
} Verb;

static const Verb verbs[] = {
        { "status",    verb_status,    "Show the running gateway's state, counters and settings" },
        { "devices",   verb_devices,   "List the devices the gateway has heard from" },
        { "anomalies", verb_anomalies, "List the anomaly events in the gateway's store" },
        { "sinks",     verb_sinks,     "List the uplinks and their delivery state" },
        { "watch",     verb_watch,     "Follow anomaly events live until Ctrl-C" },
        { "set",       verb_set,       "Change the detector's threshold or window at once (root)" },
        { "flush",     verb_flush,     "Commit what the gateway holds in memory now (root)" },
        { "reload",    verb_reload,    "Make the gateway re-read its configuration (root)" },
        { "analyze", verb_analyze, "Score a recording offline (streaming or the notebook's batch z-score)" },
        { "decode",  verb_decode,  "Decode a value a sensor sent (hex) into readings, as JSON" },
};

static void help(void) {
        printf("Usage: blegatectl [--version] [--help] COMMAND [ARGS...]\n"
               "\n"
               "Query, steer and analyse the blegate BLE edge gateway.\n"
               "\n"
               "Commands:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                printf("  %-10s %s\n", verbs[i].name, verbs[i].summary);
        printf("\n"
               "Run 'blegatectl COMMAND --help' for the options of a command.\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help",    no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {}
        };
        int c;

        log_open();

        /* Stop at the first non-option: what follows belongs to the verb. */
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case 'V':
                        printf("blegatectl " PACKAGE_VERSION "\n");
                        return EXIT_SUCCESS;
                default:
                        return EXIT_USAGE;
                }

        if (optind >= argc) {
                log_error("Missing command; see 'blegatectl --help'.");
                return EXIT_USAGE;
        }

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[optind], verbs[i].name)) {
                        int first = optind;

                        /* Each verb parses its own options from a fresh getopt state. */
                        optind = 0;
                        return verbs[i].run(argc - first, argv + first);
                }

        log_error("Unknown command '%s'; see 'blegatectl --help'.", argv[optind]);
        return EXIT_USAGE;
}
