#!/usr/bin/env bash
# Build the guest's initramfs: busybox and an init script, nothing else.
# Tests, modules and data come over virtio-9p, so this stays tiny.
#   scripts/mkinitramfs.sh OUT.cpio.gz
set -euo pipefail
. "$(dirname "$0")/env.sh"
out=${1:?usage: mkinitramfs.sh OUT}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"	# mktemp -d makes it 0700: non-root could not reach /
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,etc,root,usr/bin,usr/sbin}
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
install -m 0755 "$CFOD_TOP/tests/guest/init" "$root/init"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
echo "nobody:x:65534:65534:nobody:/:/bin/sh" >>"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
