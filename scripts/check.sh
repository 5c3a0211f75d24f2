#!/usr/bin/env bash
# The whole suite from a fresh machine: set-up, kernels (cached), modules,
# test programs and data, lint, then per backend one boot of the debug
# (KASAN) kernel with the whole list and one of the data-race (KCSAN) kernel
# with the concurrency tests, all on SMP vCPUs (default 2), and one boot for
# the harness' self-test. Ends with "N passed, N failed".
#   [SMP=N] [RACE=0] scripts/check.sh [c] [rust]
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
# The test kernel checks a copy to user space of a run-time length against
# the kernel object it reads: the module's copy of an OPEN's keys must take
# that path (uaccess.rs), or the suite never runs it.
step "the test module copies an OPEN's keys through copy_to_user() (CONFIG_HARDENED_USERCOPY)" \
	bash -c 'grep -qx CONFIG_HARDENED_USERCOPY=y "$1/.config" &&
		llvm-nm-19 -u "$2" | grep -qw rust_helper_copy_to_user' _ \
	"$(kernel_build_dir test)" "$CFOD_TOP/cachefiles_ondemand_rs.ko"
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
	step "KCSAN triage matches tests/kcsan-known.txt as meant, plans are checked (ktap-summary-test.py)" \
		python3 "$CFOD_TOP/scripts/ktap-summary-test.py" -q
	step "the icount reports read a count below zero as such, and the curves which points were gated (icount-report-test.py)" \
		python3 "$CFOD_TOP/scripts/icount-report-test.py" -q
	step "rustfmt clean" "$CFOD_TOP/scripts/lint.sh" fmt
	step "clippy clean" nice -n 10 sh -c "'$CFOD_TOP/scripts/lint.sh' clippy >/dev/null"
	step "module references no panic path" "$CFOD_TOP/scripts/lint.sh" panic
}

count() { # count NAME: add a finished boot's totals
	if [ -f "$CFOD_TOP/out/$1/totals" ]; then
		read -r p f s <"$CFOD_TOP/out/$1/totals"
		passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	else
		point FAIL "$1: no result"
	fi
}
# The race kernel is built beside the test kernel's boots, niced below them
# (those guests often wait on timers and daemons, leaving a core free). Its
# host points go to a file, printed in order once the boots are done.
race_state=$CFOD_TOP/out/check-race.state
plain_state=$CFOD_TOP/out/check-plain.state
rm -f "$race_state" "$race_state.points" "$plain_state"
race_build() {
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
# The race kernel, then the unpatched one (whatever became of the first).
race_job() {
	race_build
	plain_job
}
# The unpatched kernel of the test config, for the comparison in selftests().
plain_job() {
	if nice -n 10 "$CFOD_TOP/scripts/build-kernel.sh" plain >"$CFOD_TOP/out/check-plain-build.log" 2>&1; then
		echo "OK the unpatched kernel builds" >>"$race_state.points"
		echo ok >"$plain_state"
	else
		echo "FAIL the unpatched kernel builds" >>"$race_state.points"
		echo fail >"$plain_state"
	fi
}
race_pid=
if [ "$RACE" = 1 ]; then
	race_job &
	race_pid=$!
fi
# One pipeline per backend, side by side (the guests spend much of their
# time waiting, so two share the two cores well): its boot of the test
# kernel with the whole list, then, once the race kernel is there, its boot
# of the race kernel with the concurrency tests. Each boot's output is kept
# and printed whole at the end.
# A boot's limit is a guard against a hung guest, not a budget: a test
# boot takes 40-50 minutes on a slow host (about 35 on a quick one), and
# one at the limit still leaves CI's 90 minutes for the race boot after it.
boot() { # boot NAME KIND BACKEND TESTS
	rm -f "$CFOD_TOP/out/$1/totals"
	"$CFOD_TOP/scripts/vm-run.sh" --kind "$2" --name "$1" --backend "$3" \
		--tests "$4" --test-timeout 600 --timeout 4200 >"$CFOD_TOP/out/$1.log" 2>&1
}
# The harness' self-tests: the splat detector on the test kernel and, with
# the race kernel, the KCSAN gate on a real report (gated only when its
# functions are in the gate). At the end of whichever pipeline ends first,
# beside the other's last boot; not after both. The two self-test boots run
# side by side, then the two comparison boots (vm-run.sh queues a boot
# while the host's VM slots are taken).
selftests() {
	if [ "$RACE" = 1 ] && [ "$(cat "$race_state")" = ok ]; then
		"$CFOD_TOP/scripts/vm-run.sh" --kind race --name race-canary --tests kcsan_canary.sh \
			--expect-kcsan cfod_canary_racy_write --timeout 900 >"$CFOD_TOP/out/race-canary.log" 2>&1 &
	fi
	"$CFOD_TOP/scripts/vm-run.sh" --name selftest --tests lkdtm_warning.sh --expect-splat \
		--timeout 600 >"$CFOD_TOP/out/selftest.log" 2>&1
	wait
	plain_compare
}
# Users who never load a module see no change: the same workload on the
# unpatched kernel and on the patched one (C backend, no module) logs the
# same lines and leaves the same debugfs entries.
plain_compare() {
	local f=$CFOD_TOP/out/plain-cmp.points
	rm -f "$f"
	[ "$RACE" = 1 ] || return 0
	while [ ! -f "$plain_state" ]; do sleep 5; done
	[ "$(cat "$plain_state")" = ok ] || return 0
	# After its capture, the unpatched kernel's boot provokes the known
	# upstream lockdep report (tests/lockdep_upstream.sh): it must come and
	# the host must recognise it from tests/lockdep-known.txt.
	"$CFOD_TOP/scripts/vm-run.sh" --kind plain --name plain-ref \
		--tests plain_cmp.sh,lockdep_upstream.sh --expect-lockdep-known \
		--timeout 900 >"$CFOD_TOP/out/plain-ref.log" 2>&1 &
	"$CFOD_TOP/scripts/vm-run.sh" --kind test --name plain-patched --tests plain_cmp.sh \
		--timeout 900 >"$CFOD_TOP/out/plain-patched.log" 2>&1
	wait
	local a=$CFOD_TOP/out/plain-ref/results/plain_cmp.capture
	local b=$CFOD_TOP/out/plain-patched/results/plain_cmp.capture
	if [ -s "$a" ] && [ -s "$b" ] && diff -u "$a" "$b" >"$CFOD_TOP/out/plain-cmp.diff"; then
		echo "OK without a module the patched kernel logs and shows in debugfs what the unpatched one does ($(wc -l <"$a") lines)" >"$f"
	else
		echo "FAIL without a module the patched kernel logs and shows in debugfs what the unpatched one does (out/plain-cmp.diff)" >"$f"
	fi
}
selftests_claim=$CFOD_TOP/out/.selftests-claimed
rm -rf "$selftests_claim"
pipeline() { # pipeline BACKEND
	boot "check-$1" test "$1" all
	if [ "$RACE" = 1 ]; then
		while [ ! -f "$race_state" ]; do sleep 5; done
		[ "$(cat "$race_state")" = ok ] && boot "race-$1" race "$1" "$RACE_TESTS"
	fi
	# The first pipeline to get here runs the self-tests (mkdir is atomic).
	if mkdir "$selftests_claim" 2>/dev/null; then selftests; fi
	return 0
}
rm -f "$CFOD_TOP/out/race-canary.log" "$CFOD_TOP/out/selftest.log"
pids=()
for b in $backends; do
	pipeline "$b" &
	pids+=($!)
done
host_checks
wait "${pids[@]}"
for b in $backends; do
	cat "$CFOD_TOP/out/check-$b.log"
	count "check-$b"
done
race_ok=0
if [ -n "$race_pid" ]; then
	wait "$race_pid"
	while read -r r d; do
		point "$r" "$d"
	done <"$race_state.points"
	if [ "$(cat "$race_state")" = ok ]; then
		race_ok=1
		for b in $backends; do
			cat "$CFOD_TOP/out/race-$b.log"
			count "race-$b"
		done
	else
		tail -n 30 "$CFOD_TOP/out/check-race-build.log"
	fi
fi
if [ "$race_ok" = 1 ]; then
	cat "$CFOD_TOP/out/race-canary.log"
	count race-canary
fi
cat "$CFOD_TOP/out/selftest.log" 2>/dev/null
count selftest
if [ "$RACE" = 1 ] && [ -n "$race_pid" ]; then
	for n in plain-ref plain-patched; do
		cat "$CFOD_TOP/out/$n.log" 2>/dev/null
		count "$n"
	done
	if [ -f "$CFOD_TOP/out/plain-cmp.points" ]; then
		read -r r d <"$CFOD_TOP/out/plain-cmp.points"
		point "$r" "$d"
		[ "$r" = OK ] || head -n 40 "$CFOD_TOP/out/plain-cmp.diff"
	else
		point FAIL "the unpatched-kernel comparison ran"
	fi
fi

tail=""
[ "$skipped" -gt 0 ] && tail=", $skipped skipped"
echo "$passed passed, $failed failed$tail"
[ "$failed" -eq 0 ]
