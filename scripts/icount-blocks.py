#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The module's code with how often each basic block ran, from a count
boot made with BENCH_ICOUNT_BLOCKS (scripts/bench.sh).

    scripts/icount-blocks.py [--rep N] CONFIG WORKLOAD DIVISOR [PATTERN]

Reads out/bench/icount (icount.txt, marks) and out/bench/plugin
(rs-text.syms, the blocks the guest labelled) and disassembles
out/bench/module/cachefiles_ondemand_rs.ko. For each split function whose
name matches PATTERN (a Python regular expression; all by default), each
instruction with how many times its block ran per DIVISOR (e.g. the
workload's requests or blobs) between the run's start and end marks, then
the function's instructions per DIVISOR. Blocks that never ran are
printed without a count.
"""
import argparse
import importlib.util
import os
import re
import subprocess

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location(
    "icount_report", os.path.join(TOP, "bench/plugin/icount-report.py"))
icount_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(icount_report)


def disassembly(ko):
    """Offset -> instruction text, with the relocation each carries."""
    out = subprocess.run(["objdump", "-dr", "--no-show-raw-insn", "-j", ".text", ko],
                         check=True, capture_output=True, text=True).stdout
    ins, last = {}, None
    for line in out.splitlines():
        if "R_X86_64" in line:
            if last is not None:
                target = line.split()[-1]
                ins[last] += f"   <{target[:60]}>"
            continue
        m = re.match(r"\s+([0-9a-f]+):\s+(\S.*)", line)
        if m:
            last = int(m.group(1), 16)
            text = re.sub(r"\s+", " ", m.group(2))
            # A jump's target within its function: its offset alone.
            ins[last] = re.sub(r"<[^<>]*\+(0x[0-9a-f]+)>", r"<+\1>", text)
    return ins


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rep", default="1")
    ap.add_argument("--dir", default=os.path.join(TOP, "out/bench"))
    ap.add_argument("config")
    ap.add_argument("workload")
    ap.add_argument("divisor", type=float)
    ap.add_argument("pattern", nargs="?", default=".")
    a = ap.parse_args()
    counts = icount_report.parse_counts(os.path.join(a.dir, "icount/icount.txt"))
    marks = {}
    for line in open(os.path.join(a.dir, "icount/marks")):
        f = line.split()
        if len(f) == 5:
            marks[tuple(f[1:])] = int(f[0])
    s = marks[(a.config, a.rep, a.workload, "start")]
    e = marks[(a.config, a.rep, a.workload, "end")]
    ins = disassembly(os.path.join(a.dir, "module/cachefiles_ondemand_rs.ko"))
    addrs = sorted(ins)
    total, fn_total, current = 0.0, 0.0, None
    for line in open(os.path.join(a.dir, "plugin/rs-text.syms")):
        off, size, name = line.split()
        if "+" not in name:
            continue
        fn, boff = name.rsplit("+", 1)
        if not re.search(a.pattern, fn):
            continue
        if fn != current:
            if current is not None:
                print(f"{fn_total:10.2f} per unit in {current}\n")
            current, fn_total = fn, 0.0
            print(f"==== {fn}")
        start, n = int(off, 16), int(size, 16)
        label = "rs:" + name
        v = (counts[e].get(label, 0) - counts[s].get(label, 0)) / a.divisor
        block = [x for x in addrs if start <= x < start + n]
        runs = v / len(block) if block else 0.0
        fn_total += v
        total += v
        for x in block:
            head = f"{runs:8.2f}" if v else " " * 8
            print(f"{head} {x:6x}: {ins[x][:140]}")
    if current is not None:
        print(f"{fn_total:10.2f} per unit in {current}\n")
    print(f"{total:.2f} instructions per unit in the functions shown")


if __name__ == "__main__":
    main()
