#!/usr/bin/env bash
# Build the test-only kernel modules of tests/kmod (the KCSAN canary) against
# a kernel build directory, from a copy in out/kmod/KIND.
#   scripts/build-kmod.sh KDIR
set -euo pipefail
. "$(dirname "$0")/env.sh"
kdir=${1:?usage: build-kmod.sh KDIR}
kind=$(basename "$kdir"); kind=${kind#build-}
dir=$CFOD_TOP/out/kmod/$kind
mkdir -p "$dir"
cp -a "$CFOD_TOP/tests/kmod/." "$dir/"
make -s -C "$kdir" M="$dir" "${KMAKE_ARGS[@]}" modules
