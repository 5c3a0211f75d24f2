#!/bin/sh
# Failover: the worker is killed 20 times during reads (a large file first)
# while the supervisor keeps the devnode, restarts it and writes "restore";
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
	--persona delay:100 2>/tmp/odd-fo.err &
sup=$!
ktap_check "supervisor bound the cache" wait_bound
ktap_check "mount" mount -t erofs none -o fsid=simple.img /mnt/odd
# Kill the worker whenever one is running, while a reader is reading,
# until KILLS kills have landed; when a file is done, read the next one
# (never read before, so it comes through the daemon). A kill counts only
# if the reader was still reading after it (so it landed during the read).
# Each read must succeed and be byte-identical.
killed=0 files=0 failed_reads=0 differ=0
for f in big/two.bin big/one.bin mid/m4.bin mid/m3.bin mid/m2.bin \
	$(cd "$DATA/tree" && ls many/* small/*); do
	[ $killed -ge "$KILLS" ] && break
	(cat "/mnt/odd/$f" >/tmp/fo.bin; echo $? >/tmp/fo.rc) &
	reader=$!
	while [ $killed -lt "$KILLS" ] && kill -0 $reader 2>/dev/null; do
		sleep 0.3	# pacing between kills, not ordering
		killmatch KILL "odd serve" && kill -0 $reader 2>/dev/null &&
			killed=$((killed + 1))
	done
	wait $reader
	files=$((files + 1))
	if [ "$(cat /tmp/fo.rc)" != 0 ]; then
		ktap_diag "$f: the read failed"
		failed_reads=$((failed_reads + 1))
	elif ! cmp -s /tmp/fo.bin "$DATA/tree/$f"; then
		ktap_diag "$f: differs"
		differ=$((differ + 1))
	fi
done
ktap_diag "worker killed $killed times during the reads of $files files"
ktap_check "worker killed $KILLS times during reads" [ $killed -ge "$KILLS" ]
ktap_check "every read succeeded ($files files)" \
	sh -c "[ $files -gt 0 ] && [ $failed_reads = 0 ]"
ktap_check "every file read is byte-identical" [ $differ = 0 ]
restores=$(grep -c "wrote 'restore' (worker restarted)" /tmp/odd-fo.err)
ktap_check "the supervisor wrote restore after each kill ($restores)" [ "$restores" -ge $killed ]
umount /mnt/odd
ktap_check "supervisor stops cleanly" stop $sup
grep -i "restart\|restore\|error" /tmp/odd-fo.err | tail -n 15 | sed "s/^/# /"
ktap_check "no task left in D state" d_state_scan
ktap_finish
