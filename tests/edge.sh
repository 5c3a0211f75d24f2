#!/bin/sh
# Edge cases with the test acting as the daemon (tests/edge.c): malformed
# commands and copens with the errno each gives the mount, the anonymous fd
# misused, failover through restore and reopen, unmounts (plain and lazy)
# with a reopen pending, the devnode closed with a READ pending, and the
# cache killed by injected I/O errors with a READ pending.
mkdir -p /mnt/edge /mnt/edge2
exec "$BIN/edge"
