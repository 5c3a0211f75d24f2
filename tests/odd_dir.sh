#!/bin/sh
# odd serving blobs from a directory: mount, read every file, compare.
. "$T/lib/ktap.sh"
. "$T/lib/odd.sh"
DATA=/host/out/data
ktap_plan 5
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
# Its one source is local, so the devnode thread served every OPEN itself
# (--inline-max, default 128K): its exit statistics count them.
served_inline() {
	_rq=$(grep '^ *requests: total=' /tmp/odd-dir.err | tail -n 1)
	_open=$(echo "$_rq" | sed -n 's/.* open=\([0-9]*\).*/\1/p')
	_inl=$(echo "$_rq" | sed -n 's/.* inline=\([0-9]*\).*/\1/p')
	ktap_diag "OPENs $_open, served on the devnode thread $_inl"
	[ -n "$_open" ] && [ "$_open" -ge 1 ] && [ -n "$_inl" ] && [ "$_inl" -ge "$_open" ]
}
ktap_check "the OPENs were served on the devnode thread (inline >= open >= 1)" served_inline
tail -n 8 /tmp/odd-dir.err | sed "s/^/# /"
ktap_finish
