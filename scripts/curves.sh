#!/usr/bin/env bash
# The cost curves (issue #13, item 3; Documentation/benchmarks.md, "Cost
# curves"): per-request cost as the work grows, C beside Rust, on the bench
# kernel. Builds the module from a commit (HEAD by default) against the
# cached bench kernel, the guest tool (bench/curves.c) and the data, boots
# the bench kernel once under the icount plugin and runs bench/curves.sh
# there, then writes out/curves/results.json, the plots
# Documentation/curves-*.svg and the section of Documentation/benchmarks.md
# between the curves markers (scripts/curves-report.py).
#
#   scripts/curves.sh [--name cv1] [--reps N] [--no-plugin] [--smp N]
#                                     (the run goes to out/NAME, by default
#                                     out/curves-run: not out/curves, the
#                                     script's own work directory)
#   scripts/curves.sh --report "NAME..."   the report of finished runs
#                                     again, pooled (e.g. one run per curve)
#
# CURVES_REV=REV: the module's commit; CURVES_INFLIGHT, CURVES_OBJECTS,
# CURVES_FAIL_N, CURVES_FAIL_HOW: the points (defaults below; set to ""
# to leave a curve out).
set -euo pipefail
. "$(dirname "$0")/env.sh"
name=curves-run reps=2 plugin=1 smp=${SMP:-2} report=
while [ $# -gt 0 ]; do
	case "$1" in
	--name) name=$2; shift ;;
	--reps) reps=$2; shift ;;
	--no-plugin) plugin=0 ;;
	--smp) smp=$2; shift ;;
	--report) report=$2; shift ;;
	*) echo "curves: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
C=$CFOD_TOP/out/curves
doc() { # NAME...: the report of these runs, pooled
	runs=()
	for r in "$@"; do runs+=(--run "$CFOD_TOP/out/$r"); done
	python3 "$CFOD_TOP/scripts/curves-report.py" "${runs[@]}" \
		--json "$C/results-$(echo "$@" | tr ' ' +).json" \
		--doc "$CFOD_TOP/Documentation/benchmarks.md" --svg-dir "$CFOD_TOP/Documentation"
}
if [ -n "$report" ]; then
	# shellcheck disable=SC2086 # a list of run names
	doc $report
	exit 0
fi
kdir=$(kernel_build_dir bench)
[ -f "$kdir/vmlinux" ] || "$CFOD_TOP/scripts/build-kernel.sh" bench

# The module as committed (another edit of rust/ may be under way), built
# against the bench kernel in a copy of its own.
rev=$(git -C "$CFOD_TOP" rev-parse "${CURVES_REV:-HEAD}")
rm -rf "$C/module"
mkdir -p "$C/module" "$C/bin" "$C/plugin" "$C/data"
git -C "$CFOD_TOP" archive "$rev" Kbuild rust | tar -x -C "$C/module"
echo "$rev" >"$C/module/SOURCE"
make -s -C "$kdir" M="$C/module" "${KMAKE_ARGS[@]}" modules
ko=$C/module/cachefiles_ondemand_rs.ko

cflags=(-static -O2 -g -Wall -Wextra -Werror)
gcc "${cflags[@]}" -o "$C/bin/curves" "$CFOD_TOP/bench/curves.c" -lpthread
gcc "${cflags[@]}" -o "$C/bin/cfbench" "$CFOD_TOP/bench/cfbench.c" -lpthread

# The data: one uncompressed erofs image holding d.bin (8 MiB of random
# bytes: 2048 pages, as many distinct pages as a point reads at most),
# served for every fsid the guest mounts (o0, o1, ...).
stamp=$(sha256sum "$0" | cut -c1-16)
if [ "$(cat "$C/data/.stamp" 2>/dev/null)" != "$stamp" ]; then
	rm -rf "$C/data/tree"
	mkdir -p "$C/data/tree"
	python3 -c 'import random, sys
sys.stdout.buffer.write(random.Random(20261203).randbytes(8 << 20))' >"$C/data/tree/d.bin"
	mkfs.erofs --quiet -T0 --all-root "$C/data/blob.img" "$C/data/tree" >/dev/null
	rm -rf "$C/data/tree"
	echo "$stamp" >"$C/data/.stamp"
fi

# The plugin's ranges, as scripts/icount.sh makes them.
so=$("$CFOD_TOP/scripts/build-plugin.sh")
python3 "$CFOD_TOP/bench/plugin/icount-ranges.py" "$kdir" >"$C/plugin/vmlinux.ranges"
"$CFOD_TOP/bench/plugin/module-syms.sh" "$ko" >"$C/plugin/rs-text.syms"

cat >"$C/config" <<EOF
# written by scripts/curves.sh, read by bench/curves.sh
REPS=$reps
ICOUNT=$plugin
INFLIGHT="${CURVES_INFLIGHT-1 8 64 256 1024}"
INFLIGHT_READS=256
OBJECTS="${CURVES_OBJECTS-1 64 256 1024 4096}"
OBJ_THREADS=8
OBJ_ROUNDS=16
FAIL_N="${CURVES_FAIL_N-64 256 1024}"
FAIL_HOW="${CURVES_FAIL_HOW-death kill}"
POINT_TIMEOUT=${CURVES_POINT_TIMEOUT:-900}
EOF
tsc_khz=$("$C/bin/cfbench" tsc-khz)
run=$CFOD_TOP/out/$name
plug=()
[ "$plugin" = 0 ] || plug=("VM_PLUGIN=$so,ranges=$C/raw/ranges,out=$run/icount.txt")
rc=0
env "${plug[@]}" "$CFOD_TOP/scripts/vm-run.sh" --kind bench --backend c --name "$name" \
	--tests ../bench/curves.sh --smp "$smp" --ko "out/curves/module/cachefiles_ondemand_rs.ko" \
	--append "tsc_early_khz=$tsc_khz tsc=reliable" --timeout 5400 --test-timeout 5300 || rc=$?
# Keep the guest's raw output with the run (out/curves/raw is the next run's).
mkdir -p "$run"
cp -r "$C/raw" "$run/raw" || rc=1
cp "$C/module/SOURCE" "$run/module-source"
cp "$C/config" "$run/config"
doc "$name" || rc=1
exit $rc
