#!/usr/bin/env bash
# Test data for tests/odd_oci.sh (called by mkdata.sh): a real registry
# (Debian's docker-registry, distribution 2.8) to run in the guest, and what
# it needs, under out/data/oci:
#   rt/              docker-registry with its loader and libc (the guest has
#                    no shared libraries of its own); run it as
#                    rt/ld-linux-x86-64.so.2 --library-path rt rt/docker-registry
#   ca.crt, ca.key   a self-signed test CA (never leaves out/)
#   server.crt/.key  the registry's certificate for IP 127.0.0.1, by that CA
#   htpasswd         user "odd", password in pass.good (bcrypt, as the
#                    registry requires); pass.bad holds a wrong one
#   tls.yml, plain.yml  registry configs: TLS + basic auth on 127.0.0.1:5000,
#                    plain http without auth on 127.0.0.1:5001, one storage
#                    (@ROOT@ and @DIR@ are filled in by the test)
#   map              NAME DIGEST for --oci-map; digests of the blobs
set -euo pipefail
data=$1
out=$data/oci
rm -rf "$out"
mkdir -p "$out/rt"
reg=$(command -v docker-registry) || {
	echo "mkdata-oci: docker-registry is not installed (scripts/setup.sh)" >&2
	exit 1
}
cp "$reg" "$out/rt/docker-registry"
# Its loader and libraries, wherever ldd finds them.
ldd "$reg" | awk '/=>/ { print $3 } /^\t\// { print $1 }' | while read -r lib; do
	[ -f "$lib" ] && cp -L "$lib" "$out/rt/"
done
ls "$out/rt/ld-linux-x86-64.so.2" >/dev/null

openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=odd test CA" \
	-keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
	-keyout "$out/server.key" -out "$out/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
	>"$out/ext.cnf"
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
	-CAcreateserial -days 3650 -extfile "$out/ext.cnf" -out "$out/server.crt" 2>/dev/null
rm -f "$out/server.csr" "$out/ext.cnf" "$out/ca.srl"

printf 'odd:%s\n' "s3cret-$RANDOM" >"$out/pass.good"
printf 'odd:wrong\n' >"$out/pass.bad"
htpasswd -Bbn odd "$(cut -d: -f2 "$out/pass.good")" | sed '/^$/d' >"$out/htpasswd"

common='version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: @ROOT@
  delete:
    enabled: true'
cat >"$out/tls.yml" <<YML
$common
http:
  addr: 127.0.0.1:5000
  tls:
    certificate: @DIR@/server.crt
    key: @DIR@/server.key
auth:
  htpasswd:
    realm: odd-test
    path: @DIR@/htpasswd
YML
cat >"$out/plain.yml" <<YML
$common
http:
  addr: 127.0.0.1:5001
YML

for b in simple.img junk.img; do
	echo "$b sha256:$(sha256sum "$data/blobs/$b" | cut -d' ' -f1)"
done >"$out/map"
# A name that maps to a digest never pushed (the "blob missing" case).
echo "gone.img sha256:$(printf gone | sha256sum | cut -d' ' -f1)" >>"$out/map"
