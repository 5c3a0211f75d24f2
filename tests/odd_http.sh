#!/bin/sh
# odd serving blobs over HTTP from a loopback server (busybox httpd with
# Range support): mount, every file compared. (The chunked multi-device
# image is covered by e2e_mount.sh: over HTTP its ~1300 small reads, one
# forked httpd each, take minutes under TCG.)
. "$T/lib/ktap.sh"
. "$T/lib/odd.sh"
DATA=/host/out/data
ktap_plan 4
backend_setup || exit 1
mkdir -p /mnt/odd
httpd -f -p 127.0.0.1:8080 -h "$DATA/blobs" &
httpd=$!
rm -rf /cache/odd-http && mkdir -p /cache/odd-http
"$BIN/odd" serve --dir /cache/odd-http --source http://127.0.0.1:8080 2>/tmp/odd-http.err &
pid=$!
ktap_check "odd bound the cache" wait_bound
ktap_check "mount" mount -t erofs none -o fsid=simple.img /mnt/odd
ktap_check "every file identical to the tree (names, MD5s)" same_tree /mnt/odd
umount /mnt/odd
ktap_check "odd stops cleanly" stop $pid
kill $httpd; wait $httpd 2>/dev/null
tail -n 8 /tmp/odd-http.err | sed "s/^/# /"
ktap_finish
