#!/usr/bin/env bash
# Check that the patch series builds with CONFIG_CACHEFILES_ONDEMAND off:
# compile cachefiles and erofs in a tinyconfig with the option disabled.
set -euo pipefail
. "$(dirname "$0")/env.sh"
"$CFOD_TOP/scripts/build-kernel.sh" test >/dev/null   # applies the series
out=$CFOD_CACHE/build-ondemand-off
mkdir -p "$out"
kmake() { make -s -C "$CFOD_CACHE/src" O="$out" "${KMAKE_ARGS[@]}" "$@"; }
kmake tinyconfig >/dev/null
cat >"$out/off.config" <<'CFG'
CONFIG_64BIT=y
CONFIG_BLOCK=y
CONFIG_NET=y
CONFIG_NET_9P=y
CONFIG_NETWORK_FILESYSTEMS=y
CONFIG_9P_FS=y
CONFIG_FSCACHE=y
CONFIG_CACHEFILES=y
CONFIG_CACHEFILES_ONDEMAND=n
CONFIG_MISC_FILESYSTEMS=y
CONFIG_EROFS_FS=y
CONFIG_EROFS_FS_ONDEMAND=n
CFG
KCONFIG_CONFIG=$out/.config "$CFOD_CACHE/src/scripts/kconfig/merge_config.sh" -m -O "$out" \
	"$out/.config" "$out/off.config" >/dev/null
kmake olddefconfig >/dev/null
grep -q '^CONFIG_CACHEFILES=y' "$out/.config"
! grep -q '^CONFIG_CACHEFILES_ONDEMAND=y' "$out/.config"
kmake -j"$(( $(nproc) + 1 ))" prepare >/dev/null
kmake -j"$(( $(nproc) + 1 ))" W=1 fs/cachefiles/ fs/erofs/
echo "option-off build: fs/cachefiles and fs/erofs compile with CACHEFILES_ONDEMAND=n"
