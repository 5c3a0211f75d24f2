#!/bin/sh
# Runs inside the guest (started by tests/guest/init): every selected test
# program, each with a timeout, as KTAP. A program's own KTAP output is
# indented as its subtests. Exit status 0 = pass, 4 = skip, else fail.
set -o pipefail
T=/host/tests
RES=/host/${CFOD_RESULTS:-out/results}
BIN=/host/out/bin
export T RES BIN CFOD_BACKEND
. "$T/lib/ktap.sh"
mkdir -p "$RES"
TO=${CFOD_TIMEOUT:-300}

if [ -z "$CFOD_TESTS" ] || [ "$CFOD_TESTS" = all ]; then
	list=$(grep -v '^#' "$T/list" | grep -v '^$' | awk '{print $1}')
else
	list=$(echo "$CFOD_TESTS" | tr ',' ' ')
fi
n=$(echo $list | wc -w)

echo "KTAP version 1"
echo "# backend: $CFOD_BACKEND, kernel: $(uname -r)"
echo "1..$n"
i=0
for t in $list; do
	i=$((i + 1))
	echo "cfod: begin $t (backend $CFOD_BACKEND)" >/dev/kmsg
	echo "# $t"
	log=$RES/$(echo "$t" | tr / _).log
	# Output to a file, not a pipe: a killed test's children could hold a
	# pipe open forever.
	# Each test runs against the backend of the run: the Rust module
	# loaded for rust, not loaded for c (tests that load and unload it
	# themselves leave it as they found it or this puts it right).
	backend_setup || echo "# cannot set up backend $CFOD_BACKEND"
	prog=$T/$t
	[ -f "$prog" ] || prog=$BIN/$t	# C tests are built into out/bin
	# A test's own limit from tests/list ("NAME SECONDS"), if above the run's.
	to=$(awk -v t="$t" '$1 == t && $2 ~ /^[0-9]+$/ {print $2}' "$T/list")
	[ -n "$to" ] && [ "$to" -gt "$TO" ] || to=$TO
	t0=$(date +%s)
	timeout -s KILL "$to" "$prog" >"$log" 2>&1
	rc=$?
	sed 's/^/  /' "$log"
	echo "# $t: $(($(date +%s) - t0)) s of guest time"
	echo "cfod: end $t rc=$rc" >/dev/kmsg
	# Backstop: nothing a test started survives it (readers blocked in the
	# test's mounts are killable; daemons live in $BIN).
	for m in $(grep ' /mnt/' /proc/mounts | cut -d' ' -f2 | sort -r); do
		fuser -k -m "$m" >/dev/null 2>&1
		umount -l "$m" 2>/dev/null
	done
	killmatch KILL "$BIN/"
	killmatch KILL "httpd -f"
	# A killed daemon's devnode release (unbind, withdrawal) can outlast
	# its exit; the next test's bind would meet the old cache. Wait until
	# the devnode opens (it admits one opener at a time), at most 120 s.
	if [ "$rc" != 0 ] && [ -e /dev/cachefiles ]; then
		w=0
		until (exec 9<>/dev/cachefiles) 2>/dev/null; do
			[ $w -ge 1200 ] && { echo "# the devnode was still busy 120 s after $t"; break; }
			sleep 0.1
			w=$((w + 1))
		done
	fi
	case $rc in
	0) echo "ok $i $t" ;;
	4) echo "ok $i $t # SKIP" ;;
	137) echo "not ok $i $t # TIMEOUT after ${to}s" ;;
	*) echo "not ok $i $t # exit $rc" ;;
	esac
done

# A last kmemleak scan over everything the run did; the host's splat check
# fails the run if it reports anything.
if [ -w /sys/kernel/debug/kmemleak ]; then
	echo scan >/sys/kernel/debug/kmemleak
	sleep 5
	echo scan >/sys/kernel/debug/kmemleak
	if [ -s /sys/kernel/debug/kmemleak ]; then
		echo "# kmemleak reports:"
		sed 's/^/#   /' /sys/kernel/debug/kmemleak | head -60
	fi
fi
