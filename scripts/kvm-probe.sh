#!/usr/bin/env bash
# Print "yes" if QEMU can run a guest with KVM here, else "no". The answer is
# cached per host kernel and QEMU version: on these machines /dev/kvm exists
# but is a nested host that cannot run a vanilla guest, so never assume.
set -uo pipefail
. "$(dirname "$0")/env.sh"
[ "${CFOD_NO_KVM:-0}" = 1 ] && { echo no; exit 0; }
[ -w /dev/kvm ] || { echo no; exit 0; }
key="$(uname -r)-$(qemu-system-x86_64 --version | head -n1 | tr -c 'a-zA-Z0-9.\n' _)"
cache=$CFOD_CACHE/kvm-probe-$key
[ -f "$cache" ] && { cat "$cache"; exit 0; }
kdir=$(kernel_build_dir test)
[ -f "$kdir/arch/x86/boot/bzImage" ] || kdir=$(kernel_build_dir bench)
[ -f "$kdir/arch/x86/boot/bzImage" ] || { echo no; exit 0; }
tmp=$(mktemp -d)
"$CFOD_TOP/scripts/mkinitramfs.sh" "$tmp/i.cpio.gz"
timeout -s KILL 30 qemu-system-x86_64 -nodefaults -display none -no-reboot \
	-accel kvm -cpu host -smp 1 -m 512M -kernel "$kdir/arch/x86/boot/bzImage" \
	-initrd "$tmp/i.cpio.gz" -append "console=ttyS0 panic=-1" \
	-serial "file:$tmp/c.log" >/dev/null 2>&1 </dev/null &
wait $! 2>/dev/null
if grep -q "Run /init as init process" "$tmp/c.log" 2>/dev/null; then ans=yes; else ans=no; fi
rm -rf "$tmp"
mkdir -p "$CFOD_CACHE" && echo "$ans" >"$cache"
echo "$ans"
