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
RACE_TESTS=${RACE_TESTS:-boot.sh lifetime churn stress.sh share race_umount race_kill race_release}
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
# daemon's static build and unit tests now, the race kernel's build while
# the test kernel's boots run (those guests often wait on timers and
# daemons, leaving a core free).
daemon_job() {
	"$CFOD_TOP/scripts/build-daemon.sh" >"$CFOD_TOP/out/check-daemon-build.log" 2>&1 &&
		echo ok >"$CFOD_TOP/out/check-daemon-build.rc"
	(cd "$CFOD_TOP/daemon" && "$CARGO" test --quiet -j2) \
		>"$CFOD_TOP/out/check-daemon-test.log" 2>&1 &&
		echo ok >"$CFOD_TOP/out/check-daemon-test.rc"
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
	tail -n 3 "$CFOD_TOP/out/check-daemon-test.log"
	step "daemon unit tests" test -f "$CFOD_TOP/out/check-daemon-test.rc" ||
		tail -n 40 "$CFOD_TOP/out/check-daemon-test.log"
fi
step "rustfmt clean" "$CFOD_TOP/scripts/lint.sh" fmt
step "clippy clean" sh -c "'$CFOD_TOP/scripts/lint.sh' clippy >/dev/null"

count() { # count NAME: add a finished boot's totals
	if [ -f "$CFOD_TOP/out/$1/totals" ]; then
		read -r p f s <"$CFOD_TOP/out/$1/totals"
		passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	else
		point FAIL "$1: no result"
	fi
}
# The backends' boots run side by side: the guests spend much of their
# time waiting (on the daemon, on timers), so two share the two cores well.
# Each boot's output is kept and printed whole once both are done.
boot_pids=()
boots_start() { # boots_start PREFIX KIND TESTS
	local b
	boot_pids=()
	for b in $backends; do
		rm -f "$CFOD_TOP/out/$1-$b/totals"
		"$CFOD_TOP/scripts/vm-run.sh" --kind "$2" --name "$1-$b" --backend "$b" \
			--tests "$3" --test-timeout 600 --timeout 3600 \
			>"$CFOD_TOP/out/$1-$b.log" 2>&1 &
		boot_pids+=($!)
	done
}
boots_wait() { # boots_wait PREFIX
	local b
	wait "${boot_pids[@]}"
	for b in $backends; do
		cat "$CFOD_TOP/out/$1-$b.log"
		count "$1-$b"
	done
}
boots_start check test all
race_ok=0
if [ "$RACE" = 1 ]; then
	if nice -n 10 "$CFOD_TOP/scripts/build-kernel.sh" race >"$CFOD_TOP/out/check-race-build.log" 2>&1; then
		step "module builds for the race kernel" \
			"$CFOD_TOP/scripts/build-module.sh" "$(kernel_build_dir race)" &&
			step "the KCSAN canary builds" \
				"$CFOD_TOP/scripts/build-kmod.sh" "$(kernel_build_dir race)" &&
			race_ok=1
	else
		tail -n 30 "$CFOD_TOP/out/check-race-build.log"
		point FAIL "race kernel builds"
	fi
fi
boots_wait check
if [ "$race_ok" = 1 ]; then
	boots_start race race "$RACE_TESTS"
	boots_wait race
	# The KCSAN gate's self-test: a real report, gated only when its
	# functions are in the gate.
	"$CFOD_TOP/scripts/vm-run.sh" --kind race --name race-canary --tests kcsan_canary.sh \
		--expect-kcsan cfod_canary_racy_write --timeout 900
	count race-canary
fi
"$CFOD_TOP/scripts/vm-run.sh" --name selftest --tests lkdtm_warning.sh --expect-splat --timeout 600
count selftest

tail=""
[ "$skipped" -gt 0 ] && tail=", $skipped skipped"
echo "$passed passed, $failed failed$tail"
[ "$failed" -eq 0 ]
