#!/bin/sh
# Failover: the worker is killed 20 times during a large read while
# the supervisor keeps the devnode, restarts it and writes "restore"; the
# read completes with identical bytes.
. "$T/lib/ktap.sh"
. "$T/lib/odd.sh"
DATA=/host/out/data
KILLS=${KILLS:-20}
ktap_plan 6
backend_setup || exit 1
mkdir -p /mnt/odd
rm -rf /cache/odd-fo && mkdir -p /cache/odd-fo
"$BIN/odd" supervise --dir /cache/odd-fo --source "dir:$DATA/blobs" \
	--persona delay:100 2>/tmp/odd-fo.err &
sup=$!
ktap_check "supervisor bound the cache" wait_bound
ktap_check "mount" mount -t erofs none -o fsid=simple.img /mnt/odd
(cat /mnt/odd/big/two.bin >/tmp/two.bin; echo $? >/tmp/two.rc) &
reader=$!
# Kill the worker whenever one is running, until KILLS kills have landed
# while the reader was still reading.
killed=0
while [ $killed -lt "$KILLS" ] && kill -0 $reader 2>/dev/null; do
	sleep 0.3
	killmatch KILL "odd serve" && killed=$((killed + 1))
done
wait $reader
ktap_diag "worker killed $killed times during the read"
ktap_check "worker killed $KILLS times during the read" [ $killed -ge "$KILLS" ]
ktap_check "the read succeeded" [ "$(cat /tmp/two.rc)" = 0 ]
ktap_check "data byte-identical" cmp /tmp/two.bin "$DATA/tree/big/two.bin"
umount /mnt/odd
ktap_check "supervisor stops cleanly" stop $sup
grep -i "restart\|restore\|error" /tmp/odd-fo.err | tail -n 15 | sed "s/^/# /"
ktap_finish
