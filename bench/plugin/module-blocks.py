#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Split some of a module's functions into their basic blocks, for the
icount plugin's ranges: each block is a label of its own, so a count says
how often each block ran.

    module-blocks.py MODULE.ko SYMS PATTERN... > SYMS.blocks

SYMS is module-syms.sh's output ("OFFSET SIZE NAME", hex, in .text); the
functions whose name matches a PATTERN (a Python regular expression) become
one line a block, named NAME+OFF (OFF, hex, from the function's start),
the others stay as they are. A block starts at the function's start, at
every target of a jump inside the function and after every jump or return;
a call does not end one. scripts/icount-blocks.py prints the counts beside
the code. The plugin takes at most 1024 labels in all: a few hundred
blocks fit beside vmlinux's ranges (scripts/bench.sh, BENCH_ICOUNT_BLOCKS,
folds the Rust functions of vmlinux into one label to make room).
"""
import re
import subprocess
import sys


def instructions(ko):
    """The .text's instructions as (offset, mnemonic and operands)."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-j", ".text", ko],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.match(r"\s+([0-9a-f]+):\s+(\S.*)", line)
        if m:
            yield int(m.group(1), 16), m.group(2)


def blocks(insns, start, size):
    """The offsets where the basic blocks of [start, start + size) begin."""
    fn = [(a, t) for a, t in insns if start <= a < start + size]
    leaders = {start}
    for i, (_, text) in enumerate(fn):
        m = re.match(r"(j[a-z]+|ret[a-z]*)\s*([0-9a-f]+)?\b", text)
        if not m:
            continue
        if i + 1 < len(fn):
            leaders.add(fn[i + 1][0])
        if m.group(2):
            target = int(m.group(2), 16)
            if start <= target < start + size:
                leaders.add(target)
    return sorted(leaders)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__.strip())
    ko, syms, patterns = sys.argv[1], sys.argv[2], sys.argv[3:]
    insns = list(instructions(ko))
    for line in open(syms):
        off, size, name = line.split()
        start, size = int(off, 16), int(size, 16)
        if not any(re.search(p, name) for p in patterns):
            print(line.rstrip())
            continue
        starts = blocks(insns, start, size) + [start + size]
        for a, b in zip(starts, starts[1:]):
            print(f"{a:016x} {b - a:x} {name}+{a - start:x}")


if __name__ == "__main__":
    main()
