#!/usr/bin/env python3
"""Address ranges of the on-demand path in a kernel built without KASLR
(the test VM boots with nokaslr), for the icount plugin's ranges= file.

    icount-ranges.py KDIR > FILE

One line a function, "START END LABEL" (hex, END exclusive): the functions
of fs/cachefiles/ondemand.o (labels ondemand:FUNCTION, the C backend),
backend.o (dispatch:FUNCTION, the patch's switch between the two
backends), daemon.o's cachefiles_daemon_poll (devpoll:, which holds the
built-in backend's poll walk and calls the module's) and
cachefiles_flush_reqs (devflush:, which holds the built-in backend's flush
loop at cache death and calls the module's), the rest of
fs/cachefiles (cachefiles), fs/netfs (netfs, fscache included), fs/erofs
(erofs), and the Rust code built into vmlinux (rust_kernel:FUNCTION: the
kernel crate and the rust_helper_ functions the module calls). Names come from
each object file, addresses and sizes from vmlinux's symbol table; a static
name defined more than once in vmlinux is taken only if one copy lies
within the span of the label's unambiguous functions. The module's own
text (labels rs:FUNCTION) is added in the guest, where its load address is
known.
"""
import collections
import glob
import os
import subprocess
import sys

NM = "llvm-nm-19"


def nm(path, sizes=False):
    args = [NM, "--defined-only"] + (["-S"] if sizes else []) + [path]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if sizes and len(f) == 4 and f[2] in "tTwW":
            yield f[3], int(f[0], 16), int(f[1], 16)
        elif not sizes and len(f) == 3 and f[1] in "tTwW":
            yield f[2]


def main():
    kdir = sys.argv[1]
    syms = collections.defaultdict(list)
    for name, addr, size in nm(os.path.join(kdir, "vmlinux"), sizes=True):
        if size:
            syms[name].append((addr, addr + size))
    cf = os.path.join(kdir, "fs/cachefiles")
    groups = [
        ("ondemand", [os.path.join(cf, "ondemand.o")]),
        ("dispatch", [os.path.join(cf, "backend.o")]),
        # The devnode's poll(): the built-in backend's on-demand walk is
        # inline in it, where the module's is reached through the dispatch.
        ("devpoll", [os.path.join(cf, "daemon.o")], {"cachefiles_daemon_poll"}),
        # Likewise the flush of the queue at cache death.
        ("devflush", [os.path.join(cf, "daemon.o")], {"cachefiles_flush_reqs"}),
        ("cachefiles", [o for o in glob.glob(os.path.join(cf, "*.o"))
                        if os.path.basename(o) not in ("ondemand.o", "backend.o")]),
        ("netfs", glob.glob(os.path.join(kdir, "fs/netfs/*.o"))),
        ("erofs", glob.glob(os.path.join(kdir, "fs/erofs/*.o"))),
    ]
    taken = set()
    ranges = []
    left_out = []
    for label, objs, *only in groups:
        names = set()
        for o in objs:
            if not o.endswith((".mod.o",)) and os.path.exists(o):
                names.update(nm(o))
        if only:
            names &= only[0]
        # Archive members are included through built-in.a, not listed
        # here: only the plain objects of the directory count.
        uniq = [syms[n][0] for n in names if len(syms.get(n, [])) == 1]
        if not uniq:
            print(f"icount-ranges: no functions for {label}", file=sys.stderr)
            continue
        lo, hi = min(r[0] for r in uniq), max(r[1] for r in uniq)
        for n in sorted(names):
            cands = syms.get(n, [])
            if len(cands) > 1:
                cands = [r for r in cands if lo <= r[0] < hi]
            if len(cands) != 1:
                if cands:
                    left_out.append(n)
                continue
            if cands[0] not in taken:
                taken.add(cands[0])
                per_function = label in ("ondemand", "dispatch", "devpoll", "devflush")
                ranges.append((cands[0][0], cands[0][1],
                               f"{label}:{n}" if per_function else label))
    for n, rs in syms.items():
        if (n.startswith("_R") or n.startswith("rust_helper_")) and len(rs) == 1 \
                and rs[0] not in taken:
            taken.add(rs[0])
            ranges.append((rs[0][0], rs[0][1], f"rust_kernel:{n}"))
    ranges.sort()
    out = []
    for s, e, label in ranges:
        if out and s < out[-1][1]:
            print(f"icount-ranges: overlap at {s:#x} ({label}), left out", file=sys.stderr)
            continue
        out.append((s, e, label))
    print(f"# icount ranges of {kdir}/vmlinux")
    for s, e, label in out:
        print(f"{s:#x} {e:#x} {label}")
    if left_out:
        print("icount-ranges: ambiguous, left out: " + " ".join(sorted(set(left_out))),
              file=sys.stderr)
    count = collections.Counter(r[2].split(":")[0] for r in out)
    print("icount-ranges: " + ", ".join(f"{k} {v}" for k, v in sorted(count.items())),
          file=sys.stderr)


if __name__ == "__main__":
    main()
