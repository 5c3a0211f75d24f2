#!/usr/bin/env bash
# The main job: boot the patched kernel, mount an erofs image whose blob is
# served on demand by a user daemon, list it, read part of it, and show how
# much of the blob was fetched into the cache.
#   scripts/demo.sh [c|rust]
set -euo pipefail
. "$(dirname "$0")/env.sh"
backend=${1:-c}
"$CFOD_TOP/scripts/setup.sh"
"$CFOD_TOP/scripts/build-kernel.sh" test
"$CFOD_TOP/scripts/build-module.sh"
"$CFOD_TOP/scripts/build-tests.sh"
"$CFOD_TOP/scripts/mkdata.sh"
"$CFOD_TOP/scripts/vm-run.sh" --name demo --backend "$backend" --tests demo/demo.sh
