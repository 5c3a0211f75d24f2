#!/bin/sh
# odd serving blobs from a directory: mount, read every file, compare.
. "$T/lib/ktap.sh"
. "$T/lib/odd.sh"
DATA=/host/out/data
ktap_plan 4
backend_setup || exit 1
mkdir -p /mnt/odd
rm -rf /cache/odd-dir && mkdir -p /cache/odd-dir
"$BIN/odd" serve --dir /cache/odd-dir --source "dir:$DATA/blobs" 2>/tmp/odd-dir.err &
pid=$!
ktap_check "odd bound the cache" wait_bound
ktap_check "mount" mount -t erofs none -o fsid=simple.img /mnt/odd
ktap_check "every file identical to the tree (names, MD5s)" same_tree /mnt/odd
umount /mnt/odd
ktap_check "odd stops cleanly on SIGTERM" stop $pid
tail -n 8 /tmp/odd-dir.err | sed "s/^/# /"
ktap_finish
