#!/bin/sh
# odd against a real OCI registry (Debian's docker-registry, distribution
# 2.8) on loopback in the guest: two registry processes over one storage,
# one with TLS (a test CA given to odd with --ca-file) and htpasswd basic
# auth, one plain for pushing and as a redirect target. The blobs are
# pushed through the registry's upload API, then mounted through odd with
# oci:// and read byte-identical; a wrong password, a missing blob, a
# redirect, a registry restart in the middle of a read, and the digest
# check during prefetch. Data from scripts/mkdata-oci.sh.
. "$T/lib/ktap.sh"
. "$T/lib/odd.sh"
DATA=/host/out/data
O=$DATA/oci
FX=$BIN/oci_fixture
REPO=odd/test
ktap_plan 19
backend_setup || exit 1
mkdir -p /mnt/odd /mnt/odd2
ROOT=/tmp/oci-reg
rm -rf "$ROOT" && mkdir -p "$ROOT"
for c in tls plain; do
	sed "s|@ROOT@|$ROOT|; s|@DIR@|$O|" "$O/$c.yml" >"/tmp/oci-$c.yml"
done
registry() {
	"$O/rt/ld-linux-x86-64.so.2" --library-path "$O/rt" "$O/rt/docker-registry" \
		serve "/tmp/oci-$1.yml" >>"/tmp/oci-$1.log" 2>&1 &
}
registry plain
plain=$!
registry tls
tls=$!
ktap_check "both registries listen" sh -c "$FX wait 5001 && $FX wait 5000"
digest() { grep "^$1 " "$O/map" | cut -d' ' -f2; }
ktap_check "blobs pushed through the registry API" sh -c \
	"$FX push 5001 $REPO $(digest simple.img) $DATA/blobs/simple.img &&
	 $FX push 5001 $REPO $(digest junk.img) $DATA/blobs/junk.img"

# serve NAME SPEC [odd options]: start odd on a fresh cache directory.
serve() {
	name=$1 spec=$2
	shift 2
	rm -rf "/cache/$name" && mkdir -p "/cache/$name"
	"$BIN/odd" serve --dir "/cache/$name" --source "$spec" --oci-map "$O/map" \
		"$@" 2>"/tmp/$name.err" &
	pid=$!
	wait_bound
}
OCI=oci://127.0.0.1:5000/$REPO

# A wrong password: the OPEN fails, so does the mount, and odd says why.
serve oci-bad "$OCI" --ca-file "$O/ca.crt" --credentials "$O/pass.bad"
ktap_check "wrong password: the mount fails" \
	sh -c '! mount -t erofs none -o fsid=simple.img /mnt/odd 2>/dev/null'
ktap_check "wrong password: odd logged the 401" grep -q "401" /tmp/oci-bad.err
stop $pid

# The right one, over TLS with the test CA; retries generous enough to ride
# out a registry restart (the request deadline still bounds each read).
serve oci-good "$OCI" --ca-file "$O/ca.crt" --credentials "$O/pass.good" \
	--http-retries 12 --request-deadline-ms 60000
ktap_check "mount through oci:// over TLS with basic auth" \
	mount -t erofs none -o fsid=simple.img /mnt/odd
# Restart the TLS registry while a large file is being read: the kill must
# land while the reader is still reading (checked after the kill).
f=big/two.bin
cat "/mnt/odd/$f" >/tmp/oci-read.bin &
reader=$!
for i in $(seq 600); do
	[ "$(stat -c %s /tmp/oci-read.bin 2>/dev/null || echo 0)" -ge 65536 ] && break
	kill -0 $reader 2>/dev/null || break
	sleep 0.05
done
kill -KILL $tls
wait $tls 2>/dev/null
during=no
kill -0 $reader 2>/dev/null && during=yes
ktap_diag "registry killed after $(stat -c %s /tmp/oci-read.bin) bytes; reader still reading: $during"
registry tls
tls=$!
wait $reader
rc=$?
ktap_check "the registry restart landed during the read" [ $during = yes ]
ktap_check "the read across the restart succeeded" [ $rc = 0 ]
ktap_check "... byte-identical" cmp -s /tmp/oci-read.bin "$DATA/tree/$f"
ktap_check "every file identical to the tree (names, MD5s)" same_tree /mnt/odd
ktap_check "a blob missing from the registry: the mount fails" \
	sh -c '! mount -t erofs none -o fsid=gone.img /mnt/odd2 2>/dev/null'
ktap_check "... reported as in no source" grep -q '"gone.img".*is in no source' /tmp/oci-good.err
umount /mnt/odd
ktap_check "odd stops cleanly" stop $pid
grep -i "warn\|error" /tmp/oci-good.err | tail -n 6 | sed "s/^/# /"

# Prefetch checks the whole blob against its digest (its name in oci://).
serve oci-pf "$OCI" --ca-file "$O/ca.crt" --credentials "$O/pass.good" --prefetch
ktap_check "prefetch mount" mount -t erofs none -o fsid=simple.img /mnt/odd
ok=no
for i in $(seq 300); do
	kill -USR1 $pid
	sleep 0.2
	grep -q "digest-ok=1 " /tmp/oci-pf.err && ok=yes && break
done
ktap_check "prefetch verified the blob's sha256 (digest-ok=1)" [ $ok = yes ]
ktap_check "no digest mismatch" sh -c '! grep -q "digest-mismatch=[1-9]" /tmp/oci-pf.err'
umount /mnt/odd
stop $pid

# A redirecting front (as registries send blob GETs to object storage):
# odd follows it, with Range, to the plain registry.
"$FX" redirect 5002 5001 >/tmp/oci-redirect.log &
redir=$!
"$FX" wait 5002
serve oci-redir "oci+http://127.0.0.1:5002/$REPO"
ktap_check "mount through a redirect" mount -t erofs none -o fsid=simple.img /mnt/odd
ktap_check "... files byte-identical" sh -c \
	"cmp /mnt/odd/mid/m4.bin $DATA/tree/mid/m4.bin && cmp /mnt/odd/big/one.bin $DATA/tree/big/one.bin"
n=$(grep -c "^redirect " /tmp/oci-redirect.log)
ktap_check "odd's requests were redirected ($n)" [ "$n" -ge 2 ]
umount /mnt/odd
stop $pid
kill $redir $tls $plain
wait $redir $tls $plain 2>/dev/null
ktap_check "no task left in D state" d_state_scan
ktap_finish
