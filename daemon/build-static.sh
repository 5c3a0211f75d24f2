#!/bin/sh
# Builds the statically linked release binary of `odd` for
# x86_64-unknown-linux-gnu (for the busybox guest, which has no shared
# libraries) and prints its absolute path on stdout. Cargo's output goes to
# stderr. Works from a fresh checkout: dependencies are fetched from
# crates.io according to Cargo.lock.
#
# Environment: CARGO (default cargo), JOBS (parallel rustc jobs, default 1),
# CARGO_TARGET_DIR (as usual).
set -eu

cd "$(dirname "$0")"
TARGET=x86_64-unknown-linux-gnu
CARGO=${CARGO:-cargo}
JOBS=${JOBS:-1}

# --target keeps the flag away from host artifacts (clap's proc macros).
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    "$CARGO" build --release --locked --target "$TARGET" -j "$JOBS" >&2

BIN="${CARGO_TARGET_DIR:-$PWD/target}/$TARGET/release/odd"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
if [ ! -x "$BIN" ]; then
    echo "build-static.sh: $BIN was not produced" >&2
    exit 1
fi
# Refuse a binary that still needs a dynamic loader or shared libraries.
if command -v readelf >/dev/null 2>&1; then
    if readelf -lW "$BIN" | grep -q 'Requesting program interpreter' ||
        readelf -dW "$BIN" | grep -q '(NEEDED)'; then
        echo "build-static.sh: $BIN is not statically linked" >&2
        exit 1
    fi
fi
echo "$BIN"
