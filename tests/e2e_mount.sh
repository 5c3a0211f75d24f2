#!/bin/sh
# End to end: a daemon serves erofs blobs on demand, erofs mounts them over
# fscache with -o fsid= (and device= for a multi-device image), and every
# file reads back byte for byte identical to the tree the image was made of.
. "$T/lib/ktap.sh"
DATA=/host/out/data
# Rust: 5 more points, on request counting (off by default).
[ "$CFOD_BACKEND" = rust ] && ktap_plan 19 || ktap_plan 14
backend_setup || { ktap_diag "cannot set up backend $CFOD_BACKEND"; exit 1; }
mkdir -p /mnt/e2e /mnt/e2e-multi
# The Rust backend counts requests only when asked to (stats_enabled), so
# that the hot path pays nothing for them by default: first a round trip
# with counting off, which must leave the cache's counters at zero.
if [ "$CFOD_BACKEND" = rust ]; then
	ktap_check "request counting is off by default" \
		sh -c "[ \$(cat $RS_DIR/stats_enabled) = 0 ] && grep -qx 'counting: off' $RS_TOTALS"
	uncounted() {
		od_serve_start /cache/e2e-off /tmp/od-off.pid /tmp/od-off.err || return 1
		_cs=$(rs_cache_stats)
		_ok=0
		if mount -t erofs none -o fsid=simple.img /mnt/e2e; then
			cat /mnt/e2e/small/* >/dev/null &&
				grep -q '^open: queued 0 completed 0$' "$_cs" &&
				grep -q '^read: queued 0 completed 0$' "$_cs" &&
				grep -qx 'in_flight: 0' "$_cs" && _ok=1
			umount /mnt/e2e
		fi
		# Read while the cache is bound: its directory goes with it.
		_counted=$(tr '\n' ' ' 2>&1 <"$_cs")
		kill -TERM $od_pid
		wait $od_pid
		_reads=$(sed -n 's/^od-serve: open [0-9]* read \([0-9]*\) .*/\1/p' /tmp/od-off.err)
		ktap_diag "counting off: the daemon answered ${_reads:-?} READs; the cache counted: $_counted"
		[ $_ok = 1 ] && [ "${_reads:-0}" -gt 0 ]
	}
	ktap_check "with counting off, a cache's requests (READs answered) are not counted" uncounted
	echo 1 >$RS_DIR/stats_enabled
	ktap_check "request counting turned on" grep -qx 'counting: on' $RS_TOTALS
fi
cache=/cache/e2e-$CFOD_BACKEND
ktap_check "daemon bound the cache" od_serve_start "$cache" /tmp/od.pid /tmp/od.err
daemon=$od_pid
ktap_check "cache bound to the $CFOD_BACKEND backend" [ "$(bound_backend)" = "$CFOD_BACKEND" ]

ktap_check "mount -o fsid=simple.img" mount -t erofs none -o fsid=simple.img /mnt/e2e
ktap_check "file list matches" sh -c "cd /mnt/e2e && find . | LC_ALL=C sort | cmp -s - $DATA/tree.list"
ktap_check "every file identical to the tree (names, MD5s)" same_tree /mnt/e2e

ktap_check "mount -o fsid=meta.img,device=blob.img" \
	mount -t erofs none -o fsid=meta.img,device=blob.img /mnt/e2e-multi
ktap_check "multi-device image identical to the tree (names, MD5s)" same_tree /mnt/e2e-multi

# Which implementation served the requests: the Rust backend counts them,
# per cache while it is bound, then in its totals.
if [ "$CFOD_BACKEND" = rust ]; then
	cs=$(rs_cache_stats)
	[ -n "$cs" ] && sed 's/^/# cache stats: /' "$cs"
	creads=$(rs_reads "$cs")
	cbytes=$(sed -n 's/^read_bytes: \([0-9]*\)$/\1/p' "$cs")
else
	ktap_check "no Rust backend loaded" [ ! -e $RS_DIR ]
fi

umount /mnt/e2e /mnt/e2e-multi
ktap_check "unmount" sh -c "! grep -q /mnt/e2e /proc/mounts"
# Cache files are tmpfiles until their objects are committed at unmount.
# Every file was read, so the cache holds at least the tree's data.
tree_kb=$(du -sk "$DATA/tree" | cut -f1)
ktap_check "cache files committed to the cache directory (>= the tree's $tree_kb KiB)" \
	sh -c "[ \$(du -sk $cache | cut -f1) -ge $tree_kb ]"
kill -TERM $daemon
wait $daemon
ktap_check "daemon exited cleanly" [ $? = 0 ]
# od-serve's own count of the READs it answered, printed as it exits.
served=$(sed -n 's/^od-serve: open [0-9]* read \([0-9]*\) .*/\1/p' /tmp/od.err)
# ... and the bytes those READs asked for (od-serve answered them all).
asked=$(sed -n 's/^od-serve: open .* asked \([0-9]*\)$/\1/p' /tmp/od.err)
if [ "$CFOD_BACKEND" = rust ]; then
	ktap_check "this cache's statistics counted every READ the daemon answered (${creads:-none} = ${served:-?})" \
		sh -c "[ -n '$served' ] && [ '${creads:--1}' = '$served' ]"
	ktap_check "and the bytes those READs asked for (read_bytes ${cbytes:-none} = ${asked:-?})" \
		sh -c "[ -n '$asked' ] && [ '$asked' -gt 0 ] && [ '${cbytes:--1}' = '$asked' ]"
	sed 's/^/# totals: /' $RS_TOTALS
	stats_gone() { [ -n "$cs" ] && [ ! -e "$cs" ] && [ "$(bound_backend)" = none ]; }
	ktap_check "the cache's statistics are gone once it is unbound" stats_gone
	ktap_check "the totals hold its READs, none in flight" \
		sh -c "[ \$(sed -n 's/^read: queued \([0-9]*\).*/\1/p' $RS_TOTALS) -ge ${creads:-1} ] && grep -qx 'in_flight: 0' $RS_TOTALS"
else
	ktap_check "no Rust statistics (C backend)" [ ! -e $RS_TOTALS ]
	ktap_check "no backend bound once the cache is unbound" [ "$(bound_backend)" = none ]
fi
sed 's/^/# /' /tmp/od.err
if [ "$CFOD_BACKEND" = rust ]; then
	echo 0 >$RS_DIR/stats_enabled
	ktap_check "request counting turned off again" grep -qx 'counting: off' $RS_TOTALS
fi
ktap_check "no task left in D state" d_state_scan
ktap_finish
