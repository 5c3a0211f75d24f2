#!/bin/sh
# The guest booted the project's kernel with what the suite relies on.
. "$T/lib/ktap.sh"
ktap_plan 7
ktap_check "kernel is 6.12" grep -q '^6\.12\.' /proc/sys/kernel/osrelease
ktap_check "/dev/cachefiles exists" test -c /dev/cachefiles
ktap_check "erofs is registered" grep -qw erofs /proc/filesystems
ktap_check "cache disk is ext4" sh -c "grep -q ' /cache ext4 ' /proc/mounts"
ktap_check "the kernel patch adds no debugfs entry of its own" \
	test ! -e /sys/kernel/debug/cachefiles
online=$(grep -c '^processor' /proc/cpuinfo)
ktap_diag "vCPUs: $online online of ${CFOD_SMP:-?} given; $(uname -v)"
ktap_check "every vCPU given is online (${CFOD_SMP:-unset})" \
	test "$online" = "${CFOD_SMP:-unset}"
ktap_check "kernel is preemptible (PREEMPT)" sh -c "uname -v | grep -qw PREEMPT"
ktap_finish
