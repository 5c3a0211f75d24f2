#!/bin/sh
# Harness self-test for the race kernel, run in a boot of its own by
# scripts/check.sh: load tests/kmod/race_canary.ko (two threads racing on a
# plain counter) and wait for KCSAN's report. The host then checks that
# ktap-summary.py fails the run on it when the canary's functions are in the
# gate, and only lists it when they are not (vm-run.sh --expect-kcsan).
. "$T/lib/ktap.sh"
KO=/host/out/kmod/race/race_canary.ko
ktap_plan 2
ktap_check "the canary module loads" insmod "$KO"
seen=0
for i in $(seq 150); do
	if dmesg | grep -q 'BUG: KCSAN: data-race in cfod_canary_racy'; then
		seen=1
		break
	fi
	sleep 0.2
done
rmmod race_canary
ktap_check "KCSAN reported the canary's race within 30 s" [ $seen = 1 ]
ktap_finish
