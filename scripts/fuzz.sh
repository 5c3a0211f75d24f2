#!/usr/bin/env bash
# The differential protocol fuzzer in a boot of its own (tests/fuzz.c and
# tests/fuzz.sh): the same seeds on the built-in C code and on the Rust
# module, whose logs must match. make check runs it in each backend's boot
# for a time budget, from fixed seeds; this is for replays and long runs.
#   scripts/fuzz.sh                    100 seeds from 1
#   SEED=N [COUNT=N] scripts/fuzz.sh   COUNT seeds from N (COUNT 1 by
#                                      default: a replay of one seed)
#   MINUTES=N scripts/fuzz.sh          rounds of 100 random seeds for N minutes
#   ZERO_SIZE=1 ...                    copens of size 0 too (they reach an
#                                      erofs WARN_ON: Documentation/tests.md)
# The logs of every trace stay in out/fuzz/results/fuzz-c and fuzz-rust.
set -euo pipefail
. "$(dirname "$0")/env.sh"
"$CFOD_TOP/scripts/setup.sh" >/dev/null
"$CFOD_TOP/scripts/build-kernel.sh" test
"$CFOD_TOP/scripts/build-module.sh"
"$CFOD_TOP/scripts/build-tests.sh"
"$CFOD_TOP/scripts/mkdata.sh"
args=()
if [ -n "${SEED:-}" ]; then
	args+=("FUZZ_SEED=$SEED" "FUZZ_COUNT=${COUNT:-1}")
elif [ -n "${COUNT:-}" ]; then
	args+=("FUZZ_COUNT=$COUNT")
elif [ "${MINUTES:-0}" = 0 ]; then
	args+=("FUZZ_COUNT=100")
fi
minutes=${MINUTES:-0}
[ "$minutes" -gt 0 ] && args+=("FUZZ_MINUTES=$minutes")
[ -n "${ZERO_SIZE:-}" ] && args+=("FUZZ_ZERO_SIZE=$ZERO_SIZE")
# The guest's limit: the run's minutes and a margin for the last round.
limit=$((minutes * 60 + 1800))
exec "$CFOD_TOP/scripts/vm-run.sh" --name fuzz --backend c --tests fuzz.sh \
	--timeout $((limit + 300)) --test-timeout "$limit" --append "${args[*]}"
