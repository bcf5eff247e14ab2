#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""blegatectl analyze against pandas: the streaming mode equals pandas' rolling z-score, the
batch mode the seed notebook's whole-group z-score, for both groupings, on recordings with
spikes, steps, constant stretches, missing values and interleaved devices. Plus what a user of
the command sees on bad input."""

import io
import json
import math
import random
import subprocess

import pandas as pd

import harness
from harness import TestCase

CHANNELS = ["ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz", "oa", "ob", "og"]
REL_TOL = 1e-9


def analyze(*args, stdin=None):
    p = subprocess.run([harness.BLEGATECTL, "analyze", *args], input=stdin, capture_output=True, text=True,
                       timeout=120)
    return p.returncode, p.stdout, p.stderr


def read_recording(path):
    # round_trip: the exact double the C reader (strtod-equivalent) gets from each cell.
    df = pd.read_csv(path, float_precision="round_trip", dtype={"deviceId": str, "deviceType": str,
                                                                "timestamp": str})
    if "deviceId" not in df:
        df["deviceId"] = "replay"
    if "deviceType" not in df:
        df["deviceType"] = "replay"
    df["deviceType"] = df["deviceType"].fillna("replay")
    return df


def reference(df, batch, group_by, window=100, min_samples=None, min_std=0.001, threshold=3.0,
              channels=None):
    """Rows (line index, channel, group, value, mean, std, z, anomaly) in the order analyze prints:
    input order, channels in reading.h order."""
    key = "deviceType" if group_by == "type" else "deviceId"
    min_samples = min_samples or window
    rows = []
    for ci, ch in enumerate(CHANNELS):
        if ch not in df or (channels and ch not in channels):
            continue
        for group, part in df.groupby(key, sort=False):
            s = part[ch].dropna()
            if s.empty:
                continue
            if batch:
                mean = pd.Series(s.mean(), index=s.index)
                std = pd.Series(s.std(ddof=0), index=s.index)
                z = (s - mean) / std
                scored = pd.Series(True, index=s.index)
            else:
                mean = s.shift(1).rolling(window, min_periods=min_samples).mean()
                std = s.shift(1).rolling(window, min_periods=min_samples).std(ddof=0)
                z = (s - mean) / std.clip(lower=min_std)
                scored = mean.notna()
            for idx in s.index[scored.values]:
                zi = z[idx]
                rows.append((idx, ci, group, s[idx], mean[idx], std[idx], zi,
                             bool(not math.isnan(zi) and abs(zi) >= threshold)))
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


def parse_output(text):
    out = pd.read_csv(io.StringIO(text), float_precision="round_trip", dtype={"timestamp": str, "deviceId": str})
    assert list(out.columns) == ["timestamp", "deviceId", "channel", "value", "mean", "std", "z", "anomaly"], \
        list(out.columns)
    return out


def close(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b)) or abs(a - b) <= 1e-12


class Parity(TestCase):
    def check(self, path, batch, group_by, **kw):
        df = read_recording(path)
        expected = reference(df, batch, group_by, **kw)
        args = ["--group-by", group_by]
        if batch:
            args.append("--batch")
        for opt, name in (("window", "--window"), ("min_samples", "--min-samples"), ("min_std", "--min-std"),
                          ("threshold", "--threshold")):
            if opt in kw:
                args += [name, str(kw[opt])]
        if "channels" in kw:
            args += ["--channels", ",".join(kw["channels"])]
        code, out, err = analyze(*args, path)
        self.assertEqual(code, 0, err)
        got = parse_output(out)
        self.assertEqual(len(got), len(expected), f"rows scored ({'batch' if batch else 'streaming'}, {group_by})")
        self.assertGreater(len(expected), 100)

        flags = 0
        for (idx, ci, group, value, mean, std, z, anomaly), row in zip(expected, got.itertuples(index=False)):
            where = f"line {idx + 2} {CHANNELS[ci]}"
            self.assertEqual(row.timestamp, df["timestamp"][idx], where)
            self.assertEqual(row.deviceId, group, where)
            self.assertEqual(row.channel, CHANNELS[ci], where)
            self.assertEqual(row.value, value, where)
            for name, a, b in (("mean", row.mean, mean), ("std", row.std, std), ("z", row.z, z)):
                self.assertTrue(close(a, b), f"{where}: {name} {a!r} != pandas {b!r}")
            self.assertEqual(bool(row.anomaly), anomaly, f"{where}: anomaly flag, z={z!r}")
            flags += anomaly
        self.assertGreater(flags, 0, "a parity test on data without anomalies proves little")
        return got

    def crafted(self):
        """Three devices of two types interleaved, with spikes, a step, constant stretches (std 0,
        so MinStdDev decides), missing cells and a channel only some devices have."""
        rnd = random.Random(7)
        lines = ["timestamp,deviceId,deviceType,ax,ay,gz,ob"]
        t = 1515542400000
        for i in range(3000):
            for dev, typ in (("tag-1", "ruuvi"), ("tag-2", "ruuvi"), ("phone-1", "simulator")):
                t += 3
                ax = 9.80665 + rnd.gauss(0, 0.02)
                if i % 400 == 250:
                    ax += 1.5                      # spike
                ay = 0.25 if 1000 <= i < 1300 else rnd.gauss(0, 0.05) + (0.8 if 2000 <= i < 2200 else 0)
                gz = "" if i % 7 == 3 else f"{rnd.gauss(0, 2):.17g}"
                ob = f"{30 + rnd.gauss(0, 1):.6f}" if typ == "simulator" else ""
                if typ == "simulator" and i % 500 == 499:
                    ob = "90"
                lines.append(f"{t},{dev},{typ},{ax!r},{ay!r},{gz},{ob}")
        return self.write("crafted.csv", "\n".join(lines) + "\n")

    def test_streaming_equals_pandas_rolling(self):
        for group_by in ("device", "type"):
            self.check(harness.SAMPLE_RECORDING, False, group_by)
            self.check(self.crafted(), False, group_by)
        self.check(self.crafted(), False, "device", window=50, min_samples=10, min_std=0.01, threshold=2.5)

    def test_batch_equals_pandas_whole_group(self):
        for group_by in ("device", "type"):
            self.check(harness.SAMPLE_RECORDING, True, group_by)
            self.check(self.crafted(), True, group_by)

    def test_batch_by_type_reproduces_the_notebook(self):
        """The notebook (reference/protocols.md 4.3): per deviceType and key in oa, ob, og, the
        non-null rows, z = (x - mean) / std with ddof=0 over all of them, anomaly if z >= 3 or
        z <= -3."""
        df = read_recording(harness.SAMPLE_RECORDING)
        notebook = set()
        for device_type, part in df.groupby("deviceType"):
            for key in ("oa", "ob", "og"):
                s = part[key].dropna()
                if s.empty:
                    continue
                z = (s - s.mean()) / s.std(ddof=0)
                for idx in s.index[(z >= 3) | (z <= -3)]:
                    notebook.add((df["timestamp"][idx], device_type, key))
        self.assertGreater(len(notebook), 0)

        code, out, err = analyze("--batch", "--group-by", "type", "--channels", "oa,ob,og", "--anomalies-only",
                                 harness.SAMPLE_RECORDING)
        self.assertEqual(code, 0, err)
        got = parse_output(out)
        self.assertTrue((got.anomaly == 1).all())
        self.assertEqual(set(zip(got.timestamp, got.deviceId, got.channel)), notebook)

    def test_json_matches_csv(self):
        args = ["--anomalies-only", "--window", "50", harness.SAMPLE_RECORDING]
        code, csv_out, err = analyze(*args)
        self.assertEqual(code, 0, err)
        code, json_out, err = analyze("--format", "json", *args)
        self.assertEqual(code, 0, err)
        csv_rows = parse_output(csv_out)
        objects = [json.loads(line) for line in json_out.splitlines()]
        self.assertEqual(len(objects), len(csv_rows))
        self.assertGreater(len(objects), 0)
        for o, row in zip(objects, csv_rows.itertuples(index=False)):
            self.assertEqual(list(o), ["timestamp", "deviceId", "channel", "value", "mean", "std", "z", "anomaly"])
            self.assertEqual((o["timestamp"], o["deviceId"], o["channel"]), (row.timestamp, row.deviceId, row.channel))
            self.assertEqual((o["value"], o["mean"], o["std"], o["z"]), (row.value, row.mean, row.std, row.z))
            self.assertIs(o["anomaly"], True)

    def test_stdin(self):
        with open(harness.SAMPLE_RECORDING) as f:
            text = f.read()
        code, from_stdin, err = analyze("--anomalies-only", "-", stdin=text)
        self.assertEqual(code, 0, err)
        code, from_file, err = analyze("--anomalies-only", harness.SAMPLE_RECORDING)
        self.assertEqual(from_stdin, from_file)


class Errors(TestCase):
    def test_missing_file(self):
        code, out, err = analyze(self.path("nope.csv"))
        self.assertEqual(code, 1)
        self.assertIn("nope.csv", err)
        self.assertIn("No such file", err)

    def test_no_timestamp_column(self):
        p = self.write("x.csv", "time,ax\n1,2\n")
        code, out, err = analyze(p)
        self.assertEqual(code, 1)
        self.assertIn(p, err)
        self.assertIn("timestamp", err)

    def test_malformed_line_warns_or_fails_with_strict(self):
        p = self.write("x.csv", "timestamp,ax\n1,1\n2,abc\n3,3\n4,4\n")
        code, out, err = analyze("--window", "2", p)
        self.assertEqual(code, 0, err)
        self.assertIn(f"{p}:3: column 'ax': not a number: 'abc', skipping line.", err)
        rows = parse_output(out)
        self.assertEqual(list(rows.timestamp), ["4"])   # 1 and 3 fill the window, 4 is scored
        self.assertEqual(rows.value[0], 4)
        self.assertEqual(rows["mean"][0], 2)
        self.assertEqual(rows["std"][0], 1)
        self.assertEqual(rows.z[0], 2)

        code, out, err = analyze("--window", "2", "--strict", p)
        self.assertEqual(code, 1)
        self.assertIn(f"{p}:3:", err)

    def test_bad_options_exit_2(self):
        for args in (["--window", "0"], ["--threshold", "-1"], ["--min-std", "nan"], ["--group-by", "room"],
                     ["--channels", "ax,zz"], ["--format", "xml"], ["--window", "10", "--min-samples", "20"],
                     [], ["a.csv", "b.csv"]):
            code, out, err = analyze(*args, *([] if args in ([], ["a.csv", "b.csv"]) else [harness.SAMPLE_RECORDING]))
            self.assertEqual(code, 2, args)
            self.assertNotEqual(err.strip(), "", args)

    def test_channel_not_in_recording(self):
        p = self.write("x.csv", "timestamp,ax\n1,1\n")
        code, out, err = analyze("--channels", "ax,gz", p)
        self.assertEqual(code, 1)
        self.assertIn("has no column 'gz'", err)


if __name__ == "__main__":
    harness.main()
