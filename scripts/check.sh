#!/usr/bin/env bash
# The whole suite from a fresh machine: set-up, kernels (cached), modules,
# test programs and data, lint, then per backend one boot of the debug
# (KASAN) kernel with the whole list and one of the data-race (KCSAN) kernel
# with the concurrency tests, all on SMP vCPUs (default 2), and the
# harness' self-tests, in three lanes of guests (CHECK_LANES). Ends with
# "N passed, N failed".
#   [SMP=N] [RACE=0] [CHECK_LANES=N] scripts/check.sh [c] [rust]
set -uo pipefail
. "$(dirname "$0")/env.sh"
backends=${*:-c rust}
export SMP=${SMP:-2}
# The concurrency tests, run again on the race kernel.
RACE_TESTS=${RACE_TESTS:-boot.sh lifetime churn stress.sh share race_umount race_kill race_release soak.sh odd_failover.sh}
# The race boot runs by default; RACE=0 leaves it out of a run.
RACE=${RACE:-1}
passed=0 failed=0 skipped=0
point() { # point OK|FAIL description
	if [ "$1" = OK ]; then passed=$((passed + 1)); echo "ok - $2"
	else failed=$((failed + 1)); echo "not ok - $2"; fi
}
step() { # step description command...: a host-side test point
	local d=$1; shift
	if "$@"; then point OK "$d"; else point FAIL "$d"; return 1; fi
}
fatal() { echo "check: $*" >&2; echo "$passed passed, $((failed + 1)) failed"; exit 1; }

"$CFOD_TOP/scripts/setup.sh" || fatal "set-up failed"
mkdir -p "$CFOD_TOP/out"
# Time is the budget (a fresh machine must finish well within the hour), so
# what needs no kernel runs beside the kernel builds, niced below them: the
# daemon's static build now (the guests need it), the race kernel's build
# while the test kernel's boots run (those guests often wait on timers and
# daemons, leaving a core free), and the host-only checks (daemon unit
# tests, lint) once the boots have started.
daemon_job() {
	"$CFOD_TOP/scripts/build-daemon.sh" >"$CFOD_TOP/out/check-daemon-build.log" 2>&1 &&
		echo ok >"$CFOD_TOP/out/check-daemon-build.rc"
}
rm -f "$CFOD_TOP"/out/check-daemon-*.rc
daemon_pid=
if [ -f "$CFOD_TOP/daemon/Cargo.toml" ]; then
	nice -n 10 bash -c "$(declare -f daemon_job); CFOD_TOP='$CFOD_TOP' CARGO='$CARGO' daemon_job" &
	daemon_pid=$!
fi
"$CFOD_TOP/scripts/build-kernel.sh" test || fatal "kernel build failed"
step "module builds" "$CFOD_TOP/scripts/build-module.sh" || fatal "module build failed"
step "test programs build" "$CFOD_TOP/scripts/build-tests.sh" || fatal "test build failed"
step "test data" "$CFOD_TOP/scripts/mkdata.sh" || fatal "test data failed"
if [ -n "$daemon_pid" ]; then
	wait "$daemon_pid"
	step "daemon builds (static)" test -f "$CFOD_TOP/out/check-daemon-build.rc" ||
		tail -n 30 "$CFOD_TOP/out/check-daemon-build.log"
fi
# The host-only checks, run beside the boots (niced).
host_checks() {
	if [ -f "$CFOD_TOP/daemon/Cargo.toml" ]; then
		(cd "$CFOD_TOP/daemon" && nice -n 10 "$CARGO" test --quiet -j2) \
			>"$CFOD_TOP/out/check-daemon-test.log" 2>&1
		local rc=$?
		tail -n 3 "$CFOD_TOP/out/check-daemon-test.log"
		[ $rc = 0 ] && point OK "daemon unit tests" ||
			{ point FAIL "daemon unit tests"; tail -n 40 "$CFOD_TOP/out/check-daemon-test.log"; }
		step "daemon/odd.service passes systemd-analyze verify" "$CFOD_TOP/scripts/verify-unit.sh"
	fi
	step "rustfmt clean" "$CFOD_TOP/scripts/lint.sh" fmt
	step "clippy clean" nice -n 10 sh -c "'$CFOD_TOP/scripts/lint.sh' clippy >/dev/null"
}

count() { # count NAME: add a finished boot's totals
	if [ -f "$CFOD_TOP/out/$1/totals" ]; then
		read -r p f s <"$CFOD_TOP/out/$1/totals"
		passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	else
		point FAIL "$1: no result"
	fi
}
# The race kernel is built beside the test kernel's boots, niced below them.
# Its host points go to a file, printed in order once the boots are done.
race_state=$CFOD_TOP/out/check-race.state
rm -f "$race_state" "$race_state.points"
race_job() {
	local kd
	if ! nice -n 10 "$CFOD_TOP/scripts/build-kernel.sh" race >"$CFOD_TOP/out/check-race-build.log" 2>&1; then
		echo "FAIL race kernel builds" >>"$race_state.points"
		echo fail >"$race_state"
		return
	fi
	kd=$(kernel_build_dir race)
	if "$CFOD_TOP/scripts/build-module.sh" "$kd" >>"$CFOD_TOP/out/check-race-build.log" 2>&1; then
		echo "OK module builds for the race kernel" >>"$race_state.points"
	else
		echo "FAIL module builds for the race kernel" >>"$race_state.points"
		echo fail >"$race_state"
		return
	fi
	if "$CFOD_TOP/scripts/build-kmod.sh" "$kd" >>"$CFOD_TOP/out/check-race-build.log" 2>&1; then
		echo "OK the KCSAN canary builds" >>"$race_state.points"
		echo ok >"$race_state"
	else
		echo "FAIL the KCSAN canary builds" >>"$race_state.points"
		echo fail >"$race_state"
	fi
}
race_pid=
if [ "$RACE" = 1 ]; then
	race_job &
	race_pid=$!
fi
# Three lanes of boots, side by side (the guests spend much of their time
# waiting on timers, delays and daemons: a third guest uses what two leave
# idle; VM_SLOTS is set to the lanes): the test kernel's boot with the whole
# list for each backend, and a lane for the rest: the splat detector's
# self-test (test kernel), then, once the race kernel is there, its boot
# with the concurrency tests for each backend and the KCSAN gate's
# self-test (a real report, gated only when its function is in the gate).
# Each boot's output is kept and printed whole at the end.
export VM_SLOTS=${CHECK_LANES:-3}
boot() { # boot NAME KIND BACKEND TESTS
	rm -f "$CFOD_TOP/out/$1/totals"
	"$CFOD_TOP/scripts/vm-run.sh" --kind "$2" --name "$1" --backend "$3" \
		--tests "$4" --test-timeout 600 --timeout 3600 >"$CFOD_TOP/out/$1.log" 2>&1
}
other_lane() {
	local b
	rm -f "$CFOD_TOP/out/selftest/totals"
	"$CFOD_TOP/scripts/vm-run.sh" --name selftest --tests lkdtm_warning.sh --expect-splat \
		--timeout 600 >"$CFOD_TOP/out/selftest.log" 2>&1
	[ "$RACE" = 1 ] || return 0
	while [ ! -f "$race_state" ]; do sleep 5; done
	[ "$(cat "$race_state")" = ok ] || return 0
	for b in $backends; do
		boot "race-$b" race "$b" "$RACE_TESTS"
	done
	rm -f "$CFOD_TOP/out/race-canary/totals"
	"$CFOD_TOP/scripts/vm-run.sh" --kind race --name race-canary --tests kcsan_canary.sh \
		--expect-kcsan cfod_canary_racy_write --timeout 900 >"$CFOD_TOP/out/race-canary.log" 2>&1
}
pids=()
for b in $backends; do
	boot "check-$b" test "$b" all &
	pids+=($!)
done
other_lane &
pids+=($!)
host_checks
wait "${pids[@]}"
for b in $backends; do
	cat "$CFOD_TOP/out/check-$b.log"
	count "check-$b"
done
if [ -n "$race_pid" ]; then
	wait "$race_pid"
	while read -r r d; do
		point "$r" "$d"
	done <"$race_state.points"
	if [ "$(cat "$race_state")" = ok ]; then
		for b in $backends; do
			cat "$CFOD_TOP/out/race-$b.log"
			count "race-$b"
		done
		cat "$CFOD_TOP/out/race-canary.log"
		count race-canary
	else
		tail -n 30 "$CFOD_TOP/out/check-race-build.log"
	fi
fi
cat "$CFOD_TOP/out/selftest.log"
count selftest

tail=""
[ "$skipped" -gt 0 ] && tail=", $skipped skipped"
echo "$passed passed, $failed failed$tail"
[ "$failed" -eq 0 ]
