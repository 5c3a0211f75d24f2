#!/usr/bin/env bash
# Build a patched, Rust-enabled 6.12 kernel out of tree, cached by its inputs.
#
#   scripts/build-kernel.sh test|bench|race|plain
#
# The source is Debian's linux-source-6.12, unpacked once into a git tree under
# $CFOD_CACHE/src. The project's patch series (kernel/patches/series) is applied
# on top, the config is tinyconfig plus kernel/config/base.config plus the
# kind's fragment. The build directory records the hash of every input; when it
# matches, nothing is rebuilt. When only some inputs change, make rebuilds only
# what depends on them: files are reset and patched in place, so untouched
# files keep their timestamps.
set -euo pipefail
. "$(dirname "$0")/env.sh"

kind=${1:?usage: build-kernel.sh test|bench|race|plain}
# "plain" is the test kernel without the project's patches: the reference a
# test compares the patched kernel with when no module is loaded.
conf=$kind
[ "$kind" = plain ] && conf=test
[ -f "$CFOD_TOP/kernel/config/$conf.config" ] || { echo "unknown kernel kind $kind" >&2; exit 2; }
tarball=$(ls /usr/src/linux-source-6.12.tar.* | head -n1)
src_version=$(dpkg-query -W -f='${Version}' linux-source-6.12)
out=$(kernel_build_dir "$kind")
src=$CFOD_CACHE/src
# The unpatched kernel has a source tree of its own: the shared one stays
# patched for the module builds against the other kinds.
[ "$kind" = plain ] && src=$CFOD_CACHE/src-plain
mkdir -p "$CFOD_CACHE"

# One kernel build at a time on this machine (they share the source tree and
# every core); a second caller waits here.
if [ -z "${CFOD_BUILD_LOCKED:-}" ]; then
	export CFOD_BUILD_LOCKED=1
	exec flock "$CFOD_CACHE/.build.lock" "$0" "$@"
fi

series=$CFOD_TOP/kernel/patches/series
series_patches=()
if [ -f "$series" ]; then
	while read -r p; do
		case "$p" in ''|'#'*) continue ;; esac
		series_patches+=("$CFOD_TOP/kernel/patches/$p")
	done <"$series"
fi
patches=()
[ "$kind" = plain ] || patches=("${series_patches[@]}")

# inputs_key CONF PATCH...: the hash of everything a build depends on.
inputs_key() {
	local c=$1 p
	shift
	{
		echo "src $src_version"
		echo "rustc $(/usr/bin/rustc --version) clang $(clang-19 --version | head -n1) bindgen $BINDGEN_VERSION"
		cat "$0" "$CFOD_TOP/kernel/config/base.config" "$CFOD_TOP/kernel/config/$c.config"
		for p in "$@"; do echo "patch $(basename "$p")"; cat "$p"; done
	} | sha256sum | cut -d' ' -f1
}
key=$(inputs_key "$conf" "${patches[@]}")

if [ -f "$out/.cfod-key" ] && [ "$(cat "$out/.cfod-key")" = "$key" ] &&
	[ -f "$out/arch/x86/boot/bzImage" ]; then
	echo "kernel[$kind]: up to date ($out, key ${key:0:12})"
	exit 0
fi

# One unpacked source tree, reset to the pristine state before patching.
if [ ! -f "$src/.cfod-src-version" ] || [ "$(cat "$src/.cfod-src-version")" != "$src_version" ]; then
	echo "kernel: unpacking $tarball (Debian $src_version)"
	rm -rf "$src" "$src.tmp"
	mkdir -p "$src.tmp"
	tar -C "$src.tmp" --strip-components=1 -xf "$tarball"
	git -C "$src.tmp" init -q
	git -C "$src.tmp" add -f -A
	git -C "$src.tmp" -c user.name=cfod -c user.email=cfod@localhost \
		commit -q -m "Debian linux-source-6.12 $src_version"
	echo "$src_version" >"$src.tmp/.cfod-src-version"
	mv "$src.tmp" "$src"
fi

applied=$(for p in "${patches[@]}"; do sha256sum "$p"; done | sha256sum | cut -d' ' -f1)
if [ "$(cat "$src/.cfod-applied" 2>/dev/null)" != "$applied" ]; then
	rm -f "$src/.cfod-applied"
	# Reset only what differs from the pristine tree; untouched files keep
	# their timestamps, so an incremental build stays incremental.
	git -C "$src" reset -q
	git -C "$src" checkout -q -- .
	git -C "$src" clean -fdxq -e .cfod-src-version -e .cfod-applied
	for p in "${patches[@]}"; do
		if ! git -C "$src" apply --check "$p" 2>/tmp/cfod-apply.err; then
			echo "kernel: PATCH DOES NOT APPLY: $(basename "$p")" >&2
			sed 's/^/  /' /tmp/cfod-apply.err >&2
			exit 1
		fi
		git -C "$src" apply "$p"
		echo "kernel: applied $(basename "$p")"
	done
	echo "$applied" >"$src/.cfod-applied"
fi

# The unpatched kernel differs from the test kernel only in the files the
# series touches, so it starts from a copy of the test kernel's build when
# that is current, and make rebuilds what depends on those files (about a
# tenth of a full build). The copy's records name the patched tree's path:
# the unpatched tree is mounted there, in a mount namespace of the build's
# own. Both trees come from one tarball with its timestamps, so only the
# files touched below are newer than the copied objects; what the series
# adds (a file the unpatched tree lacks) is a missing dependency, which
# make also rebuilds. Without the test kernel, or without unshare(1)'s
# mount namespace, it is built from scratch in its own tree's path.
# in_src_ns COMMAND...: COMMAND in a mount namespace where this kind's
# source tree is mounted at the shared tree's path.
in_src_ns() {
	unshare -m sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' _ \
		"$src" "$CFOD_CACHE/src" "$@"
}
seeded=0
if [ "$kind" = plain ] && [ "${CFOD_PLAIN_SEED:-1}" = 1 ]; then
	tdir=$(kernel_build_dir test)
	if [ "$(cat "$tdir/.cfod-key" 2>/dev/null)" = "$(inputs_key test "${series_patches[@]}")" ] &&
		[ -f "$tdir/arch/x86/boot/bzImage" ] && in_src_ns true 2>/dev/null; then
		rm -rf "$out" "$out.tmp"
		cp -a "$tdir" "$out.tmp"
		rm -f "$out.tmp/.cfod-key"
		mv "$out.tmp" "$out"
		for p in "${series_patches[@]}"; do
			sed -n 's|^--- a/||p; s|^+++ b/||p' "$p"
		done | sort -u | while read -r f; do
			if [ -e "$src/$f" ]; then touch "$src/$f"; fi
		done
		seeded=1
		echo "kernel[plain]: starting from the test kernel's build ($tdir)"
	fi
fi

mkdir -p "$out"
rm -f "$out/.cfod-key"
if [ $seeded = 1 ]; then
	kmake() { in_src_ns make -s -C "$CFOD_CACHE/src" O="$out" "${KMAKE_ARGS[@]}" "$@"; }
else
	kmake() { make -s -C "$src" O="$out" "${KMAKE_ARGS[@]}" "$@"; }
fi
kmake tinyconfig >/dev/null
KCONFIG_CONFIG=$out/.config "$src/scripts/kconfig/merge_config.sh" -m -O "$out" \
	"$out/.config" "$CFOD_TOP/kernel/config/base.config" \
	"$CFOD_TOP/kernel/config/$conf.config" >/dev/null
kmake olddefconfig >/dev/null

# Every option the fragments ask for must have survived olddefconfig.
bad=0
while IFS= read -r line; do
	case "$line" in CONFIG_*=*) ;; *) continue ;; esac
	opt=${line%%=*} want=${line#*=}
	if [ "$want" = n ]; then
		grep -q "^$opt=" "$out/.config" && { echo "kernel: $opt is set, wanted n" >&2; bad=1; }
	else
		grep -qx "$opt=$want" "$out/.config" || { echo "kernel: $opt is not $want" >&2; bad=1; }
	fi
done < <(cat "$CFOD_TOP/kernel/config/base.config" "$CFOD_TOP/kernel/config/$conf.config")
[ $bad = 0 ] || { echo "kernel: config fragment not honoured" >&2; exit 1; }
if [ "${CFOD_CONFIG_ONLY:-0}" = 1 ]; then
	echo "kernel[$kind]: config resolved ($out/.config), not building"
	exit 0
fi

echo "kernel[$kind]: building in $out"
start=$SECONDS
kmake -j"$(( $(nproc) + 1 ))" all
echo "kernel[$kind]: built in $(( SECONDS - start ))s"
echo "$key" >"$out/.cfod-key"
