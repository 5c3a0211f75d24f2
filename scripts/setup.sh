#!/usr/bin/env bash
# Install everything the build, the VM runner, the tests and the benchmarks
# need on a fresh Debian 12 machine. Idempotent: a second run only checks.
set -euo pipefail

BINDGEN_VERSION=0.73.2
DEBS=(
	linux-source-6.12 rustc-web rust-web-src rust-web-clippy rustfmt-web
	clang-19 lld-19 llvm-19 libclang-19-dev
	qemu-system-x86 erofs-utils busybox-static e2fsprogs
	flex bison bc libelf-dev libssl-dev cpio xz-utils zstd
	make gcc libc6-dev git python3 kmod file
	squashfs-tools squashfuse python3-matplotlib linux-perf
	docker-registry apache2-utils openssl systemd
)

missing=()
for p in "${DEBS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# linux-source-6.12 and the 1.9x rustc-web come from bookworm-backports
	# and bookworm-security/updates respectively; both are in the default
	# sources on these machines.
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BINDGEN_ROOT=${BINDGEN_ROOT:-/opt/cfod/bindgen-$BINDGEN_VERSION}
if ! "$BINDGEN_ROOT/bin/bindgen" --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
	echo "setup: building bindgen-cli $BINDGEN_VERSION"
	cargo install --quiet --locked --root "$BINDGEN_ROOT" \
		bindgen-cli --version "$BINDGEN_VERSION"
fi

echo "setup: versions"
echo "  kernel source: $(ls /usr/src/linux-source-6.12.tar.* | head -n1)"
echo "  rustc:   $(/usr/bin/rustc --version)"
echo "  bindgen: $("$BINDGEN_ROOT/bin/bindgen" --version)"
echo "  clang:   $(clang-19 --version | head -n1)"
echo "  qemu:    $(qemu-system-x86_64 --version | head -n1)"
echo "  erofs:   $(mkfs.erofs --help 2>&1 | head -n1)"
