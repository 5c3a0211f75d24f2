#!/bin/sh
# Culling: odd's cache on a 32 MiB ext filesystem (a loop device) while
# 8 images of 5 MiB are read through it, one mount at a time (culling
# starts with the fourth and passes every other image after it).
# Every read succeeds with identical bytes; free space never falls to the
# stop limit and ends above the cull limit; culling ran (EPOLLOUT from the
# kernel, cull commands from odd) but did not empty the cache; an object
# in use (an image kept mounted, its cache file already on disk and the
# oldest there) is asked about, kept, and still reads identically.
# Sizing: fscache keeps a relinquished cookie in its LRU for about 10 s, its
# cache file in use for `inuse` meanwhile, so the image unmounted last cannot
# be culled yet while the next one is read: the pinned image, that one and
# the one being read (15 MiB) must fit above the stop limit. With 24 MiB and
# limits 40/30/10 the free space fell to 9% and writes failed (ENOBUFS).
. "$T/lib/ktap.sh"
. "$T/lib/odd.sh"
DATA=/host/out/data
N=${N:-7}			# images read besides the pinned one; each is simple.img (about 5 MiB)
RUN=50 CULL=40 STOP=10		# limits, % of free blocks
ktap_plan 10
backend_setup || exit 1
fs=/mnt/cullfs sock=/tmp/odd-cull.sock
mkdir -p $fs /mnt/cpin /mnt/codd /tmp/cb
img=/cache/odd-cull.img
rm -f $img && dd if=/dev/zero of=$img bs=1M count=32 2>/dev/null
mke2fs -F -m 0 $img >/dev/null 2>&1
mount -t ext4 -o loop $img $fs || { ktap_diag "cannot loop-mount $img"; exit 1; }
# N+1 names for one image (hard links: each is its own cache object).
cp "$DATA/blobs/simple.img" /tmp/cb/pin.img
for i in $(seq $N); do ln /tmp/cb/pin.img /tmp/cb/i$i.img; done
size=$(wc -c </tmp/cb/pin.img)
# The tree's checksums, as the host computed them (reading the tree over
# 9p is slow under TCG): each image is read once, through odd, and checked
# against them.
cp "$DATA/tree.md5" /tmp/cull-ref.md5
nref=$(wc -l </tmp/cull-ref.md5)
[ "$nref" -ge 57 ] || { ktap_diag "only $nref reference checksums"; exit 1; }
ktap_diag "cache fs $(df -k $fs | awk 'NR==2 {print $2}') KiB; reading $((N + 1)) x $size bytes"
"$BIN/odd" -v serve --dir $fs/c --source dir:/tmp/cb --control $sock \
	--brun $RUN --bcull $CULL --bstop $STOP --frun 2 --fcull 1 --fstop 0 \
	2>/tmp/odd-cull.err &
pid=$!
ktap_check "odd bound the cache on the small filesystem" wait_bound
free_pct() { df -k $fs | awk 'NR==2 {printf "%d", $4 * 100 / $2}'; }
metric() { "$BIN/odd" metrics --control $sock | awk -v m="$1" '$1 == m {print $2}'; }
# The pinned image: read, unmounted (its cache file is committed), mounted
# again and kept: from now on its object is in use.
mount -t erofs none -o fsid=pin.img /mnt/cpin && cat /mnt/cpin/big/two.bin >/dev/null
umount /mnt/cpin
pinfile=$(find $fs/c/cache -type f | head -n1)
pinino=$(stat -c %i "$pinfile" 2>/dev/null)
mount -t erofs none -o fsid=pin.img /mnt/cpin
ktap_diag "pinned object: $pinfile (inode $pinino)"
# Free space sampled all along, not only between the reads.
(while :; do free_pct; echo; sleep 0.1; done) >/tmp/cull-free.log 2>/dev/null &
sampler=$!
bad=0 minfree=100
for i in $(seq $N); do
	if ! mount -t erofs none -o fsid=i$i.img /mnt/codd; then
		bad=$((bad + 1)); continue
	fi
	(cd /mnt/codd && md5sum -c /tmp/cull-ref.md5 >/dev/null) ||
		{ bad=$((bad + 1)); ktap_diag "i$i.img differs"; }
	umount /mnt/codd
	f=$(free_pct); [ "$f" -lt $minfree ] && minfree=$f
	ktap_diag "i$i.img read; $f% free"
done
kill $sampler; wait $sampler 2>/dev/null
sampled=$(grep . /tmp/cull-free.log | sort -n | head -n1)
[ -n "$sampled" ] && [ "$sampled" -lt $minfree ] && minfree=$sampled
ktap_diag "lowest free space seen: $minfree% ($(grep -c . /tmp/cull-free.log) samples)"
ktap_check "all $N images read back identical through a cache much smaller than them" [ $bad = 0 ]
culled=$(metric odd_cull_objects_total)
inuse=$(metric odd_cull_in_use_total)
passes=$(metric odd_cull_passes_total)
ktap_diag "culled $culled objects in $passes passes; $inuse in-use refusals"
ktap_check "odd culled cache files" [ "${culled:-0}" -ge $((N / 2)) ]
ktap_check "free space never reached the stop limit ($STOP%)" [ $minfree -gt $STOP ]
# Culling stops at the run limit: files are left, and free space ends above
# the cull limit once the culler has had a look.
for i in $(seq 50); do [ "$(free_pct)" -ge $CULL ] && break; sleep 0.2; done
left=$(find $fs/c/cache -type f | wc -l)
ktap_diag "at the end: $(free_pct)% free, $left cache files"
ktap_check "free space back above the cull limit ($CULL%)" [ "$(free_pct)" -ge $CULL ]
ktap_check "culling stopped short of emptying the cache" [ "$left" -ge 2 ]
ktap_check "the in-use object was asked about and kept (inuse refusals)" [ "${inuse:-0}" -ge 1 ]
same_inode() { [ -n "$pinino" ] && [ "$(stat -c %i "$pinfile" 2>/dev/null)" = "$pinino" ]; }
ktap_check "the in-use object's cache file is still there (same inode)" same_inode
c_pin() ( cd /mnt/cpin && md5sum -c /tmp/cull-ref.md5 >/dev/null )
ktap_check "the pinned image still reads identical" c_pin
umount /mnt/cpin
ktap_check "odd stops cleanly" stop $pid
grep -c "culled " /tmp/odd-cull.err | sed 's/^/# cull debug lines: /'
grep "cull pass\|ERROR\|WARN" /tmp/odd-cull.err | tail -n 8 | sed 's/^/# /'
umount $fs
rm -f $img
ktap_finish
