#!/usr/bin/env bash
# Boot the built kernel under QEMU and run tests inside the guest.
#
#   scripts/vm-run.sh [--kind test|race|bench] [--backend c|rust] [--tests "a b"]
#                     [--name NAME] [--timeout SECONDS] [--expect-splat]
#                     [--append "KERNEL PARAMS"] [--disk IMAGE] [--smp N]
#                     [--ko PATH-IN-REPO] [--expect-kcsan SYMBOL]
#                     [--expect-lockdep-known]
#
# The guest gets SMP vCPUs (default 2; QEMU's multi-threaded TCG runs each on
# a host thread of its own) and the test checks it brought up every one. The
# Rust module is the one built for the kind: the top of the tree's for test,
# out/modules/KIND/ for the others (scripts/build-module.sh builds both), or
# the one --ko names (a path inside the repository, e.g. an older build).
#
# Prints the guest's KTAP as it comes, then host-side test points (the guest
# finished, the kernel log is free of splats) and the closing line
# "N passed, N failed". Exits non-zero on any failure, a guest timeout, or a
# splat. Logs stay under out/NAME/: console.log (the guest's kernel log),
# ktap.log, and one log per test in results/.
set -euo pipefail
. "$(dirname "$0")/env.sh"

kind=test backend=c tests=all name= timeout=2400 expect_splat=0 test_timeout=420
extra_append= extra_disk=() smp=${SMP:-2} ko= expect_kcsan= expect_lockdep_known=0
while [ $# -gt 0 ]; do
	case "$1" in
	--kind) kind=$2; shift ;;
	--backend) backend=$2; shift ;;
	--tests) tests=$2; shift ;;
	--name) name=$2; shift ;;
	--timeout) timeout=$2; shift ;;
	--test-timeout) test_timeout=$2; shift ;;
	--expect-splat) expect_splat=1 ;;
	--append) extra_append=$2; shift ;;
	--smp) smp=$2; shift ;;
	--ko) ko=$2; shift ;;
	# the gate's self-test (race kernel): a KCSAN report naming SYM is expected
	--expect-kcsan) expect_kcsan=$2; shift ;;
	# the known-lockdep list's self-test: a report it lists is expected
	--expect-lockdep-known) expect_lockdep_known=1 ;;
	# a read-only raw disk after the cache disk (/dev/vdb in the guest)
	--disk) extra_disk=(-drive "file=$2,if=virtio,format=raw,readonly=on"); shift ;;
	*) echo "vm-run: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
name=${name:-$kind-$backend}
kdir=$(kernel_build_dir "$kind")
bz=$kdir/arch/x86/boot/bzImage
[ -f "$bz" ] || { echo "vm-run: no kernel at $bz (run scripts/build-kernel.sh $kind)" >&2; exit 2; }

out=$CFOD_TOP/out/$name
rm -rf "$out"
mkdir -p "$out/results"
"$CFOD_TOP/scripts/mkinitramfs.sh" "$out/initramfs.cpio.gz"
truncate -s 1G "$out/cache.img"
mkfs.ext4 -q -F -E lazy_itable_init=0 "$out/cache.img"

accel=tcg
if [ "$("$CFOD_TOP/scripts/kvm-probe.sh")" = yes ]; then accel=kvm; fi

tests=${tests// /,}
# acpi=noirq: ACPI enumerates the vCPUs, but its PCI interrupt routing
# leaves virtio's interrupts undelivered on these kernels (the boot hangs
# in the cache disk's partition scan); the PIRQ router routes them.
append="console=ttyS0,115200 panic=-1 nokaslr rcupdate.rcu_cpu_stall_timeout=60 acpi=noirq"
append+=" cfod.backend=$backend cfod.tests=$tests cfod.timeout=$test_timeout"
append+=" cfod.results=out/$name/results cfod.smp=$smp"
if [ -z "$ko" ]; then
	ko=cachefiles_ondemand_rs.ko
	[ "$kind" = test ] || ko=out/modules/$kind/cachefiles_ondemand_rs.ko
fi
append+=" cfod.ko=$ko"
# The race kernel watches one access in KCSAN_SKIP_WATCH (its built-in
# 4000 leaves short tests almost unwatched; 500 costs little under TCG).
[ "$kind" != race ] || append+=" kcsan.skip_watch=${KCSAN_SKIP_WATCH:-500}"
[ -z "$extra_append" ] || append+=" $extra_append"
echo "# vm-run: kernel $kind, backend $backend, accel $accel, $smp vCPUs, tests $tests"
: >"$out/ktap.log"
qemu_cmd=(qemu-system-x86_64 -nodefaults -no-user-config -display none
	-no-reboot -accel "$accel" -cpu max,-la57 -smp "$smp" -m 3G
	-kernel "$bz" -initrd "$out/initramfs.cpio.gz" -append "$append"
	-drive "file=$out/cache.img,if=virtio,format=raw,cache=unsafe"
	"${extra_disk[@]}"
	-virtfs "local,path=$CFOD_TOP,mount_tag=cfod,security_model=none,id=cfod"
	-serial "file:$out/console.log" -serial "file:$out/ktap.log")
# Opt in: a TCG plugin, VM_PLUGIN="PATH.so[,ARG=VALUE...]" (scripts/icount.sh
# passes the instruction counter, bench/plugin/icount.c).
[ -z "${VM_PLUGIN:-}" ] || qemu_cmd+=(-plugin "$VM_PLUGIN")
# At most VM_SLOTS guests at once on this machine (default 2, one per
# core): more only slow every guest down until tests time out. A guest
# waits here for a free slot; the slot's lock is held by this script's
# fd 9 until it exits.
slots=${VM_SLOTS:-2}
waited=$SECONDS
while :; do
	got=
	for i in $(seq 1 "$slots"); do
		exec 9>"$CFOD_CACHE/.vm-slot-$i"
		if flock -n 9; then got=$i; break; fi
		exec 9>&-
	done
	[ -n "$got" ] && break
	sleep 2
done
[ $((SECONDS - waited)) -lt 2 ] || echo "# vm-run: waited $((SECONDS - waited))s for a VM slot"
# The host CPU the guest used (its QEMU's user and system time, from the
# children this script has waited for), beside its wall-clock time.
child_ticks() { awk '{print $16 + $17}' /proc/$$/stat; }
ticks0=$(child_ticks)
start=$SECONDS
# A guest whose kernel died before it ran /init (no test ran, nothing of
# the project's loaded) is booted once more: once in many hundreds of
# boots the test kernel took an interrupt on an I/O APIC pin while it was
# still setting the pin up, 0.06 s into the boot (KASAN null-ptr-deref in
# mask_ioapic_irq from setup_IO_APIC, run cc13). That boot's console is
# kept as console-boot1.log and its first lines of trouble are printed;
# a crash after /init started is never retried.
for attempt in 1 2; do
	: >"$out/ktap.log"
	timeout -s KILL "$timeout" "${qemu_cmd[@]}" &
	qpid=$!
	tail -n +1 -F "$out/ktap.log" --pid=$qpid 2>/dev/null &
	tpid=$!
	qrc=0
	wait $qpid || qrc=$?
	sleep 0.5
	kill $tpid 2>/dev/null || true
	wait $tpid 2>/dev/null || true
	[ "$attempt" = 1 ] && [ ! -s "$out/ktap.log" ] &&
		! grep -q 'Run /init as init process' "$out/console.log" || break
	mv "$out/console.log" "$out/console-boot1.log"
	echo "# vm-run: the kernel died before /init (qemu exit $qrc); booting again. First lines of trouble:"
	grep -m 3 -E 'BUG:|Oops|panic|WARNING:' "$out/console-boot1.log" | sed 's/^/#   /'
done
cpu_s=$(( ($(child_ticks) - ticks0) / $(getconf CLK_TCK) ))
echo "# vm-run: guest ran for $(( SECONDS - start ))s (qemu exit $qrc; host CPU ${cpu_s}s)"

# On the race kernel, a KCSAN report fails the run only if it touches the
# on-demand path: the module, or a function of these directories.
gate=()
if [ "$kind" = race ]; then
	find "$kdir/fs/cachefiles" "$kdir/fs/netfs" "$kdir/fs/erofs" -name '*.o' \
		! -name '*.mod.o' -print0 | xargs -0 llvm-nm-19 --defined-only -j 2>/dev/null |
		sort -u >"$out/kcsan-gate.syms"
	gate=(--kcsan-gate "$out/kcsan-gate.syms" --kcsan-known "$CFOD_TOP/tests/kcsan-known.txt")
	[ -z "$expect_kcsan" ] || gate+=(--expect-kcsan "$expect_kcsan")
fi
# Every kind: lockdep reports that tests/lockdep-known.txt lists are printed,
# marked, and do not fail the run.
gate+=(--lockdep-known "$CFOD_TOP/tests/lockdep-known.txt" --expect-lockdep-known "$expect_lockdep_known")
python3 "$CFOD_TOP/scripts/ktap-summary.py" "${gate[@]}" --console "$out/console.log" \
	--ktap "$out/ktap.log" --qemu-rc "$qrc" --expect-splat "$expect_splat" \
	--name "$name" --totals "$out/totals"
