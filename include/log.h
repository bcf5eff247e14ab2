/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Logging for the daemon and the CLI: one line per message on stderr. When stderr is the
 * journal (JOURNAL_STREAM matches it), every line carries a "<N>" syslog priority prefix so
 * journald files it at the right level; on a terminal the prefix is left out. Library-like
 * modules never log: they return a negative errno and the caller logs once.
 *
 * The *_errno variants set errno from the error so "%m" prints it, and return the error as a
 * negative errno, so "return log_error_errno(r, "Failed to ...: %m");" logs and propagates.
 */

#include <stdarg.h>
#include <syslog.h>

#include "macro.h"

void log_set_max_level(int level);
int log_get_max_level(void);
/* "err", "warning", "notice", "info", "debug" (or a number 0..7); returns the level or -EINVAL. */
int log_level_from_string(const char *s);
/* Decides once whether stderr goes to the journal; call at start-up, before logging. */
void log_open(void);

int log_internal(int level, int error, const char *file, int line, const char *format, ...) _printf_(5, 6);

#define log_full_errno(level, error, ...)                                               \
        ({                                                                              \
                int _l_ = (level), _e_ = (error);                                       \
                _l_ <= log_get_max_level()                                              \
                        ? log_internal(_l_, _e_, __FILE__, __LINE__, __VA_ARGS__)       \
                        : -abs(_e_);                                                    \
        })
#define log_full(level, ...) (void) log_full_errno(level, 0, __VA_ARGS__)

#define log_crit(...) log_full(LOG_CRIT, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)

#define log_crit_errno(error, ...) log_full_errno(LOG_CRIT, error, __VA_ARGS__)
#define log_error_errno(error, ...) log_full_errno(LOG_ERR, error, __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_WARNING, error, __VA_ARGS__)
#define log_notice_errno(error, ...) log_full_errno(LOG_NOTICE, error, __VA_ARGS__)
#define log_info_errno(error, ...) log_full_errno(LOG_INFO, error, __VA_ARGS__)
#define log_debug_errno(error, ...) log_full_errno(LOG_DEBUG, error, __VA_ARGS__)

#define log_oom() log_error_errno(ENOMEM, "Out of memory.")
