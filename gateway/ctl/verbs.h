/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The commands of blegatectl. Each verb gets argv with argv[0] being the verb's own name, parses
 * its own options, and returns the process exit code: 0 success, 1 failure, 2 bad usage.
 */

#define EXIT_USAGE 2

int verb_analyze(int argc, char *argv[]);
int verb_decode(int argc, char *argv[]);
