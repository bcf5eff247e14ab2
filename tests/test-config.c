/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What an administrator sees of blegate.conf: the defaults, what each key accepts, the exact
 * file:line of every complaint, drop-in order, and that a broken file never replaces a working
 * configuration. The shipped units/blegate.conf is checked against the built-in defaults.
 */

#include <limits.h>
#include <sys/stat.h>

#include "config.h"
#include "tests.h"

#define REPORTS_MAX 32

typedef struct Reports {
        unsigned n;
        char file[REPORTS_MAX][512];
        unsigned line[REPORTS_MAX];
        char message[REPORTS_MAX][512];
} Reports;

static void collect(const char *file, unsigned line, const char *message, void *userdata) {
        Reports *r = userdata;

        /* Shown in the test log: the messages are part of what this test checks by eye. */
        fprintf(stderr, "    report: %s:%u: %s\n", file, line, message);
        if (r->n < REPORTS_MAX) {
                snprintf(r->file[r->n], sizeof(r->file[r->n]), "%s", file);
                r->line[r->n] = line;
                snprintf(r->message[r->n], sizeof(r->message[r->n]), "%s", message);
        }
        r->n++;
}

/* Parses text as one file named "test.conf" into a fresh Config. */
static int parse_text(const char *text, Config **ret, Reports *reports) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        int r;

        memset(reports, 0, sizeof(*reports));
        ASSERT_OK(config_new(&c));
        f = fmemopen((void *) text, strlen(text), "r");
        ASSERT_TRUE(f);
        r = config_parse(c, f, "test.conf", collect, reports);
        if (ret)
                *ret = TAKE_PTR(c);
        return r;
}

/* Expects text to be rejected with exactly one report, on line; returns its message. */
static const char *assert_one_error(const char *text, unsigned line) {
        static Reports reports;

        ASSERT_ERROR(parse_text(text, NULL, &reports), EINVAL);
        ASSERT_EQ(reports.n, 1);
        ASSERT_EQ(reports.line[0], line);
        ASSERT_STREQ(reports.file[0], "test.conf");
        return reports.message[0];
}

static void assert_defaults(const Config *c, unsigned min_samples) {
        ASSERT_STREQ(c->store_path, "/var/lib/blegate/buffer.db");
        ASSERT_U64_EQ(c->store_max_size, UINT64_C(256) << 20);
        ASSERT_TRUE(c->store_commit_interval == 0.25);
        ASSERT_EQ(c->store_commit_readings, 500);
        ASSERT_EQ(c->window, 100);
        ASSERT_TRUE(c->threshold == 3.0);
        ASSERT_TRUE(c->min_stddev == 0.001);
        ASSERT_EQ(c->min_samples, min_samples);
        ASSERT_TRUE(c->replay_file == NULL);
        ASSERT_TRUE(c->replay_speed == 1.0);
        ASSERT_TRUE(c->status_interval == 0.0);
        ASSERT_TRUE(c->ble_enable);
        ASSERT_TRUE(c->ble_adapters == NULL);
}

static void test_defaults(void) {
        _cleanup_(config_freep) Config *c = NULL;
        Reports reports = {};
        char path[PATH_MAX];

        ASSERT_OK(config_new(&c));
        assert_defaults(c, 0);
        c = config_free(c);
        ASSERT_TRUE(config_free(NULL) == NULL);

        /* No file at all: the defaults, with MinSamples resolved to Window. */
        snprintf(path, sizeof(path), "%s/absent.conf", test_tmpdir());
        ASSERT_OK(config_load(path, false, collect, &reports, &c));
        ASSERT_EQ(reports.n, 0);
        assert_defaults(c, 100);

        /* Comments, blank lines and empty sections change nothing. */
        c = config_free(c);
        ASSERT_OK(parse_text("# nothing\n; here\n\n[Store]\n[Detector]\n", &c, &reports));
        assert_defaults(c, 0);
}

static void test_good_file(void) {
        _cleanup_(config_freep) Config *c = NULL;
        Reports reports;

        ASSERT_OK(parse_text("\xef\xbb\xbf# blegate.conf with every key\n"
                             "[Store]\n"
                             "Path = /srv/blegate/buf.db\n"
                             "\n"
                             "; a comment\n"
                             "[Detector] ; inline comment after a header\n"
                             "    Window=50\r\n"
                             "\tThreshold =2.5 ; inline comment\n"
                             "MinStdDev=1e-4\n"
                             "MinSamples=20\n"
                             "[Replay]\n"
                             "File=/usr/share/blegate/demo.csv;x\n"
                             "Speed=0\n"
                             "[Gateway]\n"
                             "StatusInterval=86400",
                             &c, &reports));
        ASSERT_EQ(reports.n, 0);
        ASSERT_STREQ(c->store_path, "/srv/blegate/buf.db");
        ASSERT_EQ(c->window, 50);
        ASSERT_TRUE(c->threshold == 2.5);
        ASSERT_TRUE(c->min_stddev == 1e-4);
        ASSERT_EQ(c->min_samples, 20);
        /* A ';' not after a blank is part of the value. */
        ASSERT_STREQ(c->replay_file, "/usr/share/blegate/demo.csv;x");
        ASSERT_TRUE(c->replay_speed == 0.0);
        ASSERT_TRUE(c->status_interval == 86400.0);
        c = config_free(c);

        /* The limits themselves are accepted; repeated sections and keys: the last one wins. */
        ASSERT_OK(parse_text("[Detector]\nWindow=2\nMinSamples=1\n"
                             "[Gateway]\nStatusInterval=0.5\n"
                             "[Detector]\nWindow=100000\nWindow=7\nMinSamples=100000\nThreshold=1e-300\n",
                             &c, &reports));
        ASSERT_EQ(c->window, 7);
        ASSERT_EQ(c->min_samples, 100000);
        ASSERT_TRUE(c->threshold == 1e-300);
        ASSERT_TRUE(c->status_interval == 0.5);
}

static void test_bad_values(void) {
        static const char *const bad_window[] = { "abc", "1", "0", "100001", "-1", "+5", " 5x", "0x10", "5 5",
                                                  "2.0", "99999999999999999999999" },
                          *const bad_min_samples[] = { "0", "100001", "-0", "x" },
                          *const bad_positive[] = { "0", "-1", "nan", "NaN", "inf", "-inf", "1e999", "0x1p3",
                                                    "1,5", "e", "." },
                          *const bad_speed[] = { "-0.1", "nan", "inf", "1e400", "fast" },
                          *const bad_interval[] = { "-1", "86400.5", "1e9", "nan", "5s" },
                          *const bad_path[] = { "relative/buffer.db", "/var/lib/blegate/", "/", "./x",
                                                "/a\tb", "~/x" };
        Reports reports;
        char text[256];

        for (size_t i = 0; i < ELEMENTSOF(bad_window); i++) {
                snprintf(text, sizeof(text), "[Detector]\n\nWindow=%s\n", bad_window[i]);
                assert_one_error(text, 3);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad_min_samples); i++) {
                snprintf(text, sizeof(text), "[Detector]\nMinSamples=%s\n", bad_min_samples[i]);
                assert_one_error(text, 2);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad_positive); i++) {
                snprintf(text, sizeof(text), "[Detector]\nThreshold=%s\n", bad_positive[i]);
                assert_one_error(text, 2);
                snprintf(text, sizeof(text), "[Detector]\n#\nMinStdDev=%s\n", bad_positive[i]);
                assert_one_error(text, 3);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad_speed); i++) {
                snprintf(text, sizeof(text), "[Replay]\nSpeed=%s\n", bad_speed[i]);
                assert_one_error(text, 2);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad_interval); i++) {
                snprintf(text, sizeof(text), "[Gateway]\nStatusInterval=%s\n", bad_interval[i]);
                assert_one_error(text, 2);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad_path); i++) {
                snprintf(text, sizeof(text), "[Store]\nPath=%s\n", bad_path[i]);
                assert_one_error(text, 2);
                snprintf(text, sizeof(text), "[Replay]\nFile=%s\n", bad_path[i]);
                assert_one_error(text, 2);
        }

        /* The message names key, value and what was expected; control characters are escaped. */
        ASSERT_STREQ(assert_one_error("[Detector]\nWindow=abc\n", 2),
                     "Invalid value for Window= 'abc': expected an integer in 2..100000");
        ASSERT_STREQ(assert_one_error("[Detector]\nThreshold=0\n", 2),
                     "Invalid value for Threshold= '0': expected a number > 0");
        ASSERT_STREQ(assert_one_error("[Replay]\nSpeed=-1\n", 2),
                     "Invalid value for Speed= '-1': expected a number >= 0");
        ASSERT_STREQ(assert_one_error("[Gateway]\nStatusInterval=1e9\n", 2),
                     "Invalid value for StatusInterval= '1e9': expected a number in 0..86400");
        ASSERT_STREQ(assert_one_error("[Store]\nPath=/a\x1b[31mb\n", 2),
                     "Invalid value for Path= '/a\\x1b[31mb': expected text without control characters");

        /* Every problem in the file is reported, each with its own line, and a bad value leaves
         * the key as it was. */
        _cleanup_(config_freep) Config *c = NULL;
        ASSERT_ERROR(parse_text("[Detector]\n"
                                "Window=50\n"
                                "Window=abc\n"
                                "Threshold=nan\n"
                                "MinStdDev=0.5\n"
                                "MinSamples=0\n"
                                "[Replay]\n"
                                "Speed=-2\n"
                                "File=x\n",
                                &c, &reports),
                     EINVAL);
        ASSERT_EQ(reports.n, 5);
        ASSERT_EQ(reports.line[0], 3);
        ASSERT_EQ(reports.line[1], 4);
        ASSERT_EQ(reports.line[2], 6);
        ASSERT_EQ(reports.line[3], 8);
        ASSERT_EQ(reports.line[4], 9);
        ASSERT_EQ(c->window, 50);
        ASSERT_TRUE(c->threshold == 3.0);
        ASSERT_TRUE(c->min_stddev == 0.5);
}

static void test_sizes(void) {
        static const struct {
                const char *text;
                uint64_t bytes;
        } good[] = {
                { "1048576", UINT64_C(1) << 20 }, { "1M", UINT64_C(1) << 20 }, { "1024K", UINT64_C(1) << 20 },
                { "256M", UINT64_C(256) << 20 },  { "3G", UINT64_C(3) << 30 },  { "1T", UINT64_C(1) << 40 },
        };
        static const char *const bad[] = { "1048575", "1023K", "0", "2T", "1025G", "-1M", "1.5G", "1m", "1MB",
                                           "M", "1 M", "18446744073709551615T", "99999999999999999999" };
        _cleanup_(config_freep) Config *c = NULL;
        Reports reports;
        char text[256];

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                snprintf(text, sizeof(text), "[Store]\nMaxSize=%s\n", good[i].text);
                c = config_free(c);
                ASSERT_OK(parse_text(text, &c, &reports));
                ASSERT_U64_EQ(c->store_max_size, good[i].bytes);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                snprintf(text, sizeof(text), "[Store]\n\nMaxSize=%s\n", bad[i]);
                assert_one_error(text, 3);
        }
        ASSERT_STREQ(assert_one_error("[Store]\nMaxSize=1MB\n", 2),
                     "Invalid value for MaxSize= '1MB': expected a size in bytes from 1M to 1024G, "
                     "with an optional K, M, G or T suffix");

        c = config_free(c);
        ASSERT_OK(parse_text("[Store]\nCommitInterval=0.001\nCommitReadings=1\n", &c, &reports));
        ASSERT_TRUE(c->store_commit_interval == 0.001);
        ASSERT_EQ(c->store_commit_readings, 1);
        assert_one_error("[Store]\nCommitInterval=0\n", 2);
        assert_one_error("[Store]\nCommitInterval=61\n", 2);
        assert_one_error("[Store]\nCommitReadings=0\n", 2);
        assert_one_error("[Store]\nCommitReadings=100001\n", 2);
}

static void test_unknown_and_syntax(void) {
        Reports reports;

        ASSERT_ERROR(parse_text("[Detector]\nWindow=10\n\n# typo\nTreshold=4\n", NULL, &reports), EINVAL);
        ASSERT_EQ(reports.n, 1);
        ASSERT_EQ(reports.line[0], 5);
        ASSERT_STREQ(reports.message[0], "Unknown key 'Treshold' in section [Detector]");

        /* An unknown section is reported once, not once per key in it. */
        ASSERT_ERROR(parse_text("[Detector]\nWindow=10\n[Detektor]\nWindow=5\nThreshold=2\n", NULL, &reports), EINVAL);
        ASSERT_EQ(reports.n, 1);
        ASSERT_EQ(reports.line[0], 3);
        ASSERT_STREQ(reports.message[0], "Unknown section [Detektor]");

        /* Case-sensitive, like systemd. */
        assert_one_error("[detector]\nWindow=10\n", 1);
        assert_one_error("[Detector]\nwindow=10\n", 2);
        assert_one_error("[ Detector ]\nWindow=10\n", 1);
        /* A known key in the wrong section. */
        assert_one_error("[Store]\nWindow=10\n", 2);

        ASSERT_ERROR(parse_text("Window=10\n[Detector]\n", NULL, &reports), EINVAL);
        ASSERT_EQ(reports.n, 1);
        ASSERT_EQ(reports.line[0], 1);
        ASSERT_STREQ(reports.message[0], "Key 'Window' outside of any section");
        assert_one_error("[Detector]\nWindow 10\n", 2);
        assert_one_error("[Detector]\nWindow: 10\n", 2);
        assert_one_error("[Detector]\nWin:dow=10\n", 2);
        assert_one_error("[Detector]\nWin dow=10\n", 2);
        assert_one_error("[Detector]\n=10\n", 2);
        assert_one_error("[Detector]\nWindow ;=10\n", 2);
        assert_one_error("[Detector\nWindow=10\n", 1);
        assert_one_error("[Detector]x\nWindow=10\n", 1);
        assert_one_error("[]\nWindow=10\n", 1);
        assert_one_error("[Detector]\nWindow=10\n\x01\x02\xff\n", 3);
        /* A byte order mark only counts at the very start. */
        ASSERT_STREQ(assert_one_error("[Detector]\n\xef\xbb\xbfWindow=10\n", 2),
                     "Invalid key name '\\xef\\xbb\\xbfWindow'");
        ASSERT_STREQ(assert_one_error("\xef\xbb\xbf\xef\xbb\xbfWindow=10\n", 1),
                     "Invalid key name '\\xef\\xbb\\xbfWindow'");

        /* inih would cut the line at the NUL and take "Window=10". */
        static const char nul[] = "[Detector]\nWindow=10\0junk\n";
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_fclose_ FILE *f = NULL;

        memset(&reports, 0, sizeof(reports));
        ASSERT_OK(config_new(&c));
        ASSERT_TRUE(f = fmemopen((void *) nul, sizeof(nul) - 1, "r"));
        ASSERT_ERROR(config_parse(c, f, "nul.conf", collect, &reports), EINVAL);
        ASSERT_EQ(reports.n, 1);
        ASSERT_EQ(reports.line[0], 2);
        ASSERT_EQ(c->window, 100);

        /* inih would take an indented line for a continuation of the value above it; here it is
         * a line of its own. */
        c = config_free(c);
        ASSERT_OK(parse_text("[Detector]\nWindow=10\n    Threshold=4\n  [Store]\n  Path=/x\n", &c, &reports));
        ASSERT_EQ(c->window, 10);
        ASSERT_TRUE(c->threshold == 4.0);
        ASSERT_STREQ(c->store_path, "/x");

        /* Several problems of every kind, each on its line. */
        ASSERT_ERROR(parse_text("Window=1\n"        /* 1: outside of any section */
                                "[Detector]\n"
                                "Window\n"          /* 3: missing '=' */
                                "[Nope]\n"          /* 4: unknown section */
                                "Foo=bar\n"
                                "[Gateway]\n"
                                "Threshold=2\n"     /* 7: unknown key here */
                                "StatusInterval=x\n", /* 8: bad value */
                                NULL, &reports),
                     EINVAL);
        ASSERT_EQ(reports.n, 5);
        ASSERT_EQ(reports.line[0], 1);
        ASSERT_EQ(reports.line[1], 3);
        ASSERT_EQ(reports.line[2], 4);
        ASSERT_EQ(reports.line[3], 7);
        ASSERT_EQ(reports.line[4], 8);
}

static char *append(char *p, char c, size_t n) {
        memset(p, c, n);
        return p + n;
}

static void test_long_line(void) {
        _cleanup_(config_freep) Config *c = NULL;
        char text[4096], *p;
        Reports reports;

        /* 198 bytes is the longest line inih (INI_MAX_LINE 200 in Debian) can take whole. */
        p = text + sprintf(text, "[Store]\nPath=/");
        p = append(p, 'a', 198 - strlen("Path=/"));
        strcpy(p, "\n");
        ASSERT_OK(parse_text(text, &c, &reports));
        ASSERT_EQ(strlen(c->store_path), 193);
        c = config_free(c);

        /* One byte more is an error for that line alone: the lines after it are still parsed,
         * with the right numbers. */
        p = text + sprintf(text, "[Store]\nPath=/");
        p = append(p, 'b', 199 - strlen("Path=/"));
        strcpy(p, "\n[Detector]\nWindow=x\n");
        ASSERT_ERROR(parse_text(text, &c, &reports), EINVAL);
        ASSERT_EQ(reports.n, 2);
        ASSERT_EQ(reports.line[0], 2);
        ASSERT_STREQ(reports.message[0], "Line too long (more than 198 bytes)");
        ASSERT_EQ(reports.line[1], 4);
        ASSERT_STREQ(c->store_path, "/var/lib/blegate/buffer.db");
        c = config_free(c);

        /* Many times inih's buffer: still one line. */
        p = text + sprintf(text, "[Detector]\n#");
        p = append(p, ' ', 3000);
        strcpy(p, "\nWindow=5\n");
        ASSERT_ERROR(parse_text(text, &c, &reports), EINVAL);
        ASSERT_EQ(reports.n, 1);
        ASSERT_EQ(reports.line[0], 2);
        ASSERT_EQ(c->window, 5);
        c = config_free(c);

        /* The tail of an over-long comment is not read as an assignment of its own. */
        p = text + sprintf(text, "[Detector]\n#");
        p = append(p, 'x', 300);
        strcpy(p, "Window=3\n");
        ASSERT_ERROR(parse_text(text, &c, &reports), EINVAL);
        ASSERT_EQ(reports.n, 1);
        ASSERT_EQ(c->window, 100);
}

static void test_empty_value_resets(void) {
        _cleanup_(config_freep) Config *c = NULL;
        Reports reports;

        ASSERT_OK(parse_text("[Store]\nPath=/x\n[Detector]\nWindow=10\nThreshold=2\nMinStdDev=1\nMinSamples=5\n"
                             "[Replay]\nFile=/y\nSpeed=3\n[Gateway]\nStatusInterval=60\n"
                             "[Store]\nPath=\n[Detector]\nWindow=\nThreshold= \nMinStdDev= ; comment\nMinSamples=\n"
                             "[Replay]\nFile=\nSpeed=\n[Gateway]\nStatusInterval=\n",
                             &c, &reports));
        ASSERT_EQ(reports.n, 0);
        assert_defaults(c, 0);
}

static void test_ble(void) {
        _cleanup_(config_freep) Config *c = NULL;
        Reports reports;

        ASSERT_OK(parse_text("[BLE]\nEnable=No\nAdapters=  hci1\thci0  \n", &c, &reports));
        ASSERT_FALSE(c->ble_enable);
        ASSERT_STREQ(c->ble_adapters, "hci1 hci0");
        c = config_free(c);

        /* Empty values reset: every adapter, enabled. */
        ASSERT_OK(parse_text("[BLE]\nEnable=off\nAdapters=hci0\nEnable=\nAdapters=\n", &c, &reports));
        ASSERT_TRUE(c->ble_enable);
        ASSERT_TRUE(c->ble_adapters == NULL);

        ASSERT_STREQ(assert_one_error("[BLE]\nEnable=maybe\n", 2),
                     "Invalid value for Enable= 'maybe': expected a boolean (yes/no, true/false, on/off, 1/0)");
        ASSERT_STREQ(assert_one_error("[BLE]\nAdapters=hci0,hci1\n", 2),
                     "Invalid value for Adapters= 'hci0,hci1': expected adapter names such as hci0, separated by "
                     "spaces");
        ASSERT_STREQ(assert_one_error("[BLE]\nAdapters=/org/bluez/hci0\n", 2),
                     "Invalid value for Adapters= '/org/bluez/hci0': expected adapter names such as hci0, "
                     "separated by spaces");
        c = config_free(c);

        /* Links and devices: addresses are kept in upper case, kinds as written. */
        ASSERT_OK(parse_text("[BLE]\nPowerOn=yes\nPassiveScan=no\nMaxConnections=2\n"
                             "Allow= sensortag\t54:6c:0e:00:00:01 phone \nDeny=D0:0D:52:00:00:00\nStallTimeout=0\n",
                             &c, &reports));
        ASSERT_TRUE(c->ble_power_on);
        ASSERT_FALSE(c->ble_passive);
        ASSERT_EQ(c->ble_max_connections, 2U);
        ASSERT_STREQ(c->ble_allow, "sensortag 54:6C:0E:00:00:01 phone");
        ASSERT_STREQ(c->ble_deny, "D0:0D:52:00:00:00");
        ASSERT_TRUE(c->ble_stall_timeout == 0);
        c = config_free(c);
        ASSERT_OK(parse_text("[BLE]\nAllow=ruuvi\nAllow=\n", &c, &reports));
        ASSERT_TRUE(c->ble_allow == NULL);

        ASSERT_STREQ(assert_one_error("[BLE]\nMaxConnections=0\n", 2),
                     "Invalid value for MaxConnections= '0': expected an integer in 1..32");
        ASSERT_STREQ(assert_one_error("[BLE]\nAllow=54:6C:0E:00:00\n", 2),
                     "Invalid value for Allow= '54:6C:0E:00:00': expected addresses such as AA:BB:CC:DD:EE:FF or "
                     "kinds (ruuvi, sensortag, thingy52, phone), separated by spaces");
        ASSERT_STREQ(assert_one_error("[BLE]\nDeny=fitbit\n", 2),
                     "Invalid value for Deny= 'fitbit': expected addresses such as AA:BB:CC:DD:EE:FF or "
                     "kinds (ruuvi, sensortag, thingy52, phone), separated by spaces");
        ASSERT_STREQ(assert_one_error("[BLE]\nStallTimeout=-1\n", 2),
                     "Invalid value for StallTimeout= '-1': expected a number in 0..86400");
}

static void mkdir_dropins(const char *name) {
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/%s", test_tmpdir(), name);
        if (mkdir(path, 0755) < 0)
                TEST_FAIL("mkdir(%s): %m", path);
}

static void test_dropins(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *main_conf = NULL;
        Reports reports = {};

        main_conf = strdup(test_write_file("order.conf", "[Detector]\nWindow=10\nThreshold=5\nMinStdDev=0.5\n"));
        ASSERT_TRUE(main_conf);
        mkdir_dropins("order.conf.d");
        /* Written out of order: the directory's order must not matter. */
        test_write_file("order.conf.d/20-b.conf", "[Detector]\nThreshold=7\n");
        test_write_file("order.conf.d/10-a.conf", "[Detector]\nThreshold=6\nWindow=20\n[Replay]\nSpeed=2\n");
        test_write_file("order.conf.d/9-c.conf", "[Replay]\nSpeed=9\n"); /* strcmp order: "10-" < "20-" < "9-" */
        test_write_file("order.conf.d/30-ignored.conf.disabled", "garbage\n");
        test_write_file("order.conf.d/README", "garbage\n");
        test_write_file("order.conf.d/.hidden.conf", "garbage\n");

        ASSERT_OK(config_load(main_conf, true, collect, &reports, &c));
        ASSERT_EQ(reports.n, 0);
        ASSERT_EQ(c->window, 20);
        ASSERT_TRUE(c->threshold == 7.0);
        ASSERT_TRUE(c->min_stddev == 0.5);
        ASSERT_TRUE(c->replay_speed == 9.0);
        ASSERT_EQ(c->min_samples, 20);
        c = config_free(c);

        /* An error in a drop-in names the drop-in and its line. */
        test_write_file("order.conf.d/40-bad.conf", "[Detector]\n\nWindow=1\n");
        ASSERT_ERROR(config_load(main_conf, true, collect, &reports, &c), EINVAL);
        ASSERT_EQ(reports.n, 1);
        ASSERT_TRUE(strstr(reports.file[0], "/order.conf.d/40-bad.conf"));
        ASSERT_EQ(reports.line[0], 3);
        ASSERT_TRUE(c == NULL);
}

static void test_missing_main(void) {
        _cleanup_(config_freep) Config *c = NULL;
        char path[PATH_MAX];
        Reports reports = {};

        snprintf(path, sizeof(path), "%s/missing.conf", test_tmpdir());
        ASSERT_ERROR(config_load(path, true, collect, &reports, &c), ENOENT);
        ASSERT_EQ(reports.n, 1);
        ASSERT_EQ(reports.line[0], 0);
        ASSERT_TRUE(c == NULL);

        /* Optional main file: its drop-ins still apply. */
        mkdir_dropins("missing.conf.d");
        test_write_file("missing.conf.d/50-window.conf", "[Detector]\nWindow=30\n");
        memset(&reports, 0, sizeof(reports));
        ASSERT_OK(config_load(path, false, collect, &reports, &c));
        ASSERT_EQ(reports.n, 0);
        ASSERT_EQ(c->window, 30);
        ASSERT_EQ(c->min_samples, 30);
        c = config_free(c);

        /* A main file that is not readable as a file. */
        snprintf(path, sizeof(path), "%s/missing.conf.d", test_tmpdir());
        ASSERT_ERROR(config_load(path, false, collect, &reports, &c), EISDIR);
        ASSERT_TRUE(c == NULL);
}

static void test_min_samples_across_files(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *main_conf = NULL;
        Reports reports = {};

        /* Fine in the main file alone; a drop-in then lowers Window under it. */
        main_conf = strdup(test_write_file("ms.conf", "[Detector]\nWindow=500\n\nMinSamples=400\n"));
        ASSERT_TRUE(main_conf);
        mkdir_dropins("ms.conf.d");
        test_write_file("ms.conf.d/10-window.conf", "[Detector]\nWindow=300\n");
        ASSERT_ERROR(config_load(main_conf, true, collect, &reports, &c), EINVAL);
        ASSERT_EQ(reports.n, 1);
        ASSERT_STREQ(reports.file[0], main_conf);
        ASSERT_EQ(reports.line[0], 4);
        ASSERT_STREQ(reports.message[0], "MinSamples=400 is greater than Window=300");
        ASSERT_TRUE(c == NULL);

        /* A later drop-in raising Window again makes it valid: only the end result counts. */
        test_write_file("ms.conf.d/20-window.conf", "[Detector]\nWindow=400\n");
        memset(&reports, 0, sizeof(reports));
        ASSERT_OK(config_load(main_conf, true, collect, &reports, &c));
        ASSERT_EQ(c->min_samples, 400);
        c = config_free(c);

        /* Resetting MinSamples in a drop-in means "same as Window" again. */
        test_write_file("ms.conf.d/20-window.conf", "[Detector]\nMinSamples=\n");
        ASSERT_OK(config_load(main_conf, true, collect, &reports, &c));
        ASSERT_EQ(c->min_samples, 300);
}

static void test_failed_load_keeps_ret(void) {
        _cleanup_free_ char *good = NULL, *bad = NULL;
        Config *c = NULL, *running;
        Reports reports = {};

        good = strdup(test_write_file("reload.conf", "[Detector]\nWindow=42\n"));
        ASSERT_TRUE(good);
        ASSERT_OK(config_load(good, true, collect, &reports, &c));
        running = c;

        /* The reload: a broken file is reported, and the caller's pointer is not touched. */
        bad = strdup(test_write_file("reload-bad.conf", "[Detector]\nWindow=43\nThreshold=-1\n"));
        ASSERT_TRUE(bad);
        ASSERT_ERROR(config_load(bad, true, collect, &reports, &c), EINVAL);
        ASSERT_TRUE(c == running);
        ASSERT_EQ(c->window, 42);
        config_free(c);
}

/* Every "#Key=default" line of the shipped file, uncommented, must give the built-in defaults. */
static void test_shipped_config(void) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *text = NULL;
        char path[PATH_MAX], line[512];
        const char *srcdir = getenv("SOURCE_DIR");
        size_t size = 0;
        unsigned keys = 0;
        Reports reports;

        if (!srcdir) {
                fprintf(stderr, "  SOURCE_DIR not set, skipping the shipped config check\n");
                return;
        }
        snprintf(path, sizeof(path), "%s/../units/blegate.conf", srcdir);
        f = fopen(path, "re");
        ASSERT_TRUE(f);

        {
                _cleanup_fclose_ FILE *out = open_memstream(&text, &size);

                ASSERT_TRUE(out);
                while (fgets(line, sizeof(line), f)) {
                        bool key = line[0] == '#' && line[1] >= 'A' && line[1] <= 'Z' && strchr(line, '=');

                        keys += key;
                        fputs(key ? line + 1 : line, out);
                }
        }
        ASSERT_EQ(keys, 19); /* every key of the table in config.c */
        ASSERT_OK(parse_text(text, &c, &reports));
        ASSERT_OK(config_new(&d));
        assert_defaults(c, 0);
        assert_defaults(d, 0);
}

int main(void) {
        test_defaults();
        test_good_file();
        test_bad_values();
        test_sizes();
        test_unknown_and_syntax();
        test_long_line();
        test_empty_value_resets();
        test_ble();
        test_dropins();
        test_missing_main();
        test_min_samples_across_files();
        test_failed_load_keeps_ret();
        test_shipped_config();
        return EXIT_SUCCESS;
}
