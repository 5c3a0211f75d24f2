#!/usr/bin/env bash
# The benchmarks (issue #7), from a fresh machine: set-up, the bench kernel
# (no debug options; cached), the module built against it, the guest tools,
# the data, one boot that runs every workload for the C backend, the Rust
# backend (each with the tests' od-serve and with the project's daemon, odd)
# and the two references (erofs file-backed, squashfuse), then the
# report: out/bench/results.json, the table in Documentation/benchmarks.md
# and the plot Documentation/benchmarks-latency.svg.
#   scripts/bench.sh            (make bench)
#   BENCH_REPS=N scripts/bench.sh   repetitions (default 11)
#   BENCH_REV=HEAD scripts/bench.sh   the module as committed, not the working tree
#   BENCH_CONFIGS="c odd-c" scripts/bench.sh   some of the configurations
#                               (default: c rust odd-c odd-rust file fuse)
#   BENCH_WORKLOADS="seq xseq" scripts/bench.sh   some of the workloads
#                               (default: seq rand par rps ttfb xseq xpar)
#   BENCH_ODD_THREADS=N BENCH_ODD_READ_EXTENT=BYTES   odd's --threads (4) and
#                               --read-extent (1M) in odd-c and odd-rust
#   BENCH_ODD_INLINE_MAX=BYTES   odd's --inline-max (128K; 0: every request
#                               goes to a worker)
#   BENCH_RS_STATS=1 scripts/bench.sh   the Rust module counts requests (off by
#                               default); out/bench/raw/stats, results.json
#   BENCH_KIND=test scripts/bench.sh   on the debug kernel (a functional trial:
#                               its numbers mean nothing)
#   scripts/bench.sh --report   only redo the report from out/bench/raw
#                               (and out/bench/icount)
# After the timed boot, a second boot of the same kernel under the icount
# plugin (bench/plugin/icount.c) runs the on-demand workloads again, on C
# and Rust served by od-serve and by odd, and counts the guest instructions
# of each run (out/bench/icount; Documentation/benchmarks.md, "Instruction
# counts (QEMU plugin)"):
#   BENCH_ICOUNT_REPS=N scripts/bench.sh   its repetitions (default 3; 0: no such boot)
#   scripts/bench.sh --icount   only that boot (then the report if out/bench/raw exists)
#   BENCH_NAME=N scripts/bench.sh   the VMs' names, N-run and N-icount (default bench)
#   BENCH_ICOUNT_BLOCKS="PATTERN..." scripts/bench.sh --icount   the module's
#                               functions matching a pattern counted per basic
#                               block (bench/plugin/module-blocks.py), for
#                               scripts/icount-blocks.py; an analysis, not a table
set -euo pipefail
. "$(dirname "$0")/env.sh"
B=$CFOD_TOP/out/bench
report() {
	/usr/bin/python3 "$CFOD_TOP/scripts/bench-report.py" --raw "$B/raw" --vm-log "$B/vm.log" \
		--json "$B/results.json" --doc "$CFOD_TOP/Documentation/benchmarks.md" \
		--plot "$CFOD_TOP/Documentation/benchmarks-latency.svg" --icount "$B/icount"
}
profile=0 icount_only=0
case "${1:-}" in
--report) report; exit 0 ;;
--icount) icount_only=1 ;;
# C and Rust only, the random-read workloads under perf (out/bench/profile)
--profile) profile=1 ;;
esac
start=$SECONDS

"$CFOD_TOP/scripts/setup.sh"
kind=${BENCH_KIND:-bench}
"$CFOD_TOP/scripts/build-kernel.sh" "$kind"
kdir=$(kernel_build_dir "$kind")

# The module, built against the bench kernel in a copy of the sources, so
# that the test kernel's module at the top of the tree stays as it is. The
# copy is of the working tree, or of commit $BENCH_REV if set.
rm -rf "$B/module"
mkdir -p "$B/module" "$B/bin"
if [ -n "${BENCH_REV:-}" ]; then
	git -C "$CFOD_TOP" archive "$BENCH_REV" Kbuild rust | tar -x -C "$B/module"
	echo "module source: $(git -C "$CFOD_TOP" rev-parse "$BENCH_REV")" >"$B/module/SOURCE"
else
	cp -a "$CFOD_TOP/Kbuild" "$CFOD_TOP/rust" "$B/module/"
	echo "module source: working tree of $(git -C "$CFOD_TOP" describe --always --dirty)" >"$B/module/SOURCE"
fi
make -s -C "$kdir" M="$B/module" "${KMAKE_ARGS[@]}" modules
echo "bench: module $B/module/cachefiles_ondemand_rs.ko"

# Guest tools, static: the I/O patterns and the daemon the tests use.
cflags=(-static -O2 -g -Wall -Wextra -Werror)
gcc "${cflags[@]}" -o "$B/bin/cfbench" "$CFOD_TOP/bench/cfbench.c" -lpthread
gcc "${cflags[@]}" -Wno-unused-parameter -o "$B/bin/od-serve" "$CFOD_TOP/tests/tools/od-serve.c"
# odd, static, from the working tree (configurations odd-c and odd-rust)
odd=$(JOBS=$(nproc) "$CFOD_TOP/daemon/build-static.sh")
cp "$odd" "$B/bin/odd"

# squashfuse from Debian with its shared libraries and loader, for a guest
# that has none.
rm -rf "$B/fuse"
mkdir -p "$B/fuse/lib"
sqf=$(command -v squashfuse)
cp "$sqf" "$B/fuse/squashfuse"
ldd "$sqf" | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | while read -r lib; do
	cp -L "$lib" "$B/fuse/lib/"
done
[ -f "$B/fuse/lib/ld-linux-x86-64.so.2" ] || { echo "bench: no loader for squashfuse" >&2; exit 1; }

"$CFOD_TOP/scripts/mkbench-data.sh"

if [ $profile = 1 ]; then
	# Debian's perf (linux-perf) with its libraries, like squashfuse.
	rm -rf "$B/perf"
	mkdir -p "$B/perf/lib"
	cp -L "$(command -v perf)" "$B/perf/perf"
	ldd "$B/perf/perf" | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | while read -r lib; do
		cp -L "$lib" "$B/perf/lib/"
	done
fi

cat >"$B/config" <<EOF
# written by scripts/bench.sh, read by bench/guest.sh
REPS=${BENCH_REPS:-11}
CONFIGS="${BENCH_CONFIGS:-c rust odd-c odd-rust file fuse}"
ODD_THREADS=${BENCH_ODD_THREADS:-4}
ODD_READ_EXTENT=${BENCH_ODD_READ_EXTENT:-1M}
ODD_INLINE_MAX=${BENCH_ODD_INLINE_MAX:-128K}
EOF
[ -z "${BENCH_WORKLOADS:-}" ] || echo "WORKLOADS=\"$BENCH_WORKLOADS\"" >>"$B/config"
[ $profile = 0 ] || cat >>"$B/config" <<EOF
PROFILE=1
REPS=${BENCH_REPS:-1}
CONFIGS="c rust"
WORKLOADS="rand rps"
RAW_DIR=profile
EOF
cat >>"$B/config" <<EOF
KO=/host/out/bench/module/cachefiles_ondemand_rs.ko
NBLOBS=64
RAND_COUNT=4096
RPS_THREADS=8
RPS_COUNT=8192
PAR_READERS=8
RS_STATS=${BENCH_RS_STATS:-0}
EOF

# The guest's clock: under TCG its TSC runs at the host's rate, but the
# kernel finds nothing to calibrate it against and falls back to jiffies
# (milliseconds). Tell it the rate; the guest checks that it uses the TSC.
tsc_khz=$("$B/bin/cfbench" tsc-khz)
echo "bench: set-up and builds took $(( SECONDS - start ))s; booting (TSC $tsc_khz kHz)"
vmrc=0 icrc=0
if [ $profile = 1 ]; then
	"$CFOD_TOP/scripts/vm-run.sh" --kind "$kind" --backend c --name bench-profile \
		--tests ../bench/guest.sh --timeout 3600 --test-timeout 3300 \
		--append "tsc_early_khz=$tsc_khz tsc=reliable" --disk "$B/data/disk.img"
	echo "bench: profiles in out/bench/profile/perf-*.txt"
	exit 0
fi
[ $icount_only = 1 ] ||
"$CFOD_TOP/scripts/vm-run.sh" --kind "$kind" --backend c --name "${BENCH_NAME:-bench}-run" \
	--tests ../bench/guest.sh --timeout 3600 --test-timeout 3300 \
	--append "tsc_early_khz=$tsc_khz tsc=reliable" --disk "$B/data/disk.img" 2>&1 |
	tee "$B/vm.log" || vmrc=$?

# The instruction counts: a boot of its own, so that the plugin's cost
# never touches the timed figures. The ranges of vmlinux (the VM boots with
# nokaslr) and the module's functions as "OFFSET SIZE NAME" (hex) in its
# .text, to which the guest adds the load address (bench/guest.sh,
# icount_ranges); the plugin's lines go to out/NAME-icount/icount.txt and
# are copied beside the guest's marks and results in out/bench/icount.
icount_reps=${BENCH_ICOUNT_REPS:-3}
if [ "$icount_reps" -gt 0 ]; then
	so=$("$CFOD_TOP/scripts/build-plugin.sh")
	ko=$B/module/cachefiles_ondemand_rs.ko
	rm -rf "$B/plugin" "$B/icount"
	mkdir -p "$B/plugin"
	python3 "$CFOD_TOP/bench/plugin/icount-ranges.py" "$kdir" >"$B/plugin/vmlinux.ranges"
	"$CFOD_TOP/bench/plugin/module-syms.sh" "$ko" >"$B/plugin/rs-text.syms"
	# Analysis only: the module's functions that match a pattern of
	# BENCH_ICOUNT_BLOCKS counted block by block (scripts/icount-blocks.py
	# prints them). The plugin's 1024 labels leave no room for vmlinux's
	# Rust functions one by one: they share one label, which keeps every
	# total as it is.
	if [ -n "${BENCH_ICOUNT_BLOCKS:-}" ]; then
		sed -i 's/ rust_kernel:.*/ rust_kernel:all/' "$B/plugin/vmlinux.ranges"
		# shellcheck disable=SC2086
		python3 "$CFOD_TOP/bench/plugin/module-blocks.py" "$ko" "$B/plugin/rs-text.syms" \
			$BENCH_ICOUNT_BLOCKS >"$B/plugin/rs-text.blocks"
		mv "$B/plugin/rs-text.blocks" "$B/plugin/rs-text.syms"
	fi
	# The same guest driver, the four on-demand configurations (od-serve and
	# odd on each backend; BENCH_ICOUNT_CONFIGS), marks around every run,
	# results in out/bench/icount.
	cat >>"$B/config" <<EOF
# the instruction-count boot
ICOUNT=1
REPS=$icount_reps
CONFIGS="${BENCH_ICOUNT_CONFIGS:-c rust odd-c odd-rust}"
RAW_DIR=icount
EOF
	echo "bench: instruction counts, $icount_reps repetitions"
	icname=${BENCH_NAME:-bench}-icount
	VM_PLUGIN="$so,ranges=$B/icount/ranges,out=$CFOD_TOP/out/$icname/icount.txt" \
	"$CFOD_TOP/scripts/vm-run.sh" --kind "$kind" --backend c --name "$icname" \
		--tests ../bench/guest.sh --timeout 3600 --test-timeout 3300 \
		--append "tsc_early_khz=$tsc_khz tsc=reliable" --disk "$B/data/disk.img" 2>&1 |
		tee "$B/icount-vm.log" || icrc=$?
	cp "$CFOD_TOP/out/$icname/icount.txt" "$B/icount/" || icrc=1
fi
if [ -f "$B/raw/results.txt" ]; then
	report
else
	/usr/bin/python3 "$CFOD_TOP/scripts/bench-report.py" --icount "$B/icount" --icount-only
fi
echo "bench: done in $(( SECONDS - start ))s (guest logs: out/${BENCH_NAME:-bench}-run/, out/${BENCH_NAME:-bench}-icount/)"
[ $vmrc != 0 ] || vmrc=$icrc
exit $vmrc
