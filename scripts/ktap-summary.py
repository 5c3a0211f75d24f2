#!/usr/bin/env python3
"""Judge one guest run: the guest's KTAP plus the host's own test points.

Leaf test points are counted: a test program that reports subtests counts
each of them, one that does not counts as one point. Two host points follow:
the guest ran to the end, and its kernel log is free of splats. With
--expect-splat the second point is inverted (the harness' own self-test).
Prints the KTAP host points and the closing line "NAME: N passed, N failed[,
N skipped]"; exits 1 if anything failed.

With --kcsan-gate SYMS (the race kernel), a KCSAN report is a splat only if
its stacks touch the on-demand path: a function listed in SYMS (the symbols
of fs/cachefiles, fs/netfs with fscache, fs/erofs) or the Rust module. Such a
report is printed whole; the others are listed, not gated. Also listed: the
harness' own 9p I/O (9p reads through netfs), and the known findings of
--kcsan-known FILE (tests/kcsan-known.txt), printed whole when in the core.

With --lockdep-known FILE (tests/lockdep-known.txt), a lockdep report of a
circular dependency that the file lists is printed whole, marked, and not a
splat; lockdep checks nothing after its first report in a boot, and the host
says so. --expect-lockdep-known adds a point: such a report came.
"""

import argparse
import re
import sys

# What counts as a kernel splat in the guest's console log.
SPLAT_PATTERNS = [
    r"\bBUG: ",
    r"\bWARNING: ",
    r"\bKASAN: ",
    r"\bUBSAN: ",
    r"\bOops\b",
    r"general protection fault",
    r"Kernel panic",
    r"INFO: task .* blocked for more than",
    r"INFO: possible (recursive|circular) locking",
    r"INFO: trying to register non-static key",
    r"inconsistent lock state",
    r"kmemleak: .*new suspected memory leak",
    r"rcu: INFO: .*detected stall",
    r"Call Trace:",
]
SPLAT_RE = re.compile("|".join(SPLAT_PATTERNS))
RESULT_RE = re.compile(r"^(\s*)(not ok|ok) (\d+) ?(.*)$")


def find_splats(console, skip=frozenset()):
    """Return the splat lines (except those in skip) with their index."""
    hits = []
    lines = console.splitlines()
    for i, line in enumerate(lines):
        if i not in skip and SPLAT_RE.search(line):
            hits.append((i, line))
    return lines, hits


KCSAN_DELIM = re.compile(r"^(\[[ 0-9.]+\] )?={20,}\s*$")
# A stack frame "func+0xOFF/0xLEN [module]" (KCSAN and lockdep reports).
OFFSET = r"\+0x[0-9a-f]+/0x[0-9a-f]+"
FRAME = re.compile(r"(?:^|\]\s|\s)([A-Za-z_][A-Za-z0-9_.]*)" + OFFSET + r"(\s+\[(\w+)\])?")
MODULE = "cachefiles_ondemand_rs"


def kcsan_reports(lines):
    """The KCSAN reports in the log: (first line, last line, title) each."""
    reports = []
    for i, line in enumerate(lines):
        if "BUG: KCSAN:" not in line:
            continue
        end = i
        for j in range(i + 1, min(len(lines), i + 200)):
            end = j
            if KCSAN_DELIM.search(lines[j]):
                break
        start = i - 1 if i > 0 and KCSAN_DELIM.search(lines[i - 1]) else i
        title = line[line.index("BUG: KCSAN:"):].strip()
        reports.append((start, end, title))
    return reports


def kcsan_gated(lines, report, gate):
    """Whether a KCSAN report's frames touch the gated code."""
    start, end, title = report
    # "data-race in A / B" or "in A": each side a function, perhaps with
    # its offset and its module ("f+0x1/0x2 [mod]").
    m = re.search(r"data-race in (.*)$", title)
    for side in (m.group(1).split(" / ") if m else []):
        f = re.match(r"([A-Za-z_][A-Za-z0-9_.]*)(?:" + OFFSET + r")?(?: \[(\w+)\])?", side)
        if f and (f.group(1) in gate or f.group(2) == MODULE):
            return True
    for f, mod in kcsan_frames(lines, report):
        if mod == MODULE or f in gate:
            return True
    return False


# The harness' own file sharing (the host tree over 9p, which reads through
# netfs): a report whose frames are 9p's and none of them the on-demand
# path's own (cachefiles, fscache, erofs, the module) is harness I/O.
HARNESS_PREFIXES = ("v9fs_", "p9_")
ONDEMAND_PREFIXES = ("cachefiles_", "fscache_", "erofs_", "__fscache_")


# An interrupt's entry: the frames after it in a stack are the context it
# interrupted, not the racing access's.
IRQ_ENTRY = re.compile(r"^asm_(sysvec_|common_interrupt|exc_)")


def kcsan_frames(lines, report):
    """The function names (and modules) of a report's frames; in a stack of
    an access "by interrupt", only those above the interrupt's entry."""
    start, end, _title = report
    frames = []
    in_irq = cut = False
    for line in lines[start:end + 1]:
        if re.search(r" by interrupt on cpu \d+:", line):
            in_irq, cut = True, False
            continue
        if re.search(r" by task \d+ on cpu \d+:", line):
            in_irq, cut = False, False
            continue
        for m in FRAME.finditer(line):
            if cut:
                continue
            if in_irq and IRQ_ENTRY.match(m.group(1)):
                cut = True
                continue
            frames.append((m.group(1), m.group(3)))
    return frames


def kcsan_harness(lines, report):
    """Whether a report is the harness' 9p I/O, not the on-demand path."""
    frames = kcsan_frames(lines, report)
    return (any(f.startswith(HARNESS_PREFIXES) for f, _ in frames)
            and not any(f.startswith(ONDEMAND_PREFIXES) or mod == MODULE for f, mod in frames))


def read_known(path):
    """A list of known reports: (first field, frame prefixes, reason) each.

    One report a line, tab-separated; blank lines and "#" comments skipped.
    """
    known = []
    try:
        text = open(path).read()
    except OSError:
        return known
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        first, frames, reason = line.split("\t", 2)
        known.append((first.strip(), [f for f in frames.split(",") if f], reason.strip()))
    return known


def kcsan_known(lines, report, known):
    """The reason of the known finding a report is, or None."""
    names = [f for f, _ in kcsan_frames(lines, report)]
    # A race of unknown origin names its one side with offsets
    # ("f+0xaf/0xf0"); the list names functions only.
    plain = re.sub(OFFSET, "", report[2])
    for title, prefixes, reason in known:
        if (plain == f"BUG: KCSAN: data-race in {title}"
                and all(any(n.startswith(p) for n in names) for p in prefixes)):
            return reason
    return None


LOCKDEP_TITLE = re.compile(r"WARNING: possible circular locking dependency detected")
LOCKDEP_CLASS = re.compile(r"\((\S+?)\)\{[^}]*\}-\{\d+:\d+\}")
TIMESTAMP = re.compile(r"^\[[ 0-9.]+\]\s?")


def lockdep_reports(lines):
    """The circular-dependency reports in the log: (first line, last line) each.

    A report runs from its "=====" rule to the "</TASK>" of its backtrace; one
    without that end is not returned (so it stays a splat).
    """
    reports = []
    for i, line in enumerate(lines):
        if not LOCKDEP_TITLE.search(line):
            continue
        start = i
        while start > 0 and i - start < 3 and TIMESTAMP.sub("", lines[start - 1]).strip("= ") == "":
            start -= 1
        for j in range(i + 1, min(len(lines), i + 400)):
            if "</TASK>" in lines[j]:
                reports.append((start, j))
                break
    return reports


def read_lockdep_known(path):
    """Known lockdep reports: (lock classes, frame prefixes, reason) each."""
    return [({c for c in classes.split(",") if c}, frames, reason)
            for classes, frames, reason in read_known(path)]


def lockdep_known(lines, report, known):
    """The reason of the known report a lockdep report is, or None."""
    text = lines[report[0]:report[1] + 1]
    classes = {re.sub(r"(#\d+|/\d+)+$", "", m.group(1))
               for line in text for m in LOCKDEP_CLASS.finditer(line)}
    names = [m.group(1) for line in text for m in FRAME.finditer(line)]
    for allowed, prefixes, reason in known:
        if (classes and classes <= allowed
                and all(any(n.startswith(p) for n in names) for p in prefixes)):
            return reason
    return None


def count_points(ktap):
    """Count leaf results: (passed, failed, skipped, failed names)."""
    passed = failed = skipped = 0
    failed_names = []
    lines = ktap.splitlines()
    # A top-level result is a leaf if no indented result precedes it since
    # the previous top-level result.
    sub_seen = False
    for line in lines:
        m = RESULT_RE.match(line)
        if not m:
            continue
        indent, verdict, _num, rest = m.groups()
        skip = "# SKIP" in rest
        if indent:
            sub_seen = True
            leaf = True
        else:
            leaf = not sub_seen
            sub_seen = False
            if not leaf and verdict == "not ok":
                # The program failed although its subtests may all have
                # passed (crash, timeout, bad exit): count that too.
                failed += 1
                failed_names.append(rest)
                continue
        if not leaf:
            continue
        if skip:
            skipped += 1
        elif verdict == "ok":
            passed += 1
        else:
            failed += 1
            failed_names.append(rest.strip())
    return passed, failed, skipped, failed_names


SUB_PLAN_RE = re.compile(r"^  1\.\.(\d+)$")
SUB_RESULT_RE = re.compile(r"^  (?:not ok|ok) \d+")
TOP_RESULT_RE = re.compile(r"^(not ok|ok) \d+ ?(.*)$")


def plan_mismatches(ktap):
    """Programs that passed but ran another number of points than planned.

    A program's own KTAP is indented once under the guest's; its plan may
    come first or last. Returns (name, planned, ran) for each top-level
    "ok" whose subtest has a plan its points do not match: a program that
    stopped early, or a plan not kept up with its points.
    """
    out = []
    plan, ran = None, 0
    for line in ktap.splitlines():
        m = SUB_PLAN_RE.match(line)
        if m:
            plan = int(m.group(1))
            continue
        if SUB_RESULT_RE.match(line):
            ran += 1
            continue
        m = TOP_RESULT_RE.match(line)
        if m:
            verdict, name = m.groups()
            if verdict == "ok" and plan is not None and plan != ran:
                out.append((name.strip(), plan, ran))
            plan, ran = None, 0
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--console", required=True)
    ap.add_argument("--ktap", required=True)
    ap.add_argument("--qemu-rc", type=int, default=0)
    ap.add_argument("--expect-splat", type=int, default=0)
    ap.add_argument("--name", default="run")
    ap.add_argument("--totals", help="write 'passed failed skipped' here")
    ap.add_argument("--kcsan-gate", help="file of symbols whose KCSAN reports fail the run")
    ap.add_argument("--kcsan-known", help="file of known KCSAN findings, listed not gated")
    ap.add_argument("--lockdep-known", help="file of known lockdep reports, listed not failed")
    ap.add_argument("--expect-lockdep-known", type=int, default=0,
                    help="self-test of the list: a known lockdep report must come")
    ap.add_argument("--expect-kcsan", metavar="SYM",
                    help="self-test of the gate: a report naming SYM must be gated when SYM "
                    "is added to the gate, and only listed when it is not")
    args = ap.parse_args()

    def read(path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    console = read(args.console)
    ktap = read(args.ktap)
    passed, failed, skipped, failed_names = count_points(ktap)

    finished = "cfod-guest: done" in ktap
    host = []
    host.append((finished and args.qemu_rc == 0,
                 f"{args.name}: guest ran to the end"
                 + ("" if finished else f" (qemu exit {args.qemu_rc}: timeout or crash)")))
    mismatched = plan_mismatches(ktap)
    host.append((not mismatched, f"{args.name}: every program ran the points it planned"
                 + "".join(f"; {n}: {r} of {p}" for n, p, r in mismatched)))
    lines = console.splitlines()
    skip, gated, listed = set(), [], []
    if args.kcsan_gate:
        gate = set(read(args.kcsan_gate).split())
        known = read_known(args.kcsan_known) if args.kcsan_known else []
        for report in kcsan_reports(lines):
            why = kcsan_known(lines, report, known)
            if why is None and kcsan_harness(lines, report):
                why = "harness I/O (9p), not the on-demand path"
            if why is None and kcsan_gated(lines, report, gate):
                gated.append(report)
            else:
                listed.append(report + ((why,) if why else ()))
                skip.update(range(report[0], report[1] + 1))
        host.append((not gated, f"{args.name}: no KCSAN report on the on-demand path "
                     f"({len(gated)} gated, {len(listed)} listed)"))
        if args.expect_kcsan:
            sym = args.expect_kcsan
            named = [r for r in kcsan_reports(lines) if sym in r[2]]
            host.append((bool(named) and all(kcsan_gated(lines, r, gate | {sym}) for r in named),
                         f"{args.name}: the gate fails the run on a real KCSAN report "
                         f"when {sym} is gated ({len(named)} reports name it)"))
            host.append((bool(named) and all(r in listed for r in named),
                         f"{args.name}: the same report is only listed when {sym} is not gated"))
    known_lockdep = []
    if args.lockdep_known:
        entries = read_lockdep_known(args.lockdep_known)
        for report in lockdep_reports(lines):
            why = lockdep_known(lines, report, entries)
            if why is not None:
                known_lockdep.append(report + (why,))
                skip.update(range(report[0], report[1] + 1))
    if args.expect_lockdep_known:
        host.append((bool(known_lockdep), f"{args.name}: the known lockdep report came and "
                     f"was recognised from the list ({len(known_lockdep)})"))
    lines, splats = find_splats(console, skip)
    if args.expect_splat:
        host.append((bool(splats), f"{args.name}: splat detector caught the provoked warning"))
    else:
        host.append((not splats, f"{args.name}: kernel log free of splats"))

    print(f"# host checks for {args.name}")
    for ok, what in host:
        print(f"{'ok' if ok else 'not ok'} - {what}")
        if ok:
            passed += 1
        else:
            failed += 1
            failed_names.append(what)

    for start, end, title, *why in listed:
        kind = (why[0] if why and why[0].startswith("harness") else
                f"known finding: {why[0]}" if why else "elsewhere, not gated")
        print(f"# KCSAN ({kind}), console lines {start + 1}-{end + 1}: {title}")
        if why and why[0].startswith("core"):
            print("\n".join("#   " + l for l in lines[start:end + 1]))
    for start, end, why in known_lockdep:
        print(f"# lockdep (known finding: {why}), console lines {start + 1}-{end + 1}; "
              "lockdep checked nothing after it in this boot:")
        print("\n".join("#   " + l for l in lines[start:end + 1]))
    for start, end, _title in gated:
        print(f"# KCSAN report on the on-demand path (console lines {start + 1}-{end + 1}):")
        for j in range(start, end + 1):
            print("#   " + lines[j])
    if splats and not args.expect_splat:
        print(f"# kernel splats in {args.console}:")
        shown = set()
        for i, _ in splats[:5]:
            for j in range(max(0, i - 3), min(len(lines), i + 25)):
                if j not in shown:
                    shown.add(j)
                    print("#   " + lines[j])
            print("#   ...")
    if failed_names:
        print("# failed: " + "; ".join(failed_names))
        print(f"# logs: {args.console} and the per-test logs beside it")
    tail = f", {skipped} skipped" if skipped else ""
    print(f"{args.name}: {passed} passed, {failed} failed{tail}")
    if args.totals:
        with open(args.totals, "w") as f:
            f.write(f"{passed} {failed} {skipped}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
