#!/usr/bin/env bash
# Build the static odd daemon and put it where the guest finds it (out/bin).
set -euo pipefail
. "$(dirname "$0")/env.sh"
mkdir -p "$CFOD_TOP/out/bin"
bin=$(JOBS=$(nproc) "$CFOD_TOP/daemon/build-static.sh")
cp "$bin" "$CFOD_TOP/out/bin/odd"
