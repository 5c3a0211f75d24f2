#!/bin/sh
# Hot upgrade during a large read, on both ways of running odd. The odd
# binary is replaced on disk while it serves (its /proc/PID/exe turns
# "(deleted)"), then `odd upgrade` makes a new process from the new file
# take the devnode and the open objects over (SCM_RIGHTS): the read that
# spanned the hand-over completes with identical bytes and no error, the
# old process served part of it and the new one the rest, and the cache
# was never unbound (no bind happened again).
. "$T/lib/ktap.sh"
. "$T/lib/odd.sh"
DATA=/host/out/data
ktap_plan 15
backend_setup || exit 1
mkdir -p /mnt/odd /tmp/oddbin
metric() { "$BIN/odd" metrics --control "$1" | awk -v k="$2" '$1 == k {print $2}'; }
reads() { metric "$1" 'odd_requests_total{opcode="read"}'; }
# wait_reads SOCK N: until the odd at SOCK has read N requests.
wait_reads() {
	for i in $(seq 300); do [ "$(reads "$1")" -ge "$2" ] 2>/dev/null && return 0; sleep 0.1; done
	return 1
}
exe_of() { readlink "/proc/$1/exe"; }
# alive PID: exists and is not a zombie (a dead child not yet waited for).
alive() { [ -e "/proc/$1" ] && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null; }
gone() { for i in $(seq 50); do alive "$1" || return 0; sleep 0.1; done; return 1; }

# upgrade_during_read MODE SOCK: read big/two.bin (3 MiB) through one open
# file across the upgrade, ordered by events, not by time: the reader reads
# its first MiB, says so, and waits on a FIFO; the upgrade runs; then the
# reader reads the rest. With --read-extent 0 each READ is one readahead
# window (128 KiB at most), so the old process serves the first MiB and a
# little more, and the rest is left for the new one. (Timed versions of
# this test failed on slow hosts: the old process served the whole file
# before the upgrade was done, runs odd15-rust, check2 and cc12.)
upgrade_during_read() {
	mode=$1 sock=$2
	ktap_check "$mode: mount" mount -t erofs none -o fsid=simple.img /mnt/odd
	rm -f /tmp/up.go /tmp/up.half /tmp/up.bin /tmp/up.bin2 /tmp/up.rc && mkfifo /tmp/up.go
	( {
		dd bs=64k count=16 of=/tmp/up.bin 2>/dev/null && : >/tmp/up.half &&
			read -r _ </tmp/up.go && cat >/tmp/up.bin2
	} </mnt/odd/big/two.bin 2>/tmp/up.err; echo $? >/tmp/up.rc) &
	reader=$!
	half() { for i in $(seq 600); do [ -e /tmp/up.half ] && return 0; sleep 0.1; done; return 1; }
	half
	oldreads=$(reads "$sock")
	ktap_diag "$mode: the old process served $oldreads READs before the upgrade"
	c_half() { [ -e /tmp/up.half ] && [ "${oldreads:-0}" -gt 0 ]; }
	ktap_check "$mode: the first MiB was read, served by the old process" c_half
	# Replace the binary on disk, as a package upgrade does.
	rm /tmp/oddbin/odd && cp "$BIN/odd" /tmp/oddbin/odd
	"$BIN/odd" upgrade --control "$sock" >/tmp/up.out 2>&1
	urc=$?
	sed 's/^/# /' /tmp/up.out
	c_up() { [ $urc = 0 ] && grep -q "^upgraded: pid" /tmp/up.out; }
	ktap_check "$mode: odd upgrade reports a new process" c_up
	# Let the reader go on (the FIFO's open waits for it, if it is not
	# there yet; a dead reader leaves it waiting, hence the timeout).
	timeout 30 sh -c 'echo go >/tmp/up.go'
	# A reader whose READs nobody serves would wait forever (killably):
	# 120 s, then it is killed and the point below fails.
	for i in $(seq 1200); do [ -e /tmp/up.rc ] && break; sleep 0.1; done
	if [ ! -e /tmp/up.rc ]; then
		ktap_diag "$mode: the read did not end in 120 s"
		kill -KILL $(cat /proc/[0-9]*/stat 2>/dev/null | awk -v p=$reader '$4 == p {print $1}') $reader
	fi
	wait $reader
	newreads=$(reads "$sock")
	ktap_diag "$mode: the new process served $newreads READs"
	c_read() {
		cat /tmp/up.bin2 >>/tmp/up.bin &&
			[ "$(cat /tmp/up.rc)" = 0 ] && [ ! -s /tmp/up.err ] &&
			cmp -s /tmp/up.bin "$DATA/tree/big/two.bin" && [ "${newreads:-0}" -gt 0 ]
	}
	ktap_check "$mode: the read completed without error, bytes identical, part served after the upgrade" c_read
	umount /mnt/odd
}

# 1. odd serve.
rm -f /tmp/oddbin/odd && cp "$BIN/odd" /tmp/oddbin/odd
rm -rf /cache/odd-up && mkdir -p /cache/odd-up
/tmp/oddbin/odd serve --dir /cache/odd-up --source "dir:$DATA/blobs" --control /tmp/up1.sock \
	--persona delay:100 --threads 1 --read-extent 0 2>/tmp/odd-up1.err &
old=$!
ktap_check "serve: odd bound the cache" wait_bound
upgrade_during_read serve /tmp/up1.sock
new=$("$BIN/odd" metrics --control /tmp/up1.sock >/dev/null && grep -o 'pid [0-9]* -> pid [0-9]*' /tmp/up.out | awk '{print $5}')
c_new() { [ -n "$new" ] && gone $old && [ "$(exe_of "$new")" = /tmp/oddbin/odd ]; }
ktap_check "serve: the old process exited; the new one runs the new file" c_new
c_once() { [ "$(grep -c 'in on-demand mode' /tmp/odd-up1.err)" = 1 ] && grep -q "took the devnode over" /tmp/odd-up1.err; }
ktap_check "serve: the cache was bound once (taken over, not bound again)" c_once
kill -TERM "$new"
for i in $(seq 100); do kill -0 "$new" 2>/dev/null || break; sleep 0.1; done

# 2. odd supervise: the worker is replaced, the supervisor keeps the devnode.
rm -f /tmp/oddbin/odd && cp "$BIN/odd" /tmp/oddbin/odd
rm -rf /cache/odd-up2 && mkdir -p /cache/odd-up2
/tmp/oddbin/odd supervise --dir /cache/odd-up2 --source "dir:$DATA/blobs" --control /tmp/up2.sock \
	--persona delay:100 --threads 1 --read-extent 0 2>/tmp/odd-up2.err &
sup=$!
ktap_check "supervise: bound" wait_bound
upgrade_during_read supervise /tmp/up2.sock
c_sup() { grep -q "new worker pid .* takes over" /tmp/odd-up2.err && ! grep -q "wrote 'restore'" /tmp/odd-up2.err; }
ktap_check "supervise: a new worker took over without restore" c_sup
c_supexe() { for i in $(seq 50); do [ "$(exe_of $sup)" = /tmp/oddbin/odd ] && return 0; sleep 0.1; done; return 1; }
ktap_check "supervise: the supervisor re-executed the new file (same pid)" c_supexe
ktap_check "supervise: supervisor stops cleanly" stop $sup
grep -i "upgrade\|took\|handed\|error" /tmp/odd-up1.err /tmp/odd-up2.err | tail -n 12 | sed 's/^/# /'
ktap_finish
