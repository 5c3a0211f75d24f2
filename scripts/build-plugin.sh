#!/usr/bin/env bash
# Build the instruction-counting QEMU plugin (bench/plugin/icount.c) into
# out/bin/icount.so. It needs only gcc and libc: the plugin API's
# declarations come from the project's own bench/plugin/qemu-plugin-min.h,
# since Debian ships no QEMU plugin header.
set -euo pipefail
. "$(dirname "$0")/env.sh"
src=$CFOD_TOP/bench/plugin
so=$CFOD_TOP/out/bin/icount.so
mkdir -p "$(dirname "$so")"
if [ ! -f "$so" ] || [ "$src/icount.c" -nt "$so" ] || [ "$src/qemu-plugin-min.h" -nt "$so" ]; then
	gcc -shared -fPIC -fvisibility=hidden -O2 -g -Wall -Wextra -Werror \
		-pthread -o "$so" "$src/icount.c"
fi
echo "$so"
