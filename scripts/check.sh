#!/usr/bin/env bash
# The whole suite from a fresh machine: set-up, kernel (cached), module, test
# programs and data, lint, then one boot of the debug kernel per backend and
# one for the harness' self-test. Ends with "N passed, N failed".
#   scripts/check.sh [c] [rust]
set -uo pipefail
. "$(dirname "$0")/env.sh"
backends=${*:-c rust}
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
"$CFOD_TOP/scripts/build-kernel.sh" test || fatal "kernel build failed"
step "module builds" "$CFOD_TOP/scripts/build-module.sh" || fatal "module build failed"
step "test programs build" "$CFOD_TOP/scripts/build-tests.sh" || fatal "test build failed"
step "test data" "$CFOD_TOP/scripts/mkdata.sh" || fatal "test data failed"
if [ -f "$CFOD_TOP/daemon/Cargo.toml" ]; then
	step "daemon builds (static)" "$CFOD_TOP/scripts/build-daemon.sh"
	step "daemon unit tests" sh -c "cd '$CFOD_TOP/daemon' && '$CARGO' test --quiet -j2 2>&1 | tail -n 3"
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
mkdir -p "$CFOD_TOP/out"
pids=()
for b in $backends; do
	rm -f "$CFOD_TOP/out/check-$b/totals"
	"$CFOD_TOP/scripts/vm-run.sh" --name "check-$b" --backend "$b" \
		--test-timeout 600 --timeout 3600 \
		>"$CFOD_TOP/out/check-$b.log" 2>&1 &
	pids+=($!)
done
wait "${pids[@]}"
for b in $backends; do
	cat "$CFOD_TOP/out/check-$b.log"
	count "check-$b"
done
"$CFOD_TOP/scripts/vm-run.sh" --name selftest --tests lkdtm_warning.sh --expect-splat --timeout 600
count selftest

tail=""
[ "$skipped" -gt 0 ] && tail=", $skipped skipped"
echo "$passed passed, $failed failed$tail"
[ "$failed" -eq 0 ]
