#!/bin/sh
# The known upstream lockdep report (tests/lockdep-known.txt;
# Documentation/tests.md, "Known lockdep report"), provoked on purpose: the
# C backend on the unpatched kernel, in a boot of its own (lockdep reports
# once a boot, then stops checking). scripts/check.sh runs this on the plain
# kernel with --expect-lockdep-known: the report must come, and the host
# must recognise it from the list.
#   1. an on-demand read: erofs' readahead, under the erofs file's
#      invalidate_lock, has cachefiles seek the cache file (ext4_llseek:
#      its i_rwsem);
#   2. an O_DIRECT write to ext4 from pages never touched: pinning them
#      takes mmap_lock under the ext4 file's i_rwsem (od-serve's own writes
#      through the anonymous fd may do it first);
#   3. a fault on another erofs file with no readahead (MADV_RANDOM):
#      filemap_fault() takes the invalidate_lock under the VMA lock, which
#      mmap_lock is taken before.
. "$T/lib/ktap.sh"
ktap_plan 6
mkdir -p /mnt/ld
dmesg -c >/dev/null
ktap_check "daemon bound the cache" od_serve_start /cache/ld /tmp/ld.pid
d=$od_pid
ktap_check "image mounted" mount -t erofs none -o fsid=simple.img /mnt/ld
ktap_check "1: a file of the image read (on demand)" sh -c 'cat /mnt/ld/big/one.bin >/dev/null'
ktap_check "2: O_DIRECT write to ext4 from pages never touched" "$BIN/lockdep_probe" dio /cache/ld-dio.bin
ktap_check "3: another file read through faults without readahead" "$BIN/lockdep_probe" fault /mnt/ld/big/two.bin
umount /mnt/ld
kill -TERM $d
wait $d
ktap_check "lockdep reported the cycle, with cachefiles' seek in it" \
	sh -c 'dmesg | grep -q "possible circular locking dependency" && dmesg | grep -q cachefiles_do_prepare_read'
ktap_finish
