#!/bin/sh
# Edge cases with the test acting as the daemon (tests/edge.c): the cache
# killed by injected I/O errors with requests pending, unmount while a
# reopen OPEN is pending, the devnode closed with a reader waiting, failover
# through restore and reopen, and the error cases of copen and the
# anonymous fd again from other angles.
. "$T/lib/ktap.sh"
backend_setup || exit 1
rm -rf /cache/edge-$CFOD_BACKEND
mkdir -p /cache/edge-$CFOD_BACKEND /mnt/edge /mnt/edge2
TREE=/host/out/data/tree "$BIN/edge" /cache/edge-$CFOD_BACKEND /host/out/data/blobs /host/out/data/tree
