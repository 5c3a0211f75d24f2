#!/usr/bin/env bash
# rustfmt and clippy for the kernel module, with the kernel's own settings and
# Debian's 1.96 toolchain; the daemon crate's with cargo when it exists.
#   scripts/lint.sh fmt|clippy
set -euo pipefail
. "$(dirname "$0")/env.sh"
kdir=${KDIR:-$(kernel_build_dir test)}
case "${1:-all}" in
fmt)
	# Every file of the crate, the abstractions' subfolders included.
	find "$CFOD_TOP/rust" -name '*.rs' -print0 | sort -z |
		xargs -0 /usr/bin/rustfmt --check --edition 2021 \
			--config-path "$CFOD_CACHE/src/.rustfmt.toml"
	if [ -f "$CFOD_TOP/daemon/Cargo.toml" ]; then
		(cd "$CFOD_TOP/daemon" && "$CARGO" fmt --check)
	fi
	;;
clippy)
	log=$(mktemp)
	# CLIPPY=1 changes the rustc command line, so kbuild rebuilds the crate
	# with clippy-driver; any warning fails.
	"$CFOD_TOP/scripts/build-module.sh" "$kdir" CLIPPY=1 2>&1 | tee "$log"
	if grep -qE '^(warning|error)' "$log"; then rm -f "$log"; exit 1; fi
	rm -f "$log"
	"$CFOD_TOP/scripts/build-module.sh" "$kdir"
	if [ -f "$CFOD_TOP/daemon/Cargo.toml" ]; then
		(cd "$CFOD_TOP/daemon" && "$CARGO" clippy --quiet --all-targets -- -D warnings)
	fi
	;;
*) echo "usage: lint.sh fmt|clippy" >&2; exit 2 ;;
esac
