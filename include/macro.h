/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The small helpers every blegate file leans on: cleanup attributes so that an early return
 * cannot leak, TAKE_PTR/TAKE_FD to hand ownership out of a cleanup scope, and typed
 * allocation. Written for this project; libsystemd exports the sd_*_unrefp helpers itself.
 */

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Whether x equals one of the values (evaluated once each). */
#define IN_SET(x, ...)                                                          \
        ({                                                                      \
                const __typeof__(x) _in_set_x = (x);                            \
                const __typeof__(x) _in_set_v[] = { __VA_ARGS__ };              \
                bool _in_set_found = false;                                     \
                for (size_t _in_set_i = 0; _in_set_i < ELEMENTSOF(_in_set_v); _in_set_i++) \
                        if (_in_set_v[_in_set_i] == _in_set_x) {                \
                                _in_set_found = true;                           \
                                break;                                          \
                        }                                                       \
                _in_set_found;                                                  \
        })

#define new(t, n) ((t *) reallocarray(NULL, (n), sizeof(t)))
#define new0(t, n) ((t *) calloc((n) ?: 1, sizeof(t)))

/* Returns the pointer and leaves NULL behind, so the cleanup handler of the scope does nothing. */
#define TAKE_PTR(p)                             \
        ({                                      \
                typeof(p) _p_ = (p);            \
                (p) = NULL;                     \
                _p_;                            \
        })

#define TAKE_FD(fd)                             \
        ({                                      \
                int _fd_ = (fd);                \
                (fd) = -EBADF;                  \
                _fd_;                           \
        })

/* Defines func##p(type *p), for use with _cleanup_, calling func(*p) when *p is set. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                 \
        static inline void func##p(type *p) {                   \
                if (*p)                                         \
                        *p = func(*p);                          \
        }

/* free() that returns NULL, so it fits the x = x_free(x) pattern. */
static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                close(fd);
                errno = saved;
        }
        return -EBADF;
}

static inline void closep(int *fd) {
        *fd = safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void strv_free_contents(char **l, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(l[i]);
}

/* A NULL-terminated array of strings and the strings; NULL is fine. */
static inline char **strv_free(char **l) {
        for (char **p = l; p && *p; p++)
                free(*p);
        free(l);
        return NULL;
}

static inline int negative_errno(void) {
        /* For libc calls that set errno: never returns 0, even if errno was not set. */
        return errno > 0 ? -errno : -EIO;
}

static inline const char *strempty(const char *s) {
        return s ?: "";
}

static inline const char *yes_no(int b) {
        return b ? "yes" : "no";
}

static inline int streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}
#define streq(a, b) (strcmp((a), (b)) == 0)
