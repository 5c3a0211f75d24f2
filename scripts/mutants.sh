#!/usr/bin/env bash
# Deliberate breakage: the suite must notice. Each mutant changes one
# behaviour of the Rust backend (a wrong errno, a missing check), rebuilds
# the module and runs the test that covers it on the Rust backend; the test
# has to FAIL. The sources are restored afterwards, whatever happens, and the
# module rebuilt. Prints one test point per mutant ("killed") and the usual
# closing line.
#   scripts/mutants.sh [N...]     (all mutants by default)
set -uo pipefail
. "$(dirname "$0")/env.sh"
KDIR=${KDIR:-$(kernel_build_dir test)}

# id|file|old text|new text|test that must fail
MUTANTS=(
	"1|rust/daemon.rs|        .ok_or(EINVAL)?;\n    let object|        .ok_or(ENOENT)?;\n    let object|copen"
	"2|rust/daemon.rs|(EINVAL.to_errno(), Err(EINVAL))|(EINVAL.to_errno(), Ok(()))|copen"
	"3|rust/anon_fd.rs|            .ok_or(EINVAL)?;|            .ok_or(ENOENT)?;|anonfd"
	"4|rust/anon_fd.rs|        let file = this.object.backing_file().ok_or_else(errno::enobufs)?;\n        let pos|        let file = this.object.backing_file().ok_or(EIO)?;\n        let pos|anonfd"
	"5|rust/cache.rs|        q.set_mark(id as usize, NEW);\n        self.stats|        self.stats|copen"
)

passed=0 failed=0
backup=$(mktemp -d)
restore() {
	cp -a "$backup"/rust/. "$CFOD_TOP/rust/"
}
trap 'restore; rm -rf "$backup"' EXIT
mkdir -p "$backup/rust"
cp -a "$CFOD_TOP"/rust/. "$backup/rust/"

want=" ${*:-} "
for m in "${MUTANTS[@]}"; do
	IFS='|' read -r id file old new test <<<"$m"
	[ "$want" = "  " ] || [[ "$want" == *" $id "* ]] || continue
	restore
	if ! python3 - "$CFOD_TOP/$file" "$old" "$new" <<'PY'
import sys
path, old, new = sys.argv[1], sys.argv[2].replace("\\n", "\n"), sys.argv[3].replace("\\n", "\n")
text = open(path).read()
if text.count(old) != 1:
    sys.exit(f"mutant: {old!r} occurs {text.count(old)} times in {path}")
open(path, "w").write(text.replace(old, new))
PY
	then
		echo "not ok - mutant $id: does not apply"; failed=$((failed + 1)); continue
	fi
	echo "# mutant $id: $file: $(echo -e "$old" | head -n1 | sed 's/^ *//') -> $(echo -e "$new" | head -n1 | sed 's/^ *//')"
	if ! "$CFOD_TOP/scripts/build-module.sh" "$KDIR" >"$CFOD_TOP/out/mutant-$id.build.log" 2>&1; then
		echo "not ok - mutant $id: does not build (see out/mutant-$id.build.log)"
		failed=$((failed + 1)); continue
	fi
	if "$CFOD_TOP/scripts/vm-run.sh" --backend rust --tests "$test" --name "mutant-$id" \
		--timeout 900 >"$CFOD_TOP/out/mutant-$id.log" 2>&1; then
		echo "not ok - mutant $id survived: $test still passes"; failed=$((failed + 1))
	else
		echo "ok - mutant $id killed by $test: $(grep -m1 '^ *not ok' "$CFOD_TOP/out/mutant-$id/ktap.log" | sed 's/^ *//')"
		passed=$((passed + 1))
	fi
done
restore
"$CFOD_TOP/scripts/build-module.sh" "$KDIR" >/dev/null 2>&1 || echo "# warning: the clean module did not rebuild"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
