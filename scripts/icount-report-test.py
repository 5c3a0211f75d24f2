#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Unit tests of the reports: how they read the icount plugin's lines (a
label's total that stands below zero at one mark, a cut block's correction
taken off before the label counted as much, printed by the plugin modulo
2^64, still gives the right difference between two marks), and which cost
curve points the curves' daemon read behind its gate."""
import os
import runpy
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))

# The curves' report loads both reports as modules: take them from it.
_curves = runpy.run_path(os.path.join(HERE, "curves-report.py"))
icount_report = _curves["icount_report"]
bench_report = _curves["bench_report"]


class CountsBelowZero(unittest.TestCase):
    def test_s64(self):
        for s64 in (icount_report.s64, bench_report.s64):
            self.assertEqual(s64("0"), 0)
            self.assertEqual(s64(str((1 << 63) - 1)), (1 << 63) - 1)
            self.assertEqual(s64(str((1 << 64) - 10)), -10)

    def test_difference_across_zero(self):
        # As cv16's first Rust point: Operations::read's total stood below
        # zero at the start mark (printed modulo 2^64) and 30464 higher at
        # the end, 119 instructions for each of 256 READs.
        lines = ["mark 1 vcpu 0 kernel 100 user 5 rs:read %d rs:other 7\n" % ((1 << 64) - 1000),
                 "mark 2 vcpu 1 kernel 900 user 9 rs:read %d rs:other 7\n" % (30464 - 1000)]
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.writelines(lines)
        try:
            m = icount_report.parse_counts(f.name)
        finally:
            os.unlink(f.name)
        self.assertEqual(m[2]["rs:read"] - m[1]["rs:read"], 30464)
        self.assertEqual(m[2]["rs:other"] - m[1]["rs:other"], 0)
        self.assertEqual(m[2]["kernel"] - m[1]["kernel"], 800)


class CurvesGate(unittest.TestCase):
    """A point is gated when its daemon read each round in one burst, and
    no gate timed out (bench/curves.c); points from before the gate carry
    no such field."""

    def test_gated(self):
        line = ("backend={b} rep=1 rc=0 point=inflight label={b}-1-inflight-64 bound={b} "
                "objects=1 threads=64 rounds=4 reads=256 peak=64 wall_ns=1 {extra}\n")
        with tempfile.TemporaryDirectory() as run:
            os.mkdir(os.path.join(run, "raw"))
            with open(os.path.join(run, "raw", "results.txt"), "w") as f:
                f.write(line.format(b="c", extra="bursts=4 gate_timeouts=0"))
                f.write(line.format(b="rust", extra="bursts=5 gate_timeouts=0"))
                f.write(line.format(b="c", extra="bursts=4 gate_timeouts=1"))
                f.write(line.format(b="rust", extra=""))
            points, _ = _curves["read_run"](run)
        self.assertEqual([p["gated"] for p in points], [True, False, False, None])


if __name__ == "__main__":
    sys.exit(unittest.main())
