#!/bin/sh
# odd serving blobs from a directory: mount, read every file, compare.
# Three times: from the blobs on 9p (the host's out/data), read into a
# buffer; from a copy of them on ext4, written from their mappings (the
# default on local filesystems); and from that copy with --no-map.
. "$T/lib/ktap.sh"
. "$T/lib/odd.sh"
DATA=/host/out/data
ktap_plan 16
backend_setup || exit 1
mkdir -p /mnt/odd
# serve_tree LOG BLOBS [ODD-ARGS...]: odd on a fresh cache, serving the
# directory BLOBS, the tree mounted, read and compared, odd stopped; its
# exit statistics go to LOG.
serve_tree() {
	_log=$1 _blobs=$2
	shift 2
	rm -rf /cache/odd-dir && mkdir -p /cache/odd-dir
	"$BIN/odd" serve --dir /cache/odd-dir --source "dir:$_blobs" "$@" 2>"$_log" &
	pid=$!
	_what="odd (dir:$_blobs)"
	[ $# = 0 ] || _what="odd $* (dir:$_blobs)"
	ktap_check "$_what bound the cache" wait_bound
	ktap_check "$_what: mount" mount -t erofs none -o fsid=simple.img /mnt/odd
	ktap_check "$_what: every file identical to the tree (names, MD5s)" same_tree /mnt/odd
	umount /mnt/odd
	ktap_check "$_what stops cleanly on SIGTERM" stop $pid
}
# data_stat LOG FIELD: a count from the exit statistics' "data:" line
data_stat() { sed -n "s/^ *data:.* $2=\([0-9]*\).*/\1/p" "$1" | tail -n 1; }
# mapped_bytes LOG all|none: bytes were written, and all or none of them
# from a mapping of the blob file
mapped_bytes() {
	_w=$(data_stat "$1" bytes-written) _m=$(data_stat "$1" mapped-bytes)
	ktap_diag "bytes written $_w, from a mapping $_m"
	[ -n "$_w" ] && [ "$_w" -gt 0 ] && [ -n "$_m" ] || return 1
	case $2 in
	all) [ "$_m" = "$_w" ] ;;
	none) [ "$_m" = 0 ] ;;
	esac
}
serve_tree /tmp/odd-dir.err "$DATA/blobs"
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
ktap_check "blobs on 9p: no byte went to the cache from a mapping" \
	mapped_bytes /tmp/odd-dir.err none
tail -n 8 /tmp/odd-dir.err | sed "s/^/# /"
rm -rf /cache/odd-blobs
cp -r "$DATA/blobs" /cache/odd-blobs
serve_tree /tmp/odd-dir-map.err /cache/odd-blobs
ktap_check "blobs on ext4: every byte went to the cache from a mapping of its blob file" \
	mapped_bytes /tmp/odd-dir-map.err all
tail -n 8 /tmp/odd-dir-map.err | sed "s/^/# /"
serve_tree /tmp/odd-dir-copy.err /cache/odd-blobs --no-map
ktap_check "blobs on ext4, --no-map: no byte went to the cache from a mapping" \
	mapped_bytes /tmp/odd-dir-copy.err none
tail -n 8 /tmp/odd-dir-copy.err | sed "s/^/# /"
rm -rf /cache/odd-blobs
ktap_finish
