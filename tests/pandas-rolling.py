#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The reference for the streaming detector (DESIGN.md "Detection"): the rolling z-score of one
# series, computed with the pandas expression the detector must equal. test-detector writes the
# series, runs this, and compares row by row.
#
# Usage: pandas-rolling.py FILE WINDOW MIN_SAMPLES MIN_STDDEV
#   FILE holds one value per line (written with %.17g, so it reads back exactly).
#   Prints "mean,std,z" per row with %.17g; "nan" where the row is not scored.
#
# Exits non-zero when pandas is missing, so the test fails rather than skips.

import sys

import pandas as pd


def main():
    if len(sys.argv) != 5:
        sys.exit(f'usage: {sys.argv[0]} FILE WINDOW MIN_SAMPLES MIN_STDDEV')
    path = sys.argv[1]
    n = int(sys.argv[2])
    min_samples = int(sys.argv[3])
    min_stddev = float(sys.argv[4])

    # float() rounds correctly; read_csv's fast parser need not.
    with open(path) as f:
        values = [float(line) for line in f if line.strip()]
    s = pd.Series(values, dtype='float64')

    m = s.shift(1).rolling(n, min_periods=min_samples).mean()
    d = s.shift(1).rolling(n, min_periods=min_samples).std(ddof=0)
    z = (s - m) / d.clip(lower=min_stddev)

    out = sys.stdout
    for row in zip(m, d, z):
        out.write('%.17g,%.17g,%.17g\n' % row)


if __name__ == '__main__':
    main()
