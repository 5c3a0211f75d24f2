#!/usr/bin/env bash
# Boot the built kernel under QEMU and run tests inside the guest.
#
#   scripts/vm-run.sh [--kind test|bench] [--backend c|rust] [--tests "a b"]
#                     [--name NAME] [--timeout SECONDS] [--expect-splat]
#                     [--append "KERNEL PARAMS"] [--disk IMAGE]
#
# Prints the guest's KTAP as it comes, then host-side test points (the guest
# finished, the kernel log is free of splats) and the closing line
# "N passed, N failed". Exits non-zero on any failure, a guest timeout, or a
# splat. Logs stay under out/NAME/: console.log (the guest's kernel log),
# ktap.log, and one log per test in results/.
set -euo pipefail
. "$(dirname "$0")/env.sh"

kind=test backend=c tests=all name= timeout=2400 expect_splat=0 test_timeout=420
extra_append= extra_disk=()
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
append="console=ttyS0,115200 panic=-1 nokaslr rcupdate.rcu_cpu_stall_timeout=60"
append+=" cfod.backend=$backend cfod.tests=$tests cfod.timeout=$test_timeout"
append+=" cfod.results=out/$name/results"
[ -z "$extra_append" ] || append+=" $extra_append"
echo "# vm-run: kernel $kind, backend $backend, accel $accel, tests $tests"
: >"$out/ktap.log"
qemu_cmd=(qemu-system-x86_64 -nodefaults -no-user-config -display none
	-no-reboot -accel "$accel" -cpu max,-la57 -smp 2 -m 3G
	-kernel "$bz" -initrd "$out/initramfs.cpio.gz" -append "$append"
	-drive "file=$out/cache.img,if=virtio,format=raw,cache=unsafe"
	"${extra_disk[@]}"
	-virtfs "local,path=$CFOD_TOP,mount_tag=cfod,security_model=none,id=cfod"
	-serial "file:$out/console.log" -serial "file:$out/ktap.log")
start=$SECONDS
timeout -s KILL "$timeout" "${qemu_cmd[@]}" &
qpid=$!
tail -n +1 -F "$out/ktap.log" --pid=$qpid 2>/dev/null &
tpid=$!
qrc=0
wait $qpid || qrc=$?
sleep 0.5
kill $tpid 2>/dev/null || true
wait $tpid 2>/dev/null || true
echo "# vm-run: guest ran for $(( SECONDS - start ))s (qemu exit $qrc)"

python3 "$CFOD_TOP/scripts/ktap-summary.py" --console "$out/console.log" \
	--ktap "$out/ktap.log" --qemu-rc "$qrc" --expect-splat "$expect_splat" \
	--name "$name" --totals "$out/totals"
