#!/bin/sh
# Demo, run in the guest: an on-demand mount, step by step.
. "$T/lib/ktap.sh"
DATA=/host/out/data
say() { echo "# $*"; }
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
say "   blob size: $(wc -c <$DATA/blobs/simple.img) bytes; cached so far: $(du -sk $cache | cut -f1) KiB"
say "3. list it (metadata pages are fetched on demand)"
ls -lR /mnt/demo | head -40 | sed 's/^/#   /'
say "   cached now: $(du -sk $cache | cut -f1) KiB"
say "4. read one small file"
md5sum /mnt/demo/a/b/c/d/deep.bin $DATA/tree/a/b/c/d/deep.bin | sed 's/^/#   /'
say "   cached now: $(du -sk $cache | cut -f1) KiB of $(( $(wc -c <$DATA/blobs/simple.img) / 1024 )) KiB"
say "5. read everything and compare with the source tree"
if diff -r $DATA/tree /mnt/demo >/dev/null; then say "   identical"; ok=0; else say "   DIFFERENT"; ok=1; fi
say "   cached now: $(du -sk $cache | cut -f1) KiB"
umount /mnt/demo
kill -TERM %1 2>/dev/null; wait
say "daemon: $(cat /tmp/demo.err)"
exit $ok
