#!/bin/sh
# Demo, run in the guest: the project's own daemon, odd, serving erofs
# images on demand through /dev/cachefiles, from a directory and over HTTP.
. "$T/lib/ktap.sh"
. "$T/lib/odd.sh"
DATA=/host/out/data
say() { echo "# $*"; }
ok=0
step() { say ""; say "== $*"; }
# Cache files are unlinked tmpfiles until unmount: measure the filesystem.
used0=$(df -k /cache | awk 'NR==2 {print $3}')
fetched() { echo "$(( $(df -k /cache | awk 'NR==2 {print $3}') - used0 )) KiB of cache disk"; }
metrics() { "$BIN/odd" metrics --control /tmp/demo.sock | grep -v '^#' | grep -E "$1" | sed 's/^/#     /'; }

step "1. kernel side: modules and the devnode"
backend_setup || { say "cannot load the $CFOD_BACKEND backend"; exit 1; }
say "   kernel $(uname -r); cachefiles on-demand backend for new caches: $CFOD_BACKEND"
grep -q cachefiles_ondemand_rs /proc/modules && say "   module cachefiles_ondemand_rs loaded (the Rust backend)"
ls -l /dev/cachefiles | sed 's/^/#   /'
say "   (on a distribution kernel: modprobe -a cachefiles erofs; /dev/cachefiles must exist)"

step "2. odd serves blobs from a directory"
cache=/cache/demo
mkdir -p $cache /mnt/demo
say "   odd serve --dir $cache --source dir:$DATA/blobs --control /tmp/demo.sock"
"$BIN/odd" serve --dir $cache --source "dir:$DATA/blobs" --control /tmp/demo.sock 2>/tmp/demo.err &
odd=$!
wait_bound || { say "odd did not bind"; cat /tmp/demo.err; exit 1; }
say "   bound; backend serving the cache: $(bound_backend)"
sed -n 's/.*INFO  odd: /#   odd: /p' /tmp/demo.err | head -n 3

step "3. mount an image: nothing of it is local yet"
say "   mount -t erofs none -o fsid=simple.img /mnt/demo"
mount -t erofs none -o fsid=simple.img /mnt/demo || exit 1
say "   blob $(wc -c <$DATA/blobs/simple.img) bytes; fetched so far: $(fetched)"
ls -l /mnt/demo /mnt/demo/big | sed 's/^/#   /'
say "   read one small file:"
md5sum /mnt/demo/a/b/c/d/deep.bin $DATA/tree/a/b/c/d/deep.bin | sed 's/^/#   /'
say "   fetched now: $(fetched)"
say "   read everything and compare with the source tree:"
if diff -r $DATA/tree /mnt/demo >/dev/null; then say "   identical"; else say "   DIFFERENT"; ok=1; fi
say "   fetched now: $(fetched)"
umount /mnt/demo

step "4. a multi-blob image (mkfs.erofs --blobdev --chunksize): metadata and data in two blobs"
say "   mount -t erofs none -o fsid=meta.img,device=blob.img /mnt/demo"
if mount -t erofs none -o fsid=meta.img,device=blob.img /mnt/demo; then
	if cmp -s /mnt/demo/big/one.bin $DATA/tree/big/one.bin; then say "   big/one.bin identical"; else say "   DIFFERENT"; ok=1; fi
	umount /mnt/demo
else
	say "   mount failed"; ok=1
fi

step "5. what odd counted (odd metrics: Prometheus text on its control socket)"
metrics '^odd_requests_total|^odd_bytes_written_total\{source="dir"|_count|^odd_cache_free_percent|limit="b'
kill -TERM $odd; wait $odd
say "   odd stopped (SIGTERM); its last words:"
grep "statistics" -A3 /tmp/demo.err | sed 's/^/#   /'
say "   after unmount the cache files are on disk: $(du -sk $cache | cut -f1) KiB in $cache"

step "6. the same image over HTTP (a Range-capable server on 127.0.0.1)"
httpd -f -p 127.0.0.1:8080 -h "$DATA/blobs" &
httpd=$!
rm -rf /cache/demo-http && mkdir -p /cache/demo-http
say "   odd serve --dir /cache/demo-http --source http://127.0.0.1:8080"
"$BIN/odd" serve --dir /cache/demo-http --source http://127.0.0.1:8080 --control /tmp/demo.sock 2>/tmp/demo-http.err &
odd=$!
wait_bound || { say "odd did not bind"; exit 1; }
mount -t erofs none -o fsid=simple.img /mnt/demo || exit 1
if diff -r $DATA/tree /mnt/demo >/dev/null; then say "   every file identical over HTTP"; else say "   DIFFERENT"; ok=1; fi
metrics '^odd_requests_total\{opcode="(open|read)"|source="http"'
umount /mnt/demo
kill -TERM $odd; wait $odd
kill $httpd; wait $httpd 2>/dev/null
say ""
[ $ok = 0 ] && say "demo: all reads identical" || say "demo: FAILED"
exit $ok
