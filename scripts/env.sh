# Sourced by the other scripts: one place for paths and toolchain choices.
# shellcheck shell=bash

CFOD_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Kernel builds and other heavy artefacts live outside the clone, so that a
# fresh clone on the same machine reuses them.
CFOD_CACHE=${CFOD_CACHE:-/var/cache/cfod}
BINDGEN_VERSION=0.73.2
BINDGEN=${BINDGEN:-/opt/cfod/bindgen-$BINDGEN_VERSION/bin/bindgen}
# The Debian rustc-web toolchain (1.96, with its library source). The rustup
# toolchain that is first on PATH on these machines has no rust-src and its
# clippy rejects the kernel's crates, so Debian's binaries go first.
export PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH
KMAKE_ARGS=(LLVM=-19 RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc
	RUSTFMT=/usr/bin/rustfmt RUSTDOC=/usr/bin/rustdoc
	BINDGEN="$BINDGEN" CLIPPY_DRIVER=/usr/bin/clippy-driver)
# User-space Rust (the daemon) uses the machine's rustup toolchain, which
# PATH above would otherwise hide behind Debian's older cargo, if any.
CARGO=${CARGO:-$HOME/.cargo/bin/cargo}
[ -x "$CARGO" ] || CARGO=cargo
export CARGO
# The daemon's build tree lives with the kernels, so a fresh clone reuses
# its dependencies (about 6 minutes of the static build on 2 cores); cargo
# rebuilds what changed, and locks the tree between concurrent builds.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CFOD_CACHE/cargo-target}
# kind: test (debug options, KASAN), race (debug options, KCSAN) or bench (none)
kernel_build_dir() { echo "$CFOD_CACHE/build-$1"; }
