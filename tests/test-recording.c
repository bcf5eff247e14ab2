/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The recording reader as a user of "blegatectl analyze" or the replay source meets it: which
 * files and cells become which readings, and what is said, and where, about the lines that do
 * not, while the lines after them still come through.
 */

#include <fcntl.h>
#include <sys/wait.h>

#include "recording.h"
#include "tests.h"

static Recording *open_text(const char *text) {
        _cleanup_free_ char *error = NULL;
        Recording *r = NULL;
        int k;

        k = recording_open(test_write_file("recording.csv", text), &r, &error);
        if (k < 0)
                TEST_FAIL("recording_open(): %s: %s", strerror(-k), strempty(error));
        return r;
}

static void assert_next(Recording *r, Reading *reading, unsigned line) {
        int k = recording_next(r, reading);

        if (k != 1)
                TEST_FAIL("line %u: recording_next() = %d, %s", recording_line(r), k, recording_error(r));
        ASSERT_EQ(recording_line(r), line);
        ASSERT_U64_EQ(reading->seq, line);
        ASSERT_STREQ(recording_error(r), "");
}

static void assert_bad(Recording *r, unsigned line, const char *why) {
        Reading reading;

        ASSERT_ERROR(recording_next(r, &reading), EBADMSG);
        ASSERT_EQ(recording_line(r), line);
        ASSERT_STREQ(recording_error(r), why);
        ASSERT_STREQ(recording_timestamp(r), "");
}

static void assert_end(Recording *r) {
        Reading reading;

        ASSERT_EQ(recording_next(r, &reading), 0);
        ASSERT_EQ(recording_next(r, &reading), 0);
}

static void assert_header_error(const char *text, const char *why) {
        _cleanup_free_ char *error = NULL;
        Recording *r = NULL;

        ASSERT_ERROR(recording_open(test_write_file("header.csv", text), &r, &error), EBADMSG);
        ASSERT_TRUE(!r);
        ASSERT_STREQ(error, why);

        /* The explanation is optional. */
        ASSERT_ERROR(recording_open(test_write_file("header.csv", text), &r, NULL), EBADMSG);
}

/* The time of the one reading in a file with the given timestamp cell. */
static uint64_t time_of(const char *cell) {
        _cleanup_(recording_freep) Recording *r = NULL;
        char text[256];
        Reading reading;

        snprintf(text, sizeof(text), "timestamp\n%s\n", cell);
        r = open_text(text);
        assert_next(r, &reading, 2);
        ASSERT_STREQ(recording_timestamp(r), cell);
        assert_end(r);
        return reading.time_usec;
}

/* Why the one timestamp cell in a file is rejected. */
static void assert_bad_time(const char *cell, const char *why) {
        _cleanup_(recording_freep) Recording *r = NULL;
        char text[256], expected[256];

        snprintf(text, sizeof(text), "timestamp\n%s\n", cell);
        snprintf(expected, sizeof(expected), "column 'timestamp': %s: '%s'", why, cell);
        r = open_text(text);
        assert_bad(r, 2, expected);
        assert_end(r);
}

static void test_epoch_msec(void) {
        ASSERT_U64_EQ(time_of("1515542400000"), UINT64_C(1515542400000000));
        ASSERT_U64_EQ(time_of("1515585600123"), UINT64_C(1515585600123000));
        ASSERT_U64_EQ(time_of("1515585600123.5"), UINT64_C(1515585600123500));
        /* Kept to microseconds: the rest is cut off, not rounded. */
        ASSERT_U64_EQ(time_of("1515585600123.456789"), UINT64_C(1515585600123456));
        ASSERT_U64_EQ(time_of("1515585600123.999999999"), UINT64_C(1515585600123999));
        ASSERT_U64_EQ(time_of("0"), 0);
        ASSERT_U64_EQ(time_of("0000000000000000000000042"), 42000);
        ASSERT_U64_EQ(time_of("253402300799999.999"), UINT64_C(253402300799999999));

        assert_bad_time("-1", "not a timestamp");
        assert_bad_time("+1515542400000", "not a timestamp");
        assert_bad_time("1515542400000.", "not a timestamp");
        assert_bad_time(".5", "not a timestamp");
        assert_bad_time("1.5e12", "not a timestamp");
        assert_bad_time("1515542400000.1234567890", "not a timestamp");
        assert_bad_time("1515542400000 ", "not a timestamp");
        assert_bad_time("15155424OOOOO", "not a timestamp");
        /* 10000-01-01T00:00:00Z and beyond, up to what no integer holds. */
        assert_bad_time("253402300800000", "out of range");
        assert_bad_time("99999999999999999999999999999", "out of range");
}

static void test_iso8601(void) {
        ASSERT_U64_EQ(time_of("2018-01-10T00:00:00Z"), UINT64_C(1515542400) * 1000000);
        ASSERT_U64_EQ(time_of("2018-01-10 00:00:00Z"), UINT64_C(1515542400) * 1000000);
        ASSERT_U64_EQ(time_of("2018-01-10T00:00:00+00:00"), UINT64_C(1515542400) * 1000000);
        ASSERT_U64_EQ(time_of("2018-01-10T00:00:00.5Z"), UINT64_C(1515542400500000));
        ASSERT_U64_EQ(time_of("2018-01-10T00:00:00.123456789Z"), UINT64_C(1515542400123456));
        ASSERT_U64_EQ(time_of("2018-01-10 00:00:00.000001+00:00"), UINT64_C(1515542400000001));
        ASSERT_U64_EQ(time_of("1970-01-01T00:00:00Z"), 0);
        ASSERT_U64_EQ(time_of("1972-02-29T00:00:00Z"), UINT64_C(68169600) * 1000000);
        ASSERT_U64_EQ(time_of("2000-02-29T12:00:00Z"), UINT64_C(951825600) * 1000000);
        ASSERT_U64_EQ(time_of("2000-03-01T00:00:00Z"), UINT64_C(951868800) * 1000000);
        ASSERT_U64_EQ(time_of("2016-12-31T23:59:59Z"), UINT64_C(1483228799) * 1000000);
        ASSERT_U64_EQ(time_of("2024-03-01T00:00:00Z"), UINT64_C(1709251200) * 1000000);
        ASSERT_U64_EQ(time_of("2100-03-01T00:00:00Z"), UINT64_C(4107542400) * 1000000);
        ASSERT_U64_EQ(time_of("9999-12-31T23:59:59.999999Z"), UINT64_C(253402300799999999));

        assert_bad_time("2018-01-10T00:00:00", "not a timestamp");
        assert_bad_time("2018-01-10T00:00Z", "not a timestamp");
        assert_bad_time("2018-01-10", "not a timestamp");
        assert_bad_time("2018-01-10t00:00:00z", "not a timestamp");
        assert_bad_time("2018-01-10T00:00:00.Z", "not a timestamp");
        assert_bad_time("2018-01-10T00:00:00.1234567890Z", "not a timestamp");
        assert_bad_time("2018-01-10T00:00:00Z ", "not a timestamp");
        assert_bad_time("2018-1-10T00:00:00Z", "not a timestamp");
        assert_bad_time("2018-01-10T00:00:00+0000", "not a timestamp");
        assert_bad_time("2018-01-10T00:00:00+01:00", "not UTC");
        assert_bad_time("2018-01-10T00:00:00-00:00", "not UTC");
        assert_bad_time("1969-12-31T23:59:59Z", "out of range");
        assert_bad_time("0000-01-01T00:00:00Z", "out of range");
        assert_bad_time("2018-00-10T00:00:00Z", "out of range");
        assert_bad_time("2018-13-10T00:00:00Z", "out of range");
        assert_bad_time("2018-01-00T00:00:00Z", "out of range");
        assert_bad_time("2018-04-31T00:00:00Z", "out of range");
        assert_bad_time("2001-02-29T00:00:00Z", "out of range");
        assert_bad_time("2100-02-29T00:00:00Z", "out of range");
        assert_bad_time("2018-01-10T24:00:00Z", "out of range");
        assert_bad_time("2018-01-10T00:60:00Z", "out of range");
        assert_bad_time("2018-01-10T00:00:60Z", "out of range");
}

static void test_readings(void) {
        _cleanup_(recording_freep) Recording *r = NULL;
        Reading reading;

        r = open_text("timestamp,deviceId,deviceType,ax,ay,az,gx,gy,gz\n"
                      "1515542400000,phone-1,iphone,0.5,-9.80665,1e-3,+2,.25,-0\n"
                      "2018-01-10T00:00:01Z,tag.2,,1,,3,,,\n"
                      "1515542402000,phone-1,iphone,,,,,,\n");
        ASSERT_STREQ(recording_name(r), test_write_file("recording.csv", ""));
        ASSERT_EQ(recording_line(r), 1);
        ASSERT_EQ(recording_channels(r), CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY) | CHANNEL_BIT(CHANNEL_AZ) |
                  CHANNEL_BIT(CHANNEL_GX) | CHANNEL_BIT(CHANNEL_GY) | CHANNEL_BIT(CHANNEL_GZ));
        ASSERT_TRUE(recording_has_device_id(r));
        ASSERT_TRUE(recording_has_device_type(r));

        assert_next(r, &reading, 2);
        ASSERT_STREQ(reading.device, "phone-1");
        ASSERT_STREQ(reading.type, "iphone");
        ASSERT_U64_EQ(reading.time_usec, UINT64_C(1515542400000000));
        ASSERT_EQ(reading.channels, recording_channels(r));
        ASSERT_TRUE(reading.values[CHANNEL_AX] == 0.5);
        ASSERT_TRUE(reading.values[CHANNEL_AY] == -9.80665);
        ASSERT_TRUE(reading.values[CHANNEL_AZ] == 0.001);
        ASSERT_TRUE(reading.values[CHANNEL_GX] == 2);
        ASSERT_TRUE(reading.values[CHANNEL_GY] == 0.25);
        ASSERT_TRUE(reading.values[CHANNEL_GZ] == 0 && signbit(reading.values[CHANNEL_GZ]));
        ASSERT_STREQ(recording_timestamp(r), "1515542400000");

        /* Missing values are absent from the mask; an empty type means the default. */
        assert_next(r, &reading, 3);
        ASSERT_STREQ(reading.device, "tag.2");
        ASSERT_STREQ(reading.type, "replay");
        ASSERT_EQ(reading.channels, CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AZ));
        ASSERT_TRUE(reading.values[CHANNEL_AX] == 1);
        ASSERT_TRUE(reading.values[CHANNEL_AZ] == 3);
        ASSERT_STREQ(recording_timestamp(r), "2018-01-10T00:00:01Z");

        /* No value at all is still a reading: it says the device was there. */
        assert_next(r, &reading, 4);
        ASSERT_STREQ(reading.device, "phone-1");
        ASSERT_EQ(reading.channels, 0);

        assert_end(r);
        ASSERT_EQ(recording_line(r), 4);
}

static void test_malformed_lines(void) {
        _cleanup_(recording_freep) Recording *r = NULL;
        Reading reading;

        r = open_text("timestamp,deviceId,deviceType,ax,oa\n"
                      "1000,a,t,1,2\n"
                      "1000,a,t,1\n"
                      "1000,a,t,1,2,3\n"
                      "1000,a,t,abc,2\n"
                      "1000,a,t,nan,2\n"
                      "1000,a,t,1,inf\n"
                      "1000,a,t,1e999,2\n"
                      "1000,a,t,1.2.3,2\n"
                      "1000,a,t, 1,2\n"
                      "1000,a,t,1 ,2\n"
                      "1000,a,t,0x10,2\n"
                      "1000,a,t,-,2\n"
                      "1000,a b,t,1,2\n"
                      "1000,,t,1,2\n"
                      "1000,a,t/1,1,2\n"
                      "1000,0123456789012345678901234567890123456,t,1,2\n"
                      "yesterday,a,t,1,2\n"
                      "1000,a,t,\"1\"2\",2\n"
                      "1000,a,t,\x01\xff\\,2\n"
                      "1000,a,t,1234567890123456789012345678901234567890x,2\n"
                      "2000,a,t,1,2\n");

        assert_next(r, &reading, 2);
        assert_bad(r, 3, "4 cells, but the header has 5");
        assert_bad(r, 4, "6 cells, but the header has 5");
        assert_bad(r, 5, "column 'ax': not a number: 'abc'");
        assert_bad(r, 6, "column 'ax': not a number: 'nan'");
        assert_bad(r, 7, "column 'oa': not a number: 'inf'");
        assert_bad(r, 8, "column 'ax': out of range: '1e999'");
        assert_bad(r, 9, "column 'ax': not a number: '1.2.3'");
        assert_bad(r, 10, "column 'ax': not a number: ' 1'");
        assert_bad(r, 11, "column 'ax': not a number: '1 '");
        assert_bad(r, 12, "column 'ax': not a number: '0x10'");
        assert_bad(r, 13, "column 'ax': not a number: '-'");
        assert_bad(r, 14, "column 'deviceId': not a valid device id: 'a b'");
        assert_bad(r, 15, "column 'deviceId': not a valid device id: ''");
        assert_bad(r, 16, "column 'deviceType': not a valid device type: 't/1'");
        assert_bad(r, 17, "column 'deviceId': not a valid device id: '0123456789012345678901234567890123456'");
        assert_bad(r, 18, "column 'timestamp': not a timestamp: 'yesterday'");
        assert_bad(r, 19, "column 'ax': not a number: '1\"2'");
        /* Bytes from the file are escaped and cut short in messages. */
        assert_bad(r, 20, "column 'ax': not a number: '\\x01\\xff\\x5c'");
        assert_bad(r, 21, "column 'ax': not a number: '1234567890123456789012345678901234567890...'");

        assert_next(r, &reading, 22);
        ASSERT_U64_EQ(reading.time_usec, 2000000);
        ASSERT_STREQ(recording_timestamp(r), "2000");
        assert_end(r);
}

static void test_bad_headers(void) {
        _cleanup_free_ char *long_header = NULL;

        assert_header_error("", "no header line");
        assert_header_error("\n\r\n\n", "no header line");
        assert_header_error("\xEF\xBB\xBF", "no header line");
        assert_header_error("deviceId,ax\n1,2\n", "no 'timestamp' column");
        assert_header_error("Timestamp,ax\n", "no 'timestamp' column");
        assert_header_error("time stamp,ax\n", "no 'timestamp' column");
        assert_header_error("timestamp,ax,ay,ax\n", "duplicate column 'ax'");
        assert_header_error("timestamp,ax,\"timestamp\"\n", "duplicate column 'timestamp'");
        assert_header_error("deviceId,timestamp,deviceId\n", "duplicate column 'deviceId'");
        assert_header_error("deviceType,timestamp,deviceType", "duplicate column 'deviceType'");

        long_header = malloc(RECORDING_LINE_MAX + 32);
        ASSERT_TRUE(long_header);
        memset(long_header, 'x', RECORDING_LINE_MAX + 30);
        memcpy(long_header, "timestamp,", 10);
        strcpy(long_header + RECORDING_LINE_MAX + 10, "\n");
        assert_header_error(long_header, "header line longer than 65536 bytes");
}

static void test_open_errors(void) {
        char *error = (char *) "untouched";
        Recording *r = NULL;

        ASSERT_ERROR(recording_open("/nonexistent/recording.csv", &r, &error), ENOENT);
        ASSERT_TRUE(!error);
        ASSERT_ERROR(recording_open(test_tmpdir(), &r, &error), EISDIR);
        ASSERT_TRUE(!error);
        ASSERT_TRUE(!r);
        ASSERT_TRUE(!recording_free(NULL));
}

static void test_line_endings(void) {
        _cleanup_(recording_freep) Recording *r = NULL;
        Reading reading;

        /* CRLF, blank lines (which keep their line numbers), no "\n" after the last line. */
        r = open_text("\r\n"
                      "timestamp,ax\r\n"
                      "1000,1\r\n"
                      "\r\n"
                      "\n"
                      "2000,\r\n"
                      "3000,x\r\n"
                      "4000,4\n"
                      "5000,5");
        ASSERT_EQ(recording_line(r), 2);
        assert_next(r, &reading, 3);
        ASSERT_TRUE(reading.values[CHANNEL_AX] == 1);
        assert_next(r, &reading, 6);
        ASSERT_EQ(reading.channels, 0);
        assert_bad(r, 7, "column 'ax': not a number: 'x'");
        assert_next(r, &reading, 8);
        assert_next(r, &reading, 9);
        ASSERT_TRUE(reading.values[CHANNEL_AX] == 5);
        ASSERT_STREQ(recording_timestamp(r), "5000");
        assert_end(r);
        r = recording_free(r);

        /* A last line without "\n" that ends in "\r" all the same. */
        r = open_text("timestamp\r\n1000\r");
        assert_next(r, &reading, 2);
        ASSERT_STREQ(recording_timestamp(r), "1000");
        assert_end(r);
        r = recording_free(r);

        /* A lone "\r" inside a line is not a line end. */
        r = open_text("timestamp,ax\n1000,1\r2\n");
        assert_bad(r, 2, "column 'ax': not a number: '1\\x0d2'");
        assert_end(r);
        r = recording_free(r);

        /* A header alone is an empty recording. */
        r = open_text("timestamp,ax");
        assert_end(r);
        ASSERT_EQ(recording_line(r), 1);
}

static void test_bom(void) {
        _cleanup_(recording_freep) Recording *r = NULL;
        Reading reading;

        r = open_text("\xEF\xBB\xBFtimestamp,ax\n1000,1\n");
        assert_next(r, &reading, 2);
        ASSERT_EQ(reading.channels, CHANNEL_BIT(CHANNEL_AX));
        assert_end(r);
        r = recording_free(r);

        /* Only at the very start: elsewhere it is part of a cell. */
        r = open_text("\xEF\xBB\xBFtimestamp,ax\n\xEF\xBB\xBF" "1000,1\n");
        assert_bad(r, 2, "column 'timestamp': not a timestamp: '\\xef\\xbb\\xbf1000'");
        assert_end(r);
        r = recording_free(r);

        assert_header_error("\xEF\xBB\xBF\xEF\xBB\xBFtimestamp\n", "no 'timestamp' column");
}

static void test_quotes(void) {
        _cleanup_(recording_freep) Recording *r = NULL;
        Reading reading;

        r = open_text("\"timestamp\",\"deviceId\",\"eventType\",\"ax\",ay\n"
                      "\"2018-01-10T00:00:00.25Z\",\"d1\",\"accel\",\"1.5\",\"\"\n"
                      "1000,d1,\"\",\"\"\"\",2\n"
                      "\"1000,d1,x,1,2\n"
                      "\"\",d1,x,1,2\n");
        ASSERT_EQ(recording_channels(r), CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY));

        assert_next(r, &reading, 2);
        ASSERT_STREQ(recording_timestamp(r), "2018-01-10T00:00:00.25Z");
        ASSERT_U64_EQ(reading.time_usec, UINT64_C(1515542400250000));
        ASSERT_STREQ(reading.device, "d1");
        ASSERT_EQ(reading.channels, CHANNEL_BIT(CHANNEL_AX));
        ASSERT_TRUE(reading.values[CHANNEL_AX] == 1.5);

        assert_bad(r, 3, "column 'ax': not a number: '\"\"'");
        assert_bad(r, 4, "column 'timestamp': not a timestamp: '\"1000'");
        assert_bad(r, 5, "column 'timestamp': not a timestamp: ''");
        assert_end(r);
}

static void test_defaults_and_ignored_columns(void) {
        _cleanup_(recording_freep) Recording *r = NULL;
        Reading reading;

        /* The seed's historian export has columns we do not use; their cells may hold anything. */
        r = open_text("eventType,ax_,,timestamp,format,AX,ax\n"
                      "accel,?,\x01,1515542400000,json,\"what ever\",7\n");
        ASSERT_EQ(recording_channels(r), CHANNEL_BIT(CHANNEL_AX));
        ASSERT_FALSE(recording_has_device_id(r));
        ASSERT_FALSE(recording_has_device_type(r));

        assert_next(r, &reading, 2);
        ASSERT_STREQ(reading.device, RECORDING_DEVICE_DEFAULT);
        ASSERT_STREQ(reading.type, RECORDING_DEVICE_DEFAULT);
        ASSERT_EQ(reading.channels, CHANNEL_BIT(CHANNEL_AX));
        ASSERT_TRUE(reading.values[CHANNEL_AX] == 7);
        assert_end(r);
}

static void test_all_channels(void) {
        _cleanup_(recording_freep) Recording *r = NULL;
        Reading reading;

        r = open_text("og,ob,oa,mz,my,mx,gz,gy,gx,az,ay,ax,timestamp\n"
                      "12,11,10,9,8,7,6,5,4,3,2,1,1\n");
        ASSERT_EQ(recording_channels(r), CHANNELS_ALL);
        assert_next(r, &reading, 2);
        ASSERT_EQ(reading.channels, CHANNELS_ALL);
        for (Channel c = 0; c < _CHANNEL_MAX; c++)
                ASSERT_TRUE(reading.values[c] == c + 1);
}

/* Every value is the double strtod() makes of the cell in the C locale, to the last bit. */
static void test_numbers_exact(void) {
        static const char *const cells[] = {
                "0", "-0", "+0", "0.0", "-0.000", ".5", "5.", "+.5", "-9.80665", "0.1", "0.3", "4.35", "1e-3",
                "1E3", "1e+22", "1e22", "1e23", "1e-22", "1e-23", "123456.789e-2", "0.000000000000000000000001",
                "9007199254740992", "9007199254740993", "18446744073709551615", "18446744073709551616",
                "1234567890123456789", "12345678901234567890", "0.1234567890123456789", "3.141592653589793238462643",
                "2.2250738585072014e-308", "4.9e-324", "1e-400", "1.7976931348623157e308", "000000000000000000000012.5",
                "12.50000000000000000000000000", "1e0000", "1e00001",
        };
        _cleanup_(recording_freep) Recording *r = NULL;
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        Reading reading;
        FILE *f;

        f = open_memstream(&text, &size);
        ASSERT_TRUE(f);
        fputs("timestamp,gx\n", f);
        for (size_t i = 0; i < ELEMENTSOF(cells); i++)
                fprintf(f, "1000,%s\n", cells[i]);
        ASSERT_EQ(fclose(f), 0);

        r = open_text(text);
        for (size_t i = 0; i < ELEMENTSOF(cells); i++) {
                double expected = strtod(cells[i], NULL);

                assert_next(r, &reading, i + 2);
                if (memcmp(&reading.values[CHANNEL_GX], &expected, sizeof(double)) != 0)
                        TEST_FAIL("'%s' read as %.17g, not %.17g", cells[i], reading.values[CHANNEL_GX], expected);
        }
        assert_end(r);
}

/* A line of exactly n bytes (without "\n"), ax = 1, padded in an ignored column. */
static char *long_line(size_t n) {
        char *s = malloc(n + 1);

        ASSERT_TRUE(s && n >= 16);
        memset(s, 'p', n);
        memcpy(s, "1000,1,", 7);
        s[n] = '\0';
        return s;
}

static void test_long_lines(void) {
        _cleanup_(recording_freep) Recording *r = NULL;
        _cleanup_free_ char *max = long_line(RECORDING_LINE_MAX), *over = long_line(RECORDING_LINE_MAX + 1),
                            *huge = long_line(1000 * 1000), *text = NULL;
        Reading reading;

        ASSERT_TRUE(asprintf(&text, "timestamp,ax,pad\n%s\n%s\r\n2000,2,\n%s\r\n%s\n3000,3,\n%s", max, max, over, huge,
                             huge) > 0);
        r = open_text(text);

        assert_next(r, &reading, 2);
        ASSERT_TRUE(reading.values[CHANNEL_AX] == 1);
        assert_next(r, &reading, 3);
        assert_next(r, &reading, 4);
        ASSERT_TRUE(reading.values[CHANNEL_AX] == 2);
        assert_bad(r, 5, "line longer than 65536 bytes");
        assert_bad(r, 6, "line longer than 65536 bytes");
        assert_next(r, &reading, 7);
        ASSERT_TRUE(reading.values[CHANNEL_AX] == 3);
        ASSERT_STREQ(recording_timestamp(r), "3000");
        /* Too long and without "\n" at the end of the file. */
        assert_bad(r, 8, "line longer than 65536 bytes");
        assert_end(r);
        ASSERT_EQ(recording_line(r), 8);
}

/* Many lines, so that lines straddle the reader's buffer boundaries. */
static void test_many_lines(void) {
        _cleanup_(recording_freep) Recording *r = NULL;
        _cleanup_free_ char *text = NULL;
        size_t size = 0, n = 100000;
        Reading reading;
        FILE *f;

        f = open_memstream(&text, &size);
        ASSERT_TRUE(f);
        fputs("timestamp,deviceId,ax,ay\n", f);
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%zu,dev%zu,%zu.5,%s\n", 1515542400000 + i, i % 7, i, i % 1000 == 999 ? "bad" : "-1");
        ASSERT_EQ(fclose(f), 0);

        r = open_text(text);
        for (size_t i = 0; i < n; i++) {
                if (i % 1000 == 999) {
                        assert_bad(r, i + 2, "column 'ay': not a number: 'bad'");
                        continue;
                }
                assert_next(r, &reading, i + 2);
                ASSERT_U64_EQ(reading.time_usec, (UINT64_C(1515542400000) + i) * 1000);
                ASSERT_EQ(reading.device[3] - '0', i % 7);
                ASSERT_TRUE(reading.values[CHANNEL_AX] == i + 0.5);
                ASSERT_TRUE(reading.values[CHANNEL_AY] == -1);
        }
        assert_end(r);
}

/* Through a pipe, written in small pieces, so reads return partial lines and a partial BOM. */
static void test_pipe(void) {
        _cleanup_(recording_freep) Recording *r = NULL;
        _cleanup_free_ char *huge = long_line(200000), *text = NULL, *error = NULL;
        Reading reading;
        int fds[2], status;
        pid_t pid;

        ASSERT_TRUE(asprintf(&text, "\xEF\xBB\xBFtimestamp,ax,pad\r\n1000,1,x\r\n%s\r\n2000,2,y\r\n3000,z,\r\n4000,4,",
                             huge) > 0);
        ASSERT_OK(pipe2(fds, O_CLOEXEC));
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                size_t len = strlen(text);

                close(fds[0]);
                for (size_t i = 0; i < len;) {
                        size_t chunk = MIN(len - i, i < 64 ? 1 : 1000);
                        ssize_t n = write(fds[1], text + i, chunk);

                        if (n <= 0)
                                _exit(EXIT_FAILURE);
                        i += n;
                }
                _exit(EXIT_SUCCESS);
        }
        close(fds[1]);

        ASSERT_OK(recording_open_fd(fds[0], "pipe", &r, &error));
        ASSERT_STREQ(recording_name(r), "pipe");
        assert_next(r, &reading, 2);
        ASSERT_TRUE(reading.values[CHANNEL_AX] == 1);
        assert_bad(r, 3, "line longer than 65536 bytes");
        assert_next(r, &reading, 4);
        ASSERT_TRUE(reading.values[CHANNEL_AX] == 2);
        assert_bad(r, 5, "column 'ax': not a number: 'z'");
        assert_next(r, &reading, 6);
        ASSERT_TRUE(reading.values[CHANNEL_AX] == 4);
        assert_end(r);

        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_stdin(void) {
        _cleanup_(recording_freep) Recording *r = NULL;
        _cleanup_close_ int saved = -EBADF, fd = -EBADF;
        Reading reading;

        fd = open(test_write_file("stdin.csv", "timestamp,ax\n1000,1\n"), O_RDONLY | O_CLOEXEC);
        ASSERT_OK(fd);
        saved = ASSERT_OK(fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3));
        ASSERT_OK(dup2(fd, STDIN_FILENO));

        ASSERT_OK(recording_open("-", &r, NULL));
        ASSERT_STREQ(recording_name(r), "<stdin>");
        assert_next(r, &reading, 2);
        assert_end(r);
        r = recording_free(r);

        /* Freeing the recording left the process's stdin open. */
        ASSERT_OK(fcntl(STDIN_FILENO, F_GETFD));
        ASSERT_OK(dup2(saved, STDIN_FILENO));
}

static void test_select_channels(void) {
        _cleanup_(recording_freep) Recording *r = open_text("timestamp,ax,gz,ob\n"
                                                            "1,1.5,abc,2\n"
                                                            "2,,7,x\n");
        Reading reading;

        ASSERT_EQ(recording_channels(r), CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_GZ) | CHANNEL_BIT(CHANNEL_OB));
        recording_select_channels(r, CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY));
        ASSERT_EQ(recording_channels(r), CHANNEL_BIT(CHANNEL_AX));

        /* The bad cells are in columns no longer read: both lines are readings. */
        assert_next(r, &reading, 2);
        ASSERT_EQ(reading.channels, CHANNEL_BIT(CHANNEL_AX));
        ASSERT_TRUE(reading.values[CHANNEL_AX] == 1.5);
        assert_next(r, &reading, 3);
        ASSERT_EQ(reading.channels, 0);
        assert_end(r);
}

int main(void) {
        test_epoch_msec();
        test_iso8601();
        test_readings();
        test_malformed_lines();
        test_bad_headers();
        test_open_errors();
        test_line_endings();
        test_bom();
        test_quotes();
        test_defaults_and_ignored_columns();
        test_all_channels();
        test_numbers_exact();
        test_long_lines();
        test_many_lines();
        test_pipe();
        test_stdin();
        test_select_channels();
        return EXIT_SUCCESS;
}
