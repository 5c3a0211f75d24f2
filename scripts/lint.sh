#!/usr/bin/env bash
# rustfmt and clippy for the kernel module, with the kernel's own settings and
# Debian's 1.96 toolchain; the daemon crate's with cargo when it exists; and
# the built module's references to panic paths.
#   scripts/lint.sh fmt|clippy|panic
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
panic)
	# Panic-free by construction: the built module (this builds nothing;
	# `make lint` and check.sh build it first) references no panic or
	# bounds-check failure path of `core`. Rust's panics, failed
	# `unwrap`/`expect`/asserts, out-of-bounds indexing and, with
	# CONFIG_RUST_OVERFLOW_CHECKS, overflowing arithmetic all end in an
	# undefined symbol of `core`; matched on the mangled names.
	kind=$(basename "$kdir"); kind=${kind#build-}
	dir=$CFOD_TOP
	[ "$kind" = test ] || dir=$CFOD_TOP/out/modules/$kind
	ko=$dir/cachefiles_ondemand_rs.ko
	if [ ! -f "$ko" ]; then
		echo "lint: $ko is not built (scripts/build-module.sh $kdir)" >&2; exit 1
	fi
	if [ -n "$(find "$CFOD_TOP/rust" "$CFOD_TOP/Kbuild" -newer "$ko" \
		\( -name '*.rs' -o -name '*.c' -o -name '*.h' -o -name Kbuild \) -print -quit)" ]; then
		echo "lint: $ko is older than its sources (scripts/build-module.sh $kdir)" >&2; exit 1
	fi
	pat='panic|panicking|slice_index|slice_start_index|slice_end_index|str_index'
	pat+='|slice_error_fail|len_mismatch_fail|overflow|unwrap_failed|expect_failed'
	pat+='|assert_failed|bounds|begin_unwind'
	bad=$(llvm-nm-19 -u "$ko" | awk '{ print $NF }' | grep -E "$pat" || true)
	if [ -n "$bad" ]; then
		echo "lint: $(basename "$ko") references panic paths:" >&2
		# Each symbol, demangled, with the functions that call it.
		dis=$(llvm-objdump-19 -dr --no-show-raw-insn "$ko")
		while read -r sym; do
			echo "  $(llvm-cxxfilt-19 "$sym")  ($sym)" >&2
			awk -v s="$sym" '/^[0-9a-f]+ <.*>:$/ { fn = $0; sub(/^[0-9a-f]+ </, "", fn); sub(/>:$/, "", fn) }
				index($0, s) && fn != "" { print fn }' <<<"$dis" | sort -u |
				llvm-cxxfilt-19 | sed 's/^/      called from /' >&2
		done <<<"$bad"
		exit 1
	fi
	;;
*) echo "usage: lint.sh fmt|clippy|panic" >&2; exit 2 ;;
esac
