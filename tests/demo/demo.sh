#!/bin/sh
# Demo, run in the guest: an on-demand mount, step by step.
. "$T/lib/ktap.sh"
DATA=/host/out/data
say() { echo "# $*"; }
# Cache files are unlinked tmpfiles until unmount: measure the filesystem.
used0=$(df -k /cache | awk 'NR==2 {print $3}')
fetched() { echo "$(( $(df -k /cache | awk 'NR==2 {print $3}') - used0 )) KiB of cache disk (1 MiB of it is cachefiles' directories)"; }
backend_setup
cache=/cache/demo
mkdir -p $cache /mnt/demo
say "1. start the daemon: it binds /dev/cachefiles in on-demand mode"
"$BIN/od-serve" -p /tmp/demo.pid $cache $DATA/blobs 2>/tmp/demo.err &
for i in $(seq 50); do [ -s /tmp/demo.pid ] && break; sleep 0.2; done
say "   backend serving the cache: $(bound_backend)"
say "2. mount the image: nothing of it is local yet"
say "   mount -t erofs none -o fsid=simple.img /mnt/demo"
mount -t erofs none -o fsid=simple.img /mnt/demo || exit 1
say "   blob size: $(wc -c <$DATA/blobs/simple.img) bytes; fetched so far: $(fetched)"
say "3. list it (metadata pages are fetched on demand)"
ls -lR /mnt/demo | head -40 | sed 's/^/#   /'
say "   fetched now: $(fetched)"
say "4. read one small file"
md5sum /mnt/demo/a/b/c/d/deep.bin $DATA/tree/a/b/c/d/deep.bin | sed 's/^/#   /'
say "   fetched now: $(fetched); the blob is $(( $(wc -c <$DATA/blobs/simple.img) / 1024 )) KiB"
say "5. read everything and compare with the source tree"
if diff -r $DATA/tree /mnt/demo >/dev/null; then say "   identical"; ok=0; else say "   DIFFERENT"; ok=1; fi
say "   fetched now: $(fetched)"
umount /mnt/demo
say "6. after unmount the cache files are committed: $(du -sk $cache | cut -f1) KiB in $cache"
kill -TERM %1 2>/dev/null; wait
say "daemon: $(cat /tmp/demo.err)"
exit $ok
