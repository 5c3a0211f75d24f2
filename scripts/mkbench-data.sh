#!/usr/bin/env bash
# Generate the benchmark data under out/bench/data: one file tree, and the
# same tree as an uncompressed erofs image (served on demand, or mounted
# file-backed) and as an uncompressed squashfs image (for squashfuse).
# The images go into disk.img, a raw ext4 image the guest gets as a second
# virtio disk (much faster than 9p under TCG); the guest copies them to
# tmpfs. Regenerated only when this script changes.
#   tree/seq.bin          256 MiB, cold sequential read and warm re-read
#   tree/rand.bin          64 MiB, 4 KiB random reads, one at a time
#   tree/rps.bin           32 MiB, 4 KiB random reads from 8 threads
#   tree/par/r<i>/f<j>     8 readers x 8 files x 1 MiB
#   (the tree itself is deleted once the images are made)
#   disk.img: images/main.img|sqfs   the tree
#             blobs/b<NNN>.img|sqfs  64 one-file images (f.bin, 64 KiB)
set -euo pipefail
. "$(dirname "$0")/env.sh"
data=$CFOD_TOP/out/bench/data
nblobs=64
stamp=$(sha256sum "$0" | cut -c1-16)
[ "$(cat "$data/.stamp" 2>/dev/null)" = "$stamp" ] && exit 0
rm -rf "$data"
mkdir -p "$data/disk/images" "$data/disk/blobs"
python3 - "$data" "$nblobs" <<'PY'
import os, random, sys
root, nblobs = sys.argv[1], int(sys.argv[2])
rng = random.Random(20261126)
MiB = 1 << 20
def put(path, size):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        while size:
            n = min(size, 16 * MiB)
            f.write(rng.randbytes(n))
            size -= n
tree = os.path.join(root, "tree")
put(f"{tree}/seq.bin", 256 * MiB)
put(f"{tree}/rand.bin", 64 * MiB)
put(f"{tree}/rps.bin", 32 * MiB)
for i in range(8):
    for j in range(8):
        put(f"{tree}/par/r{i}/f{j}", MiB)
for i in range(nblobs):
    put(f"{root}/blobtrees/b{i:03d}/f.bin", 64 * 1024)
PY
sqfs() { mksquashfs "$1" "$2" -noappend -all-root -noI -noD -noF -noX \
	-no-xattrs -no-progress -quiet >/dev/null; }
erofs() { mkfs.erofs --quiet -T0 --all-root "$2" "$1" >/dev/null; }
erofs "$data/tree" "$data/disk/images/main.img"
sqfs "$data/tree" "$data/disk/images/main.sqfs"
for d in "$data"/blobtrees/*; do
	b=$(basename "$d")
	erofs "$d" "$data/disk/blobs/$b.img"
	sqfs "$d" "$data/disk/blobs/$b.sqfs"
done
du -sh "$data"/tree "$data"/disk/images/* "$data"/disk/blobs | sed 's/^/mkbench-data: /'
rm -rf "$data/blobtrees" "$data/tree"
mb=$(( $(du -sm "$data/disk" | cut -f1) * 11 / 10 + 64 ))
mkfs.ext4 -q -F -E root_owner=0:0 -d "$data/disk" "$data/disk.img" "${mb}M" >/dev/null
rm -rf "$data/disk"
echo "$stamp" >"$data/.stamp"
