#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The cost curves (Documentation/benchmarks.md, "Cost curves"), inside the
# guest: started by scripts/curves.sh through scripts/vm-run.sh as the test
# ../bench/curves.sh, on the bench kernel, under the icount plugin unless
# told otherwise. For every repetition and backend (C: the module not
# loaded; Rust: loaded; the order alternates between repetitions) it runs
# every point of the three curves with bench/curves.c, one process a point,
# each on a fresh, empty cache directory with the caches dropped:
#   inflight N   N reader threads, N READs queued at once (N = INFLIGHT)
#   objects M    M objects bound (mounts), OBJ_THREADS x OBJ_ROUNDS READs
#                on one of them (M = OBJECTS)
#   fail-HOW N   N READs queued, then HOW fails k of them (N = FAIL_N)
# Settings from /host/out/curves/config (scripts/curves.sh); raw results to
# /host/out/curves/raw: results.txt ("backend=B rep=R " + the point's line),
# marks ("SEQ LABEL start|end", the plugin's marks in order), meta.txt.
. "$T/lib/ktap.sh"
. "$T/lib/icount.sh"
. /host/out/curves/config
RAW=/host/out/curves/raw
W=/tmp/cv
CACHE=/cache/cv
rm -rf "$RAW" "$W"
mkdir -p "$RAW" "$W/mnt"
cp /host/out/curves/bin/curves /host/out/curves/data/blob.img "$W/"
{
	echo "kernel=$(cat /proc/version)"
	echo "guest_cpus=$(grep -c ^processor /proc/cpuinfo)"
	echo "qemu_smp=$(sed -n 's/.*cfod\.smp=\([0-9]*\).*/\1/p' /proc/cmdline)"
	echo "clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
	echo "plugin=$ICOUNT"
} >"$RAW/meta.txt"
: >"$W/marks"

npts=$(( $(echo $INFLIGHT | wc -w) + $(echo $OBJECTS | wc -w) +
	$(echo $FAIL_N | wc -w) * $(echo $FAIL_HOW | wc -w) ))
ktap_plan $(( REPS * 2 * npts ))

# The plugin's ranges (tests/lib/icount.sh).
ranges() {
	[ "$ICOUNT" = 1 ] || return 0
	icount_write_ranges /host/out/curves/plugin "$RAW/ranges"
}

# point BACKEND REP LABEL ARGS...: one point, its line to results.txt
point() {
	_b=$1 _r=$2 _l=$3
	shift 3
	rm -rf "$CACHE"
	mkdir -p "$CACHE"
	sync
	echo 3 >/proc/sys/vm/drop_caches
	_s=$(date +%s)
	_out=$(env ${CURVES_DOMAIN:+CURVES_DOMAIN=$CURVES_DOMAIN} timeout -s KILL "$POINT_TIMEOUT" "$W/curves" "$@" 2>"$W/err")
	_rc=$?
	cp "$W/marks" "$RAW/marks"
	echo "backend=$_b rep=$_r rc=$_rc $_out" >>"$RAW/results.txt"
	sed "s/^/# $_l: /" "$W/err" | tail -n 5
	case " $_out " in
	*" bound=$_b "*) ;;
	*) _rc="$_rc (bound to $(echo "$_out" | sed -n 's/.* bound=\([a-z]*\).*/\1/p'), not $_b)" ;;
	esac
	if [ "$_rc" != 0 ]; then
		# a killed point's mounts and daemon must not hold the next one
		for _m in $(grep " $W/mnt/" /proc/mounts | cut -d' ' -f2); do
			umount -l "$_m" 2>/dev/null
		done
		_i=0
		until (exec 9<>/dev/cachefiles) 2>/dev/null || [ $_i -ge 120 ]; do
			sleep 1
			_i=$((_i + 1))
		done
	fi
	if [ "$_rc" = 0 ]; then
		ktap_ok "$_l ($(( $(date +%s) - _s )) s): $_out"
	else
		ktap_fail "$_l: rc $_rc: $_out"
	fi
}

for rep in $(seq "$REPS"); do
	order="c rust"
	[ $((rep % 2)) = 0 ] && order="rust c"
	for b in $order; do
		CFOD_BACKEND=$b
		backend_setup || { ktap_diag "cannot set up backend $b"; exit 1; }
		ranges
		for n in $INFLIGHT; do
			rounds=$(( INFLIGHT_READS / n ))
			[ "$rounds" -ge 1 ] || rounds=1
			point $b $rep "$b-$rep-inflight-$n" inflight "$CACHE" "$W/blob.img" "$W/mnt" \
				1 "$n" "$rounds" "$W/marks" "$b-$rep-inflight-$n"
		done
		# one fscache domain for the objects curve's mounts: one volume
		# (without it every fsid is a volume of its own, with 256
		# fan-out directories in the cache: 256 of them exhaust the
		# cache disk's inodes and cachefiles refuses with ENOBUFS)
		for m in $OBJECTS; do
			CURVES_DOMAIN=cv point $b $rep "$b-$rep-objects-$m" inflight "$CACHE" "$W/blob.img" "$W/mnt" \
				"$m" "$OBJ_THREADS" "$OBJ_ROUNDS" "$W/marks" "$b-$rep-objects-$m"
		done
		for n in $FAIL_N; do
			for how in $FAIL_HOW; do
				point $b $rep "$b-$rep-fail-$how-$n" fail "$CACHE" "$W/blob.img" "$W/mnt" \
					"$how" "$n" "$W/marks" "$b-$rep-fail-$how-$n"
			done
		done
	done
done
CFOD_BACKEND=c
backend_setup
echo "guest_uptime_end=$(cut -d' ' -f1 /proc/uptime)" >>"$RAW/meta.txt"
ktap_finish
