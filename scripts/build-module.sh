#!/usr/bin/env bash
# Build cachefiles_ondemand_rs.ko against a kernel build directory.
#   scripts/build-module.sh [KDIR] [extra make args, e.g. CLIPPY=1]
set -euo pipefail
. "$(dirname "$0")/env.sh"
kdir=${1:-$(kernel_build_dir test)}
shift || true
make -s -C "$kdir" M="$CFOD_TOP" "${KMAKE_ARGS[@]}" "$@" modules
