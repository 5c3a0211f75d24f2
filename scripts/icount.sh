#!/usr/bin/env bash
# Count the guest instructions of the on-demand path on both backends
# (Documentation/benchmarks.md, "Instruction counts"): boots the cached
# test kernel (or, with --kind bench, the bench kernel: no debug options)
# once under QEMU with the icount plugin and runs tests/icount_probe.sh,
# then prints the counts per phase and per request.
#
#   scripts/icount.sh [--name NAME] [--reps N] [--smp N] [--kind test|bench]
#   scripts/icount.sh --report NAME	# the report of a finished run again
set -euo pipefail
. "$(dirname "$0")/env.sh"
name=icount reps=5 smp=${SMP:-2} report= kind=test
while [ $# -gt 0 ]; do
	case "$1" in
	--name) name=$2; shift ;;
	--reps) reps=$2; shift ;;
	--smp) smp=$2; shift ;;
	--kind) kind=$2; shift ;;
	--report) report=$2; shift ;;
	*) echo "icount: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
if [ -n "$report" ]; then
	exec python3 "$CFOD_TOP/bench/plugin/icount-report.py" "$CFOD_TOP/out/$report"
fi
kdir=$(kernel_build_dir "$kind")
ko=$CFOD_TOP/cachefiles_ondemand_rs.ko
[ "$kind" = test ] || ko=$CFOD_TOP/out/modules/$kind/cachefiles_ondemand_rs.ko
[ -f "$kdir/vmlinux" ] || { echo "icount: no $kind kernel (scripts/build-kernel.sh $kind)" >&2; exit 2; }
[ -f "$ko" ] || { echo "icount: no module at $ko (scripts/build-module.sh $kdir)" >&2; exit 2; }
[ -f "$CFOD_TOP/out/data/blobs/simple.img" ] || "$CFOD_TOP/scripts/mkdata.sh"
so=$("$CFOD_TOP/scripts/build-plugin.sh")
bin=$CFOD_TOP/out/bin
[ -x "$bin/od-serve" ] || gcc -static -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
	-o "$bin/od-serve" "$CFOD_TOP/tests/tools/od-serve.c"
if [ ! -x "$bin/cfbench" ] || [ "$CFOD_TOP/bench/cfbench.c" -nt "$bin/cfbench" ]; then
	gcc -static -O2 -g -Wall -Wextra -Werror -o "$bin/cfbench" "$CFOD_TOP/bench/cfbench.c" -lpthread
fi
# The ranges of vmlinux (the VM boots with nokaslr), and the module's
# functions in its .text as "OFFSET SIZE NAME" (hex), to which the guest
# adds the load address of the .text.
ic=$CFOD_TOP/out/icount
mkdir -p "$ic"
python3 "$CFOD_TOP/bench/plugin/icount-ranges.py" "$kdir" >"$ic/vmlinux.ranges"
"$CFOD_TOP/bench/plugin/module-syms.sh" "$ko" >"$ic/rs-text.syms"
out=$CFOD_TOP/out/$name
VM_PLUGIN="$so,ranges=$out/ranges,out=$out/icount.txt" \
	"$CFOD_TOP/scripts/vm-run.sh" --kind "$kind" --backend c --tests icount_probe.sh \
	--name "$name" --smp "$smp" --append "icount.reps=$reps" \
	--timeout 3600 --test-timeout 3300
python3 "$CFOD_TOP/bench/plugin/icount-report.py" "$out"
