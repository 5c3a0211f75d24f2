#!/usr/bin/env bash
# Build cachefiles_ondemand_rs.ko against a kernel build directory.
#   scripts/build-module.sh [KDIR] [extra make args, e.g. CLIPPY=1]
set -euo pipefail
. "$(dirname "$0")/env.sh"
kdir=${1:-$(kernel_build_dir test)}
shift || true
# The test kernel's module is built in place (the tree's top, where lint
# and the tests expect it); a module for another kernel kind is built from a
# copy of the sources in out/modules/KIND, so the two never mix objects.
kind=$(basename "$kdir"); kind=${kind#build-}
dir=$CFOD_TOP
if [ "$kind" != test ]; then
	dir=$CFOD_TOP/out/modules/$kind
	mkdir -p "$dir"
	rm -rf "$dir/rust"
	cp -a "$CFOD_TOP/Kbuild" "$CFOD_TOP/rust" "$dir/"
fi
make -s -C "$kdir" M="$dir" "${KMAKE_ARGS[@]}" "$@" modules
