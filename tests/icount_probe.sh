#!/bin/sh
# Not in tests/list: the guest half of scripts/icount.sh, which boots the
# test kernel with the instruction-counting plugin (bench/plugin/icount.c).
# For each backend, icount.reps= (kernel command line, default 5) cold
# repetitions of one fixed workload:
# a fresh od-serve over an empty cache directory, mount simple.img with
# -o fsid=, read every file, unmount, stop the daemon; with a plugin mark
# (cfbench mark) before and after each phase. The marks and what they
# separate go to out/NAME/marks, the daemon's request counts to
# out/NAME/served; the host pairs them with the plugin's lines.
. "$T/lib/ktap.sh"
. "$T/lib/icount.sh"
OUT=$(dirname "$RES")
REPS=$(sed -n 's/.*icount\.reps=\([0-9]*\).*/\1/p' /proc/cmdline)
REPS=${REPS:-5}
MARK="$BIN/cfbench mark"
ktap_plan $((2 * (REPS + 1)))

# The plugin's ranges (tests/lib/icount.sh).
ranges() { icount_write_ranges /host/out/icount "$OUT/ranges"; }
nmark=0
mark() {
	nmark=$((nmark + 1))
	echo "$nmark $*" >>"$OUT/marks"
	$MARK
}
: >"$OUT/marks"
: >"$OUT/served"
# The blobs from tmpfs, so the daemon's reads do not go through 9p.
mkdir -p /tmp/icblobs /mnt/ic
cp /host/out/data/blobs/simple.img /tmp/icblobs/

for b in c rust; do
	CFOD_BACKEND=$b
	backend_setup || { ktap_diag "cannot set up backend $b"; exit 1; }
	ranges
	for i in $(seq "$REPS"); do
		cache=/cache/ic-$b-$i
		rm -rf "$cache" /tmp/od.pid
		mkdir -p "$cache"
		"$BIN/od-serve" -p /tmp/od.pid "$cache" /tmp/icblobs 2>/tmp/od.err &
		od=$!
		for _i in $(seq 50); do [ -s /tmp/od.pid ] && break; sleep 0.2; done
		if [ "$(bound_backend)" != $b ]; then
			ktap_fail "$b rep $i: cache not bound to $b"
			kill -TERM $od
			wait $od
			continue
		fi
		sync
		echo 3 >/proc/sys/vm/drop_caches
		mark "$b $i mount"
		mount -t erofs none -o fsid=simple.img /mnt/ic
		mark "$b $i read"
		find /mnt/ic -type f -print0 | xargs -0 cat >/dev/null
		mark "$b $i umount"
		umount /mnt/ic
		kill -TERM $od
		wait $od
		mark "$b $i end"
		echo "$b $i $(sed -n 's/^od-serve: //p' /tmp/od.err)" >>"$OUT/served"
		ktap_ok "$b rep $i"
		rm -rf "$cache"
	done
	ktap_check "$b: the daemon answered READs in every repetition" \
		sh -c "[ \$(grep -c '^$b [0-9]* open [0-9]* read [1-9]' $OUT/served) = $REPS ]"
done
ktap_finish
