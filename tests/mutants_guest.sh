#!/bin/sh
# The guest side of scripts/mutants.sh for Rust mutants, many in one boot:
# for each line "ID TEST..." of /host/out/mutants/plan, load that mutant's
# module (/host/out/mutants/ID.ko; none for a C mutant, whose kernel is the
# mutant), run its tests, clean up as run-guest.sh
# does, unload it. Each test's KTAP goes to $RES/mutant-ID.log; the host
# judges it. A module that does not unload stops the batch (the kernel may
# be in a state the next mutant should not inherit). Not in tests/list.
. "$T/lib/ktap.sh"
PLAN=/host/out/mutants/plan
TO=${MUTANT_TEST_TIMEOUT:-300}
cleanup() {
	for m in $(grep ' /mnt/' /proc/mounts | cut -d' ' -f2 | sort -r); do
		fuser -k -m "$m" >/dev/null 2>&1
		umount -l "$m" 2>/dev/null
	done
	killmatch KILL "$BIN/"
}
unload() {
	for i in $(seq 50); do
		grep -q '^cachefiles_ondemand_rs ' /proc/modules || return 0
		rmmod cachefiles_ondemand_rs 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}
ko0=$CFOD_KO
n=$(grep -c . "$PLAN")
ktap_plan "$n"
while read -r id tests; do
	[ -n "$id" ] || continue
	log=$RES/mutant-$id.log
	: >"$log"
	if ! unload; then
		ktap_fail "mutant $id: the previous module does not unload, batch stopped"
		break
	fi
	# A C mutant is in the kernel: it runs on the C backend, no module.
	# Tests that load the module themselves (fuzz.sh, trace_cmp.sh) load
	# the mutant's.
	CFOD_KO=$ko0
	if [ -f "/host/out/mutants/$id.ko" ]; then
		CFOD_KO=/host/out/mutants/$id.ko
		if ! insmod "$CFOD_KO"; then
			ktap_fail "mutant $id: insmod failed"
			continue
		fi
	fi
	export CFOD_KO
	echo "cfod: begin mutant $id" >/dev/kmsg
	for t in $tests; do
		prog=$T/$t
		[ -f "$prog" ] || prog=$BIN/$t
		echo "# $t" >>"$log"
		# A test's own limit from tests/list, if above TO, as run-guest.sh
		# does: fuzz.sh replays every differing seed before it reports.
		to=$(awk -v t="$t" '$1 == t && $2 ~ /^[0-9]+$/ {print $2}' "$T/list")
		[ -n "$to" ] && [ "$to" -gt "$TO" ] || to=$TO
		timeout -s KILL "$to" "$prog" >"$log.$t" 2>&1
		rc=$?
		sed 's/^/  /' "$log.$t" >>"$log"
		rm -f "$log.$t"
		echo "# $t rc=$rc" >>"$log"
		cleanup
	done
	echo "cfod: end mutant $id" >/dev/kmsg
	echo "# end" >>"$log"
	ktap_ok "mutant $id ran: $tests"
done <"$PLAN"
unload
ktap_finish
