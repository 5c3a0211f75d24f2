#!/bin/sh
# For scripts/check.sh's comparison of the patched kernel (no module loaded)
# with the unpatched one built from the same config: a workload on the
# built-in C backend (bind, mount an image, read it, unmount, unbind), then
# what a user sees of it written to $RES/plain_cmp.capture: the kernel log of
# the workload and the cachefiles/fscache lines of the boot log, without
# timestamps, and the debugfs entries. The host compares the two captures.
. "$T/lib/ktap.sh"
ktap_plan 3
grep -q '^cachefiles_ondemand_rs ' /proc/modules && rmmod cachefiles_ondemand_rs
dmesg >/tmp/boot.dmesg
dmesg -c >/dev/null
mkdir -p /mnt/pl
ktap_check "daemon bound the cache" od_serve_start /cache/plain /tmp/pl.pid
d=$od_pid
workload() { mount -t erofs none -o fsid=simple.img /mnt/pl && same_tree /mnt/pl && umount /mnt/pl; }
ktap_check "mount, read every file, unmount" workload
kill -TERM $d
wait $d
# The unbind finishes in the devnode's release: wait for it.
for i in $(seq 100); do (exec 9<>/dev/cachefiles) 2>/dev/null && break; sleep 0.1; done
strip() { sed 's/^\[ *[0-9.]*\] //'; }
# Lines the host's load provokes under TCG, in either kernel at any time
# (CI run of c319462: "clocksource: Long readout interval" in one capture
# only): not something the patch shows a user.
noise() { grep -vE '^(clocksource|hrtimer|perf): |^sched: RT throttling'; }
{
	echo "# kernel log of the workload"
	dmesg | strip | grep -v '^cfod: ' | noise
	echo "# cachefiles and fscache lines of the boot log"
	# (not the command line, which names the run's result directory)
	strip </tmp/boot.dmesg | grep -iE 'cachefiles|fs-?cache|netfs|on-demand' |
		grep -vE '^(Kernel )?[Cc]ommand line:'
	echo "# debugfs"
	ls /sys/kernel/debug
	find /sys/kernel/debug -iname '*cachefiles*' 2>/dev/null
} >"$RES/plain_cmp.capture"
ktap_check "capture written ($(wc -l <"$RES/plain_cmp.capture") lines)" test -s "$RES/plain_cmp.capture"
ktap_finish
