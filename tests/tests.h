/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What every unit test uses: assertions that print file:line and both sides before aborting,
 * and the exit code meson reads as "skipped" (77). A test is a plain function called from
 * main(); a failed assertion ends the whole test binary.
 */

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

#define EXIT_TEST_SKIP 77

#define TEST_FAIL(...)                                                          \
        do {                                                                    \
                fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                 \
                fprintf(stderr, __VA_ARGS__);                                   \
                fputc('\n', stderr);                                            \
                abort();                                                        \
        } while (0)

#define ASSERT_TRUE(expr)                                                       \
        do {                                                                    \
                if (!(expr))                                                    \
                        TEST_FAIL("Assertion failed: %s", #expr);               \
        } while (0)
#define ASSERT_FALSE(expr) ASSERT_TRUE(!(expr))

/* expr returns a negative errno on failure */
#define ASSERT_OK(expr)                                                         \
        ({                                                                      \
                typeof(expr) _r_ = (expr);                                      \
                if (_r_ < 0)                                                    \
                        TEST_FAIL("%s failed: %s", #expr, strerror((int) -_r_)); \
                _r_;                                                            \
        })

#define ASSERT_ERROR(expr, err)                                                 \
        do {                                                                    \
                long long _r_ = (expr);                                         \
                if (_r_ != -(long long) (err))                                  \
                        TEST_FAIL("%s: expected -%s, got %lld (%s)", #expr, #err, _r_, \
                                  _r_ < 0 ? strerror((int) -_r_) : "success");  \
        } while (0)

#define ASSERT_EQ(a, b)                                                         \
        do {                                                                    \
                long long _a_ = (long long) (a), _b_ = (long long) (b);         \
                if (_a_ != _b_)                                                 \
                        TEST_FAIL("%s == %s: %lld != %lld", #a, #b, _a_, _b_);  \
        } while (0)

#define ASSERT_U64_EQ(a, b)                                                     \
        do {                                                                    \
                uint64_t _a_ = (a), _b_ = (b);                                  \
                if (_a_ != _b_)                                                 \
                        TEST_FAIL("%s == %s: %" PRIu64 " != %" PRIu64, #a, #b, _a_, _b_); \
                                                                                \
        } while (0)

#define ASSERT_STREQ(a, b)                                                      \
        do {                                                                    \
                const char *_a_ = (a), *_b_ = (b);                              \
                if (!streq_ptr(_a_, _b_))                                       \
                        TEST_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, strempty(_a_), strempty(_b_)); \
        } while (0)

/* Relative (or, near zero, absolute) closeness of two doubles. */
#define ASSERT_CLOSE(a, b, tol)                                                 \
        do {                                                                    \
                double _a_ = (a), _b_ = (b);                                    \
                if (!(fabs(_a_ - _b_) <= (tol) * fmax(1.0, fmax(fabs(_a_), fabs(_b_))))) \
                        TEST_FAIL("%s ~= %s: %.17g != %.17g", #a, #b, _a_, _b_); \
        } while (0)

/* Writes text to a fresh file in a private temporary directory; returns its path (static buffer). */
const char *test_write_file(const char *name, const char *text);
/* The private temporary directory for this test binary, removed at exit. */
const char *test_tmpdir(void);
