#!/bin/sh
# kill -9 of the supervisor during a large read. Its worker dies with it
# (PR_SET_PDEATHSIG: no orphan keeps serving). With an fd holder (`odd
# hold`) keeping a copy of the devnode, the cache stays bound: a new `odd
# supervise` takes the fd back, its worker writes `restore`, and the read
# completes with identical bytes. Without a holder the devnode closes with
# the supervisor: the waiting reader, and a reader after it, fail at once,
# and nothing hangs. The release fails the pending READ with EIO. If that
# READ was readahead, the reader reads the page again and meets the
# withdrawn cache, which fscache refuses with ENOBUFS, as in lifetime (seen
# on 6.12.118 with the Rust backend, run odd15-rust); if the reader was
# itself waiting on that READ, it gets the EIO (seen in a CI run of
# 2026-12-07, Rust backend). A read begun afterwards gets ENOBUFS at once.
. "$T/lib/ktap.sh"
. "$T/lib/odd.sh"
DATA=/host/out/data
ktap_plan 12
backend_setup || exit 1
mkdir -p /mnt/odd
metric() { "$BIN/odd" metrics --control "$1" | awk -v k="$2" '$1 == k {print $2}'; }
wait_reads() {
	for i in $(seq 300); do
		[ "$(metric "$1" 'odd_requests_total{opcode="read"}')" -ge "$2" ] 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
worker_of() { cat /proc/[0-9]*/stat 2>/dev/null | awk -v p="$1" '$4 == p {print $1}' | head -n1; }
# alive PID: exists and is not a zombie (a dead child not yet waited for).
alive() { [ -e "/proc/$1" ] && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null; }
gone() { for i in $(seq 50); do alive "$1" || return 0; sleep 0.1; done; return 1; }

# The supervisor is killed while big/two.bin (3 MiB) is being read, after
# the fourth READ: odd runs with --read-extent 0, so that the file is 25 READs
# of 128 KiB (with 1 MiB extents the fourth READ could be its last).

# 1. With the fd holder.
"$BIN/odd" hold --socket /tmp/holder.sock 2>/tmp/odd-hold.err &
holder=$!
rm -rf /cache/odd-k1 && mkdir -p /cache/odd-k1
sup_args="--dir /cache/odd-k1 --source dir:$DATA/blobs --control /tmp/k1.sock --fd-holder /tmp/holder.sock --persona delay:30 --threads 2 --read-extent 0"
"$BIN/odd" supervise $sup_args 2>/tmp/odd-k1.err &
sup=$!
c_bound() { wait_bound && grep -q "fd holder .* keeps a copy" /tmp/odd-k1.err; }
ktap_check "holder: supervisor bound the cache, the holder keeps the devnode" c_bound
mount -t erofs none -o fsid=simple.img /mnt/odd
(cat /mnt/odd/big/two.bin >/tmp/k.bin 2>/tmp/k.err; echo $? >/tmp/k.rc) &
reader=$!
wait_reads /tmp/k1.sock 4
worker=$(worker_of $sup)
kill -9 $sup
wait $sup 2>/dev/null
c_died() { [ -n "$worker" ] && gone "$worker"; }
ktap_check "holder: the worker died with its supervisor" c_died
ktap_check "holder: the reader is still waiting (the cache is alive)" alive $reader
"$BIN/odd" supervise $sup_args 2>/tmp/odd-k1b.err &
sup=$!
wait $reader
c_back() { grep -q "got the devnode back from the fd holder" /tmp/odd-k1b.err && grep -q "wrote 'restore'" /tmp/odd-k1b.err; }
ktap_check "holder: the new supervisor took the devnode back and restored" c_back
c_same() { [ "$(cat /tmp/k.rc)" = 0 ] && cmp -s /tmp/k.bin "$DATA/tree/big/two.bin"; }
ktap_check "holder: the read completed, bytes identical" c_same
ktap_check "holder: later reads work" cmp -s /mnt/odd/big/one.bin "$DATA/tree/big/one.bin"
umount /mnt/odd
ktap_check "holder: supervisor stops cleanly" stop $sup
ktap_check "holder: a clean stop made the holder let go (cache unbound)" \
	grep -q "released the held fd" /tmp/odd-hold.err
kill -TERM $holder; wait $holder

# 2. Without a holder.
rm -rf /cache/odd-k2 && mkdir -p /cache/odd-k2
"$BIN/odd" supervise --dir /cache/odd-k2 --source "dir:$DATA/blobs" --control /tmp/k2.sock \
	--persona delay:30 --threads 2 --read-extent 0 2>/tmp/odd-k2.err &
sup=$!
wait_bound
mount -t erofs none -o fsid=simple.img /mnt/odd
(cat /mnt/odd/big/two.bin >/dev/null 2>/tmp/k2.err; echo $? >/tmp/k2.rc) &
reader=$!
wait_reads /tmp/k2.sock 4
worker=$(worker_of $sup)
kill -9 $sup
wait $sup 2>/dev/null
ktap_check "no holder: the worker died with its supervisor" c_died
ktap_check "no holder: the waiting reader failed within 5 s" gone $reader
wait $reader
sed 's/^/# reader: /' /tmp/k2.err
c_failed() {
	[ "$(cat /tmp/k2.rc)" != 0 ] &&
		grep -qE "Input/output error|No buffer space" /tmp/k2.err
}
ktap_check "no holder: with EIO (its READ failed) or ENOBUFS (read again from the withdrawn cache)" c_failed
timeout 10 cat /mnt/odd/mid/m4.bin >/dev/null 2>/tmp/k3.err
rc=$?
sed 's/^/# later reader: /' /tmp/k3.err
c_later() { [ $rc != 0 ] && [ $rc != 124 ] && [ $rc != 143 ] && grep -q "No buffer space" /tmp/k3.err; }
ktap_check "no holder: a later reader fails at once too (ENOBUFS, no hang)" c_later
umount /mnt/odd
ktap_finish
