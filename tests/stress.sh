#!/bin/sh
# Bounded concurrency stress (tests/stress.c): several daemon threads serve
# mounts while a chaos thread closes anonymous fds (forcing reopens) and
# writes "restore" at random and another hammers poll(), over several
# bind/unbind rounds (2 by default; STRESS_ROUNDS sets more); every round's
# tree must read back identical outside big/. The chaos runs through the
# unmount and a poll is in flight when the devnode is closed, both counted
# (see stress.c).
# With the Rust backend, its statistics must end with nothing in flight.
. "$T/lib/ktap.sh"
backend_setup || exit 1
mkdir -p /mnt/stress /mnt/stress2
"$BIN/stress" /host/out/data/blobs "${STRESS_ROUNDS:-2}"
rc=$?
S=$RS_TOTALS
if [ "$CFOD_BACKEND" = rust ] && [ -r $S ]; then
	sed 's/^/# stats: /' $S
	grep -qx 'in_flight: 0' $S || { echo "# requests still in flight"; rc=1; }
fi
exit $rc
