#!/usr/bin/env bash
# Build the guest-side test programs (static, they run in a busybox guest).
set -euo pipefail
. "$(dirname "$0")/env.sh"
bin=$CFOD_TOP/out/bin
mkdir -p "$bin"
for src in "$CFOD_TOP"/tests/tools/*.c "$CFOD_TOP"/tests/*.c; do
	[ -e "$src" ] || continue
	exe=$bin/$(basename "$src" .c)
	if [ ! -x "$exe" ] || [ "$src" -nt "$exe" ] || [ "$CFOD_TOP/tests/lib/odtest.h" -nt "$exe" ]; then
		gcc -static -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -Wno-unused-function \
			-I "$CFOD_TOP/tests/lib" -o "$exe" "$src" -lpthread
	fi
done
