#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""blegatectl decode as a user runs it: Ruuvi's official vectors (formats 5 and 3) give exactly
the documented values, derived SensorTag, Thingy:52 and phone values likewise, one JSON object
per reading with the channels in reading.h order and null for what the sensor marks
unavailable; the hex may be written in the usual ways; bad hex, wrong lengths and unknown
profiles fail with a message saying what was expected."""

import json
import os
import struct
import subprocess

import harness
from harness import TestCase

G = 9.80665
DOCS = os.path.join(os.environ.get("SOURCE_DIR", os.path.dirname(__file__)), "..", "..", "docs")


def decode(*args):
    p = subprocess.run([harness.BLEGATECTL, "decode", *args], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def mg(v):
    return v * G / 1000


def ruuvi5(ax, ay, az, temperature, humidity, pressure, battery, tx_power, movement, sequence, mac):
    return {"ax": ax, "ay": ay, "az": az, "data_format": 5, "temperature": temperature, "humidity": humidity,
            "pressure": pressure, "battery": battery, "tx_power": tx_power, "movement_counter": movement,
            "measurement_sequence": sequence, "mac": mac}


def ruuvi3(ax, ay, az, temperature, humidity, pressure, battery):
    return {"ax": ax, "ay": ay, "az": az, "data_format": 3, "temperature": temperature, "humidity": humidity,
            "pressure": pressure, "battery": battery}


RUUVI = [
    # Official vectors (docs.ruuvi.com), formats 5 and 3.
    ("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F",
     ruuvi5(mg(4), mg(-4), mg(1036), 24.3, 53.49, 100044, 2977, 4, 66, 205, "cbb8334c884f")),
    ("057FFFFFFEFFFE7FFF7FFF7FFFFFDEFEFFFECBB8334C884F",
     ruuvi5(mg(32767), mg(32767), mg(32767), 163.835, 163.835, 115534, 3646, 20, 254, 65534, "cbb8334c884f")),
    ("058001000000008001800180010000000000CBB8334C884F",
     ruuvi5(mg(-32767), mg(-32767), mg(-32767), -163.835, 0, 50000, 1600, -40, 0, 0, "cbb8334c884f")),
    ("058000FFFFFFFF800080008000FFFFFFFFFFFFFFFFFFFFFF",
     ruuvi5(None, None, None, None, None, None, None, None, None, None, None)),
    ("03291A1ECE1EFC18F94202CA0B53", ruuvi3(mg(-1000), mg(-1726), mg(714), 26.3, 20.5, 102766, 2899)),
    ("03FF7F63FFFF7FFF7FFF7FFFFFFF", ruuvi3(mg(32767), mg(32767), mg(32767), 127.99, 127.5, 115535, 65535)),
    ("0300FF6300008001800180010000", ruuvi3(mg(-32767), mg(-32767), mg(-32767), -127.99, 0, 50000, 0)),
    # The example of Ruuvi's documentation, derived.
    ("050F274035C454005000C8FC20A456F030E5C9445429E38D",
     ruuvi5(mg(80), mg(200), mg(-992), 19.395, 41.0925, 100260, 2914, 4, 240, 12517, "c9445429e38d")),
]

PHONE_EXAMPLE = ("010F0201 00401E18240A0600 "
                 "0000 0C00FBFF1400 0F00FDFF0000 4F468FFDCB08 "
                 "6400 0F00FCFF1200 1500FCFF0100 010091FDCA08")


class Vectors(TestCase):
    def check(self, args, expected):
        code, out, err = decode(*args)
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), len(expected), out)
        for line, want in zip(lines, expected):
            got = json.loads(line)
            # Exact: the same double, and the keys in order (channels as reading.h, then fields).
            self.assertEqual(list(got), list(want), line)
            for key in want:
                self.assertEqual(got[key], want[key], f"{key} in {line}")
                self.assertEqual(type(got[key]) is str, type(want[key]) is str, key)

    def test_ruuvi_official_vectors(self):
        for hex_value, want in RUUVI:
            with self.subTest(hex_value):
                self.check(["ruuvi", hex_value], [want])

    def test_ruuvi_numbers_print_as_documented(self):
        code, out, err = decode("ruuvi", RUUVI[0][0])
        self.assertEqual(code, 0, err)
        for text in ('"temperature":24.3,', '"humidity":53.49,', '"pressure":100044,', '"mac":"cbb8334c884f"'):
            self.assertIn(text, out)
        code, out, err = decode("ruuvi", RUUVI[3][0])
        self.assertEqual(out.count("null"), 11, out)

    def test_ruuvi_formats_without_motion_are_skipped(self):
        for hex_value in ("06170C5668C79E007000C90501D9FFCD004C884F", "C512FC5394C37CAC364200CDCBB8334C884F",
                          "E1" + "00" * 39, "08" + "00" * 20):
            code, out, err = decode("ruuvi", hex_value)
            self.assertEqual(code, 0, err)
            self.assertEqual(out, "")
            self.assertIn("carries no motion data", err)

    def test_sensortag_ranges(self):
        raw = (131, -32768, 32767, 4096, -16, 32767, 304, -4900, 4900)
        data = struct.pack("<9h", *raw).hex()
        for r in (2, 4, 8, 16):
            want = {"ax": raw[3] * r / 32768 * G, "ay": raw[4] * r / 32768 * G, "az": raw[5] * r / 32768 * G,
                    "gx": raw[0] * 500 / 65536, "gy": raw[1] * 500 / 65536, "gz": raw[2] * 500 / 65536,
                    "mx": raw[6], "my": raw[7], "mz": raw[8]}
            want = {k: want[k] for k in ("ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz")}
            with self.subTest(range=r):
                self.check(["sensortag", "--range", str(r), data], [want])
        # 4096 at ±4 G is half a g; the default range is the ±8 G blegated configures.
        self.assertEqual(json.loads(decode("sensortag", "--range=4", data)[1])["ax"], 0.5 * G)
        self.assertEqual(json.loads(decode("sensortag", data)[1])["ax"], 1.0 * G)

    def test_thingy52(self):
        self.check(["thingy52-raw", "00 04 00 FC 00 02 20 00 E0 FF FF 7F 10 00 00 80 08 00"],
                   [{"ax": G, "ay": -G, "az": 0.5 * G, "gx": 1, "gy": -1, "gz": 1023.96875,
                     "mx": 1, "my": -2048, "mz": 0.5}])
        # roll 1.5°, pitch -1°, yaw -179.5°: yaw -> oa, roll -> ob, pitch -> og.
        self.check(["thingy52-euler", "00800100 0000FFFF 00804CFF"], [{"oa": -179.5, "ob": 1.5, "og": -1}])
        # The characteristic's UUID names the stream too, in any case.
        self.check(["EF680407-9B35-4933-9B10-52FFA9740042", "00800100 0000FFFF 00804CFF"],
                   [{"oa": -179.5, "ob": 1.5, "og": -1}])

    def test_phone_document_example(self):
        with open(os.path.join(DOCS, "phone-profile.md")) as f:
            self.assertIn(PHONE_EXAMPLE, f.read(), "the example of docs/phone-profile.md changed")
        common = {"sequence": 258, "time_usec": 1700000000000000, "linear_acceleration": 1}
        first = {"ax": 0.12, "ay": -0.05, "az": 0.2, "gx": 1.5, "gy": -0.3, "gz": 0, "oa": 359.98, "ob": -12.5,
                 "og": 45.02, **common}
        second = {"ax": 0.15, "ay": -0.04, "az": 0.18, "gx": 2.1, "gy": -0.4, "gz": 0.1, "oa": 0.02,
                  "ob": -12.46, "og": 45, "sequence": 259, "time_usec": 1700000000010000, "linear_acceleration": 1}
        self.check(["phone", PHONE_EXAMPLE], [first, second])

    def test_phone_missing_groups_are_null(self):
        # Accelerometer only, with gravity, one sample.
        data = struct.pack("<BBHQH3h", 1, 0x01, 7, 1700000000000000, 0, 981, 0, -981).hex()
        self.check(["phone", data], [{"ax": 9.81, "ay": 0, "az": -9.81, "gx": None, "gy": None, "gz": None,
                                      "oa": None, "ob": None, "og": None, "sequence": 7,
                                      "time_usec": 1700000000000000, "linear_acceleration": 0}])

    def test_hex_spellings(self):
        value = RUUVI[0][0]
        want = decode("ruuvi", value)[1]
        pairs = [value[i:i + 2] for i in range(0, len(value), 2)]
        for args in ([value.lower()], [":".join(pairs)], [" ".join(pairs)], pairs, [value[:10], value[10:]],
                     ["\t" + " : ".join(pairs) + " "]):
            code, out, err = decode("ruuvi", *args)
            self.assertEqual((code, out), (0, want), (args, err))


class Errors(TestCase):
    def fails(self, code_expected, args, *messages):
        code, out, err = decode(*args)
        self.assertEqual(code, code_expected, (args, err))
        self.assertEqual(out, "")
        for m in messages:
            self.assertIn(m, err)

    def test_bad_hex(self):
        self.fails(1, ["ruuvi", "0512FG"], "Invalid character 'G'", "hex digits")
        self.fails(1, ["ruuvi", "0x0512"], "Invalid character 'x'")
        self.fails(1, ["ruuvi", "0512F"], "Odd number of hex digits (5)")
        self.fails(1, ["ruuvi", "05 1 2"], "Odd number of hex digits (1) in '1'")
        self.fails(1, ["ruuvi", " : "], "no bytes")
        self.fails(1, ["phone", "00" * 513], "more than 512 bytes")

    def test_wrong_length(self):
        self.fails(1, ["ruuvi", RUUVI[0][0][:-2]], "23 bytes as ruuvi", "expected 24 bytes of data format 5 or 14")
        self.fails(1, ["ruuvi", RUUVI[4][0] + "00"], "15 bytes as ruuvi")
        self.fails(1, ["ruuvi", "04" + "00" * 23], "24 bytes as ruuvi", "format byte")
        self.fails(1, ["sensortag", "00" * 17], "17 bytes as sensortag", "expected 18 bytes")
        self.fails(1, ["thingy52-raw", "00" * 19], "19 bytes as thingy52-raw", "expected 18 bytes")
        self.fails(1, ["thingy52-euler", "00" * 11], "11 bytes as thingy52-euler", "expected 12 bytes")
        self.fails(1, ["phone", PHONE_EXAMPLE[:-2]], "as phone", "12-byte header")
        self.fails(1, ["phone", "01000000" + "00" * 10], "as phone")

    def test_unsupported_phone_version(self):
        self.fails(1, ["phone", "02" + PHONE_EXAMPLE[2:]], "protocol version 2 is not supported")

    def test_unknown_profile(self):
        self.fails(1, ["bme280", "00"], "Unknown profile 'bme280'", "ruuvi, sensortag, thingy52-raw, thingy52-euler, phone")
        self.fails(1, ["thingy52", "00"], "name one: thingy52-raw, thingy52-euler")

    def test_usage(self):
        self.fails(2, [], "Expected a PROFILE and the HEX")
        self.fails(2, ["ruuvi"], "Expected a PROFILE and the HEX")
        self.fails(2, ["sensortag", "--range", "3", "00" * 18], "expected 2, 4, 8 or 16")
        self.fails(2, ["sensortag", "--range", "-8", "00" * 18], "expected 2, 4, 8 or 16")
        self.fails(2, ["ruuvi", "--range", "8", RUUVI[0][0]], "--range applies to the sensortag profile only")
        self.fails(2, ["--bogus", "ruuvi", RUUVI[0][0]])

    def test_help(self):
        code, out, err = decode("--help")
        self.assertEqual(code, 0)
        self.assertIn("Usage: blegatectl decode", out)
        for name in ("ruuvi", "sensortag", "thingy52-raw", "thingy52-euler", "phone", "--range"):
            self.assertIn(name, out)


if __name__ == "__main__":
    harness.main()
