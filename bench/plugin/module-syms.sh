#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The functions of a module's .text as "OFFSET SIZE NAME" (hex), to which
# the guest adds the load address of the .text to label the plugin's ranges
# (scripts/icount.sh, scripts/bench.sh, scripts/curves.sh).
#   bench/plugin/module-syms.sh MODULE.ko
set -eu
ko=${1:?usage: module-syms.sh MODULE.ko}
ndx=$(readelf -SW "$ko" | sed -n 's/^ *\[ *\([0-9]*\)\] \.text .*/\1/p')
readelf -sW "$ko" | awk -v ndx="$ndx" '$4 == "FUNC" && $7 == ndx && $3 > 0 {
	printf "%s %x %s\n", $2, $3, $8 }'
