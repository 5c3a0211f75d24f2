#!/usr/bin/env bash
# Generate the test data under out/data: a deterministic file tree and erofs
# images of it. Regenerated only when this script changes.
#   simple.img      one blob, mounted with -o fsid=simple.img
#   meta.img        metadata blob of a multi-device image whose data is in
#   blob.img        ... this blob (--blobdev, 4 KiB chunks); mounted with
#                   -o fsid=meta.img,device=blob.img
#   meta2.img       a copy of meta.img: a second image using blob.img, to
#                   share it under one domain_id
#   junk.img        8 KiB of random bytes: a blob that is not an image
#   anchor.img      a one-file image the fuzzer keeps mounted in its domain,
#                   so that the domain's volume outlives each trace
#   tree.list       every name in the tree (find ., sorted)
#   tree.md5        every file's MD5 (md5sum format, sorted by name): the
#                   guests check a mounted tree against these instead of
#                   reading the host's copy over 9p (24 s a tree under TCG)
#   oci/            a registry and its TLS/auth set-up (mkdata-oci.sh)
# Images are uncompressed: 6.12 erofs has a known bug when a compressed
# read is split between cached and uncached data.
set -euo pipefail
. "$(dirname "$0")/env.sh"
data=$CFOD_TOP/out/data
stamp=$(cat "$0" "$(dirname "$0")/mkdata-oci.sh" | sha256sum | cut -c1-16)
[ "$(cat "$data/.stamp" 2>/dev/null)" = "$stamp" ] && exit 0
rm -rf "$data"
mkdir -p "$data/blobs"
python3 - "$data/tree" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(20261122)
def put(path, size):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(rng.randbytes(size))
# inline-sized and small files
for i, size in enumerate([0, 1, 17, 100, 511, 1000, 2047, 3000, 4095]):
    put(f"small/s{i}.bin", size)
# page-sized and odd sizes around page boundaries
for i, size in enumerate([4096, 4097, 8191, 65536, 100000]):
    put(f"mid/m{i}.bin", size)
# larger than 1 MiB
put("big/one.bin", 1536 * 1024)
put("big/two.bin", 3 * 1024 * 1024 + 123)
put("a/b/c/d/deep.bin", 12345)
for i in range(40):
    put(f"many/f{i:03d}.txt", rng.randrange(0, 9000))
PY
(cd "$data/tree" && find . | LC_ALL=C sort) >"$data/tree.list"
(cd "$data/tree" && find . -type f | LC_ALL=C sort | xargs md5sum) >"$data/tree.md5"
mkfs.erofs --quiet -T0 --all-root "$data/blobs/simple.img" "$data/tree" >/dev/null
mkfs.erofs --quiet -T0 --all-root --blobdev="$data/blobs/blob.img" --chunksize=4096 \
	"$data/blobs/meta.img" "$data/tree" >/dev/null
cp "$data/blobs/meta.img" "$data/blobs/meta2.img"
head -c 8192 /dev/urandom >"$data/blobs/junk.img"
mkdir -p "$data/anchor"
echo anchor >"$data/anchor/a"
mkfs.erofs --quiet -T0 --all-root "$data/blobs/anchor.img" "$data/anchor" >/dev/null
"$(dirname "$0")/mkdata-oci.sh" "$data"
echo "$stamp" >"$data/.stamp"
du -sh "$data"/tree "$data"/blobs/* | sed 's/^/mkdata: /'
