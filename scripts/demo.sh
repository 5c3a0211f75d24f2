#!/usr/bin/env bash
# The main job: boot the patched kernel with the Rust backend, start the
# project's daemon (odd) in the guest, mount erofs images whose blobs odd
# serves on demand from a directory and over HTTP, and show what was
# fetched into the cache.
#   scripts/demo.sh [rust|c]        (default rust)
set -euo pipefail
. "$(dirname "$0")/env.sh"
backend=${1:-rust}
"$CFOD_TOP/scripts/setup.sh"
"$CFOD_TOP/scripts/build-kernel.sh" test
"$CFOD_TOP/scripts/build-module.sh"
"$CFOD_TOP/scripts/build-tests.sh"
"$CFOD_TOP/scripts/build-daemon.sh"
"$CFOD_TOP/scripts/mkdata.sh"
"$CFOD_TOP/scripts/vm-run.sh" --name demo --backend "$backend" --tests demo/demo.sh
