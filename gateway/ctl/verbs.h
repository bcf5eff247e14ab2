/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The commands of blegatectl. Each verb gets argv with argv[0] being the verb's own name, parses
 * its own options, and returns the process exit code: 0 success, 1 failure, 2 bad usage.
 */

#define EXIT_USAGE 2
/* The bus verbs: blegated cannot be reached (LSB's "program is not running" for status), and
 * the caller may not do this (LSB's "insufficient privilege"). */
#define EXIT_NOT_RUNNING 3
#define EXIT_ACCESS_DENIED 4

int verb_analyze(int argc, char *argv[]);
int verb_decode(int argc, char *argv[]);

/* bus-verbs.c: the running daemon, over D-Bus */
int verb_status(int argc, char *argv[]);
int verb_devices(int argc, char *argv[]);
int verb_anomalies(int argc, char *argv[]);
int verb_sinks(int argc, char *argv[]);
int verb_watch(int argc, char *argv[]);
int verb_set(int argc, char *argv[]);
int verb_flush(int argc, char *argv[]);
int verb_reload(int argc, char *argv[]);
