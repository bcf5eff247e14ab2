#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The pandas contender of bench/bench-analyze: what `blegatectl analyze --anomalies-only` does,
written as a pandas user would write it, so the benchmark compares the C code with the tool the
seed notebook used, not with a strawman.

It reads a recording with pandas.read_csv (only the columns it needs), scores each channel's
valid values per device with the streaming z-score of DESIGN.md "Detection":

    m = s.shift(1).rolling(N, min_periods=M).mean()
    d = s.shift(1).rolling(N, min_periods=M).std(ddof=0)
    z = (s - m) / d.clip(lower=MinStdDev)

device by device, and writes the anomalous values (|z| >= Threshold) in the layout of
analyze's CSV output: input order, for one row the channels in the order of reading.h, numbers
as Python's repr (the shortest text that reads back as the same double, as analyze prints).

A value that is missing or not finite is neither scored nor part of any window, as in the
gateway's detector; so each channel is scored over its own valid values, which is why the work
goes channel by channel rather than over the whole frame at once.

The whole recording is held in memory, as read_csv gives it; analyze streams it.

With --timings the CPU time of each phase, after the imports, goes to standard error as one
line that bench-analyze reads: "timings: read=S score=S write=S total=S".
"""

import argparse
import math
import sys
import time

import numpy as np
import pandas as pd

# reading.h's order: the order analyze prints the channels of one row in.
CHANNELS = ["ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz", "oa", "ob", "og"]
OUTPUT_COLUMNS = ["timestamp", "deviceId", "channel", "value", "mean", "std", "z", "anomaly"]


def positive(text):
    v = float(text)
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, not {text!r}")
    return v


def count(text):
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, not {text!r}")
    return v


def channel_list(text):
    names = text.split(",")
    for name in names:
        if name not in CHANNELS:
            raise argparse.ArgumentTypeError(f"unknown channel {name!r}")
    return [c for c in CHANNELS if c in names]


def parse_args():
    p = argparse.ArgumentParser(description="Rolling z-score of a recording in pandas; prints the anomalous values.")
    p.add_argument("--window", type=count, default=100, help="rolling window in values (default 100)")
    p.add_argument("--threshold", type=positive, default=3.0, help="anomaly when |z| >= Z (default 3)")
    p.add_argument("--min-std", type=positive, default=0.001, help="floor of the rolling std (default 0.001)")
    p.add_argument("--min-samples", type=count, help="values needed before scoring (default: the window)")
    p.add_argument("--channels", type=channel_list, help="channels to score, e.g. ax,ay,az (default: all present)")
    p.add_argument("--timings", action="store_true", help="print the CPU time of each phase to stderr")
    p.add_argument("file", help="the recording (CSV), or - for standard input")
    args = p.parse_args()
    if args.min_samples is None:
        args.min_samples = args.window
    if args.min_samples > args.window:
        p.error("--min-samples is larger than --window")
    return args


def read_recording(path, channels):
    # Column types as pandas infers them: epoch milliseconds become int64 and print back as
    # they were; deviceId stays text, which groupby factorizes once. Only the columns needed.
    wanted = None if channels is None else ["timestamp", "deviceId", *channels]
    df = pd.read_csv(sys.stdin if path == "-" else path, usecols=wanted)
    if channels is None:
        channels = [c for c in CHANNELS if c in df.columns]
    return df, channels


def score(df, channels, args):
    """The anomalous values, one row each, indexed by their row in df, in analyze's order."""
    parts = []

    # Device by device, then channel by channel over that channel's valid values: each series
    # s is contiguous, so shift(1).rolling() runs over it directly. (A single
    # groupby().rolling() over the whole frame is several times slower in pandas 1.5: it pays
    # for the (deviceId, row) MultiIndex it builds and for the reindex back to the rows.)
    for device, rows in df.groupby("deviceId", sort=False):
        for channel in channels:
            s = rows[channel]
            valid = np.isfinite(s.to_numpy())
            if not valid.all():
                s = s[valid]

            window = s.shift(1).rolling(args.window, min_periods=args.min_samples)
            mean = window.mean()
            std = window.std(ddof=0)
            z = (s - mean) / std.clip(lower=args.min_std)

            flagged = (z.abs() >= args.threshold).to_numpy()
            if flagged.any():
                parts.append(pd.DataFrame(
                    {
                        "deviceId": device,
                        "channel": channel,
                        "value": s.to_numpy()[flagged],
                        "mean": mean.to_numpy()[flagged],
                        "std": std.to_numpy()[flagged],
                        "z": z.to_numpy()[flagged],
                        "anomaly": 1,
                    },
                    index=s.index[flagged],
                ))

    if not parts:
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    # All values of one row come from one device, appended in reading.h's channel order: a
    # stable sort on the row keeps that order within the row, as analyze prints it.
    anomalies = pd.concat(parts).sort_index(kind="stable")
    anomalies.insert(0, "timestamp", df["timestamp"].to_numpy()[anomalies.index.to_numpy()])
    return anomalies


def main():
    args = parse_args()
    t0 = time.process_time()

    df, channels = read_recording(args.file, args.channels)
    t1 = time.process_time()

    anomalies = score(df, channels, args)
    t2 = time.process_time()

    anomalies.to_csv(sys.stdout, index=False, columns=OUTPUT_COLUMNS)
    sys.stdout.flush()
    t3 = time.process_time()

    if args.timings:
        print(f"timings: read={t1 - t0:.3f} score={t2 - t1:.3f} write={t3 - t2:.3f} total={t3 - t0:.3f}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
