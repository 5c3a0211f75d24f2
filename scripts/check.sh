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

run() { # run NAME vm-run args...
	local name=$1; shift
	"$CFOD_TOP/scripts/vm-run.sh" --name "$name" "$@"
	if [ -f "$CFOD_TOP/out/$name/totals" ]; then
		read -r p f s <"$CFOD_TOP/out/$name/totals"
		passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	else
		point FAIL "$name: no result"
	fi
}
for b in $backends; do
	run "check-$b" --backend "$b"
done
run selftest --tests lkdtm_warning.sh --expect-splat --timeout 600

tail=""
[ "$skipped" -gt 0 ] && tail=", $skipped skipped"
echo "$passed passed, $failed failed$tail"
[ "$failed" -eq 0 ]
