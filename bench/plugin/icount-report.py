#!/usr/bin/env python3
"""Instructions per phase and per request from a run of scripts/icount.sh.

    icount-report.py [--functions N] OUTDIR

Reads OUTDIR/icount.txt (the plugin's lines), OUTDIR/marks (what each mark
separates, written by tests/icount_probe.sh) and OUTDIR/served (od-serve's
request counts per repetition). Labels "GROUP:FUNCTION" are summed per
group. For every backend, phase and counter: the median over the
repetitions, the min and max, and the spread (max - min) / median; then the
backend's instructions per request over the whole cycle, and the functions
whose counts varied. With --functions N, also the backend's N costliest
functions: their median whole-cycle count divided by the requests.
"""
import statistics
import subprocess
import sys

# What each backend runs of its own. The Rust backend also runs code in
# vmlinux: the patch's dispatch, the kernel crate and rust_helper_
# functions, and the anonymous fd's write_iter and llseek, which are C's
# (in ondemand.c) on both backends. Both count daemon.c's poll() (devpoll)
# and cachefiles_flush_reqs() (devflush), where C's on-demand walk and flush
# loop are inline.
BACKEND = {
    "c": ["ondemand", "dispatch", "devpoll", "devflush"],
    "rust": ["rs", "rust_kernel", "dispatch", "ondemand", "devpoll", "devflush"],
}
PHASES = [("mount", "read"), ("read", "umount"), ("umount", "end"), ("mount", "end")]


def s64(text):
    """A count of the plugin's line, its uint64 read as two's complement:
    a label's total is a sum of per-vCPU counters less the corrections of
    cut blocks, all modulo 2^64, and may stand below zero for a while (a
    correction taken off a label before it has counted as much); read as
    unsigned it would put 2^64 into a difference of two marks."""
    v = int(text)
    return v - (1 << 64) if v >= 1 << 63 else v


def parse_counts(path):
    marks = {}
    with open(path) as lines:
        for line in lines:
            f = line.split()
            if f and f[0] == "mark":
                marks[int(f[1])] = dict(zip(f[4::2], (s64(v) for v in f[5::2])))
    return marks


def grouped(vals):
    out = {}
    for k, v in vals.items():
        g = k.split(":")[0]
        out[g] = out.get(g, 0) + v
    return out


def demangle(names):
    try:
        r = subprocess.run(["llvm-cxxfilt-19"], input="\n".join(names), text=True,
                           capture_output=True, check=True)
        return dict(zip(names, r.stdout.splitlines()))
    except (OSError, subprocess.CalledProcessError):
        return {n: n for n in names}


def row(name, vals, star=""):
    med = statistics.median(vals)
    spread = (max(vals) - min(vals)) / med * 100 if med else float("nan")
    print(f"   {name:14} {med:12.0f} {min(vals):12d} {max(vals):12d} {spread:7.2f}%{star}")


def main():
    args = sys.argv[1:]
    top = 0
    if len(args) == 3 and args[0] == "--functions":
        top = int(args[1])
        args = args[2:]
    if len(args) != 1:
        sys.exit("usage: icount-report.py [--functions N] OUTDIR")
    d = args[0]
    raw = parse_counts(f"{d}/icount.txt")
    counts = {k: grouped(v) for k, v in raw.items()}
    what = {}
    for line in open(f"{d}/marks"):
        n, b, i, phase = line.split()
        what[(b, int(i), phase)] = int(n)
    served = {}
    for line in open(f"{d}/served"):
        f = line.split()
        served[(f[0], int(f[1]))] = dict(zip(f[2::2], (int(v) for v in f[3::2])))
    if len(raw) != len(what):
        print(f"warning: {len(raw)} plugin marks, {len(what)} expected "
              "(another program executed the marker?)")
    groups = sorted({k for v in counts.values() for k in v})
    for b in ("c", "rust"):
        reps = [i for (bb, i, p) in sorted(what) if bb == b and p == "mount"
                and (b, i) in served and what[(b, i, "end")] in raw
                and what[(b, i, "mount")] in raw]
        if not reps:
            continue
        reqs = [sum(served[(b, i)].get(k, 0) for k in ("open", "read", "close")) for i in reps]
        print(f"== {b}: {len(reps)} repetitions; requests (open+read+close) per repetition: "
              + " ".join(map(str, reqs)))

        def delta(i, a, z, src=counts):
            ca, cz = src[what[(b, i, a)]], src[what[(b, i, z)]]
            return {k: cz.get(k, 0) - ca.get(k, 0) for k in set(ca) | set(cz)}

        for a, z in PHASES:
            print(f"-- phase {a}..{z}")
            print(f"   {'counter':14} {'median':>12} {'min':>12} {'max':>12} {'spread':>8}")
            ds = [delta(i, a, z) for i in reps]
            for g in groups:
                vals = [x.get(g, 0) for x in ds]
                if max(vals):
                    row(g, vals, " *" if g in BACKEND[b] else "")
            row("backend", [sum(x.get(g, 0) for g in BACKEND[b]) for x in ds], " = *")
        whole = [delta(i, "mount", "end") for i in reps]
        per = [sum(x.get(g, 0) for g in BACKEND[b]) / r for x, r in zip(whole, reqs)]
        print(f"   backend instructions per request, whole cycle: median "
              f"{statistics.median(per):.1f} (min {min(per):.1f}, max {max(per):.1f})")
        fn = [delta(i, "mount", "end", raw) for i in reps]
        names = sorted({k for x in fn for k in x if ":" in k and k.split(":")[0] in BACKEND[b]})
        var = []
        for k in names:
            vals = [x.get(k, 0) for x in fn]
            if max(vals) != min(vals):
                var.append((max(vals) - min(vals), k, vals))
        var.sort(reverse=True)
        dm = demangle([k.split(":", 1)[1] for _, k, _ in var[:12]])
        print("   functions whose whole-cycle count varied (max - min: counts):")
        for diff, k, vals in var[:12]:
            g, n = k.split(":", 1)
            print(f"     {diff:6d}: {' '.join(map(str, vals))}  {g}:{dm.get(n, n)[:90]}")
        if top:
            med = sorted(((statistics.median(x.get(k, 0) / r for x, r in zip(fn, reqs)), k)
                          for k in names), reverse=True)[:top]
            dm = demangle([k.split(":", 1)[1] for _, k in med])
            print(f"   the {len(med)} costliest functions, instructions per request (median):")
            for v, k in med:
                g, n = k.split(":", 1)
                print(f"     {v:8.1f}  {g}:{dm.get(n, n)[:160]}")


if __name__ == "__main__":
    main()
