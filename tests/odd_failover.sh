#!/bin/sh
# Failover: the worker is killed 20 times during reads (large files first)
# while the supervisor keeps the devnode and restarts it, and the restarted
# worker writes "restore";
# every read completes with identical bytes.
. "$T/lib/ktap.sh"
. "$T/lib/odd.sh"
DATA=/host/out/data
KILLS=${KILLS:-20}
ktap_plan 8
backend_setup || exit 1
mkdir -p /mnt/odd
rm -rf /cache/odd-fo && mkdir -p /cache/odd-fo
"$BIN/odd" supervise --dir /cache/odd-fo --source "dir:$DATA/blobs" \
	--persona delay:400 --max-backoff-ms 500 2>/tmp/odd-fo.err &
sup=$!
ktap_check "supervisor bound the cache" wait_bound
mkdir -p /mnt/odd2
ktap_check "mount both images" sh -c "mount -t erofs none -o fsid=simple.img /mnt/odd &&
	mount -t erofs none -o fsid=meta.img,device=blob.img /mnt/odd2"
# Kill the worker whenever one is running, while a reader is reading,
# until KILLS kills have landed; when a file is done, read the next one
# (never read before, so it comes through the daemon). A kill counts only
# if the reader was still reading after it (so it landed during the read).
# Each read must succeed and be byte-identical.
# restores: the workers that have written restore so far (a restarted
# worker writes it before serving).
restores() { grep -c "wrote 'restore' (worker restarted)" /tmp/odd-fo.err; }
# wait_restores N: until N restarted workers have written restore (the
# back-off grows to 0.5 s here, --max-backoff-ms; a TCG worker start takes
# a few seconds more).
wait_restores() {
	for i in $(seq 300); do
		[ "$(restores)" -ge "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
# The label's function: d_state_scan overwrites ktap_check's variables.
no_d_state() ( d_state_scan )
# kills: every kill sent (landed during a read or not); killed: those that
# landed while the reader was reading.
kills=0 killed=0 files=0 failed_reads=0 differ=0 stuck=0 hung=0
# Files as MOUNT/PATH: the large ones of both images first (a kill lands
# during a read only if the read outlasts the supervisor's back-off, up to
# 0.5 s here, and each READ takes 0.4 s), then the smaller ones.
for mf in odd/big/two.bin odd/big/one.bin odd2/big/two.bin odd2/big/one.bin \
	odd/mid/m4.bin odd2/mid/m4.bin odd/mid/m3.bin odd2/mid/m3.bin \
	$(cd "$DATA/tree" && ls many/* | sed 's|^|odd/|'); do
	f=${mf#*/}
	[ $killed -ge "$KILLS" ] || [ $stuck = 1 ] || [ $hung = 1 ] && break
	(cat "/mnt/$mf" >/tmp/fo.bin; echo $? >/tmp/fo.rc) &
	reader=$!
	while [ $killed -lt "$KILLS" ] && kill -0 $reader 2>/dev/null; do
		# Kill a worker only once it serves: after the previous kill,
		# its successor must have written restore.
		wait_restores $kills || { stuck=1; break; }
		sleep 0.3	# pacing between kills, not ordering
		killmatch KILL "odd serve" || continue
		kills=$((kills + 1))
		kill -0 $reader 2>/dev/null && killed=$((killed + 1))
	done
	# The rest of the read, bounded: a reader left waiting for a READ
	# that no worker answers is a failed read, not a hung test.
	for i in $(seq 1200); do kill -0 $reader 2>/dev/null || break; sleep 0.1; done
	if kill -0 $reader 2>/dev/null; then
		ktap_diag "$mf: the reader still waits 120 s after the last kill ($kills kills)"
		grep -v "persona: delaying" /tmp/odd-fo.err | tail -n 12 | sed "s/^/# /"
		kill -KILL $reader
		killmatch KILL "cat /mnt/odd"
		echo hung >/tmp/fo.rc
		hung=1
	fi
	wait $reader
	files=$((files + 1))
	ktap_diag "$mf read; $kills kills so far, $killed during reads"
	if [ "$(cat /tmp/fo.rc)" != 0 ]; then
		ktap_diag "$mf: the read failed"
		failed_reads=$((failed_reads + 1))
	elif ! cmp -s /tmp/fo.bin "$DATA/tree/$f"; then
		ktap_diag "$mf: differs"
		differ=$((differ + 1))
	fi
done
ktap_diag "worker killed $kills times, $killed of them during the reads of $files files"
ktap_check "worker killed $KILLS times during reads" [ $killed -ge "$KILLS" ]
ktap_check "every read succeeded ($files files)" \
	sh -c "[ $files -gt 0 ] && [ $failed_reads = 0 ]"
ktap_check "every file read is byte-identical" [ $differ = 0 ]
[ $stuck = 0 ] && wait_restores $kills
ktap_check "a restarted worker wrote restore after each of the $kills kills ($(restores))" \
	sh -c "[ $stuck = 0 ] && [ $(restores) -ge $kills ]"
umount /mnt/odd /mnt/odd2
ktap_check "supervisor stops cleanly" stop $sup
grep -i "restart\|restore\|error" /tmp/odd-fo.err | tail -n 15 | sed "s/^/# /"
ktap_check "no task left in D state" no_d_state
ktap_finish
