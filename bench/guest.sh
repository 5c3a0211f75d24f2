#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The benchmark run inside the guest (started by scripts/bench.sh through
# scripts/vm-run.sh as the test ../bench/guest.sh). For every repetition,
# workload and configuration (C backend, Rust backend, each served by the
# tests' od-serve and by odd, erofs file-backed, squashfuse) it runs the
# workload cold: caches dropped, the cache directory
# emptied and a fresh daemon bound before each run. Raw results go to /host/out/bench/raw:
#   results.txt   "CONFIG REP WORKLOAD key=value ..." per run
#   lat/          per-read latencies (ns) of the latency workloads
#   stats/        the Rust backend's per-cache statistics after each run
#                 (RS_STATS=1 only: the module does not count by default)
#   meta.txt      the guest's kernel, CPUs and memory
# Settings come from /host/out/bench/config (written by scripts/bench.sh);
# the images from the second virtio disk (/dev/vdb, out/bench/data/disk.img).
# ICOUNT=1 (the instruction-count boot, under the icount plugin): each run
# is bracketed by plugin marks (marks: "N CONFIG REP WORKLOAD start|end"),
# from just before its mount to just after its daemon has exited, so the
# daemon's request counts (daemon_open/_reads/_close) cover the bracket; no
# warm re-read, no statistics read, no disk fill, times are not kept.
. "$T/lib/ktap.sh"
. "$T/lib/icount.sh"
. /host/out/bench/config
RAW=/host/out/bench/${RAW_DIR:-raw}
B=/tmp/b	# binaries and images, copied to tmpfs: the sources read from memory
MNT=/mnt/b
CACHE=/cache/bench
WORKLOADS=${WORKLOADS:-seq rand par rps ttfb xseq xpar}
CLK=/sys/devices/system/clocksource/clocksource0/current_clocksource

rm -rf "$RAW"
mkdir -p "$RAW/lat" "$RAW/stats" "$B/blobs" "$B/sqfs" "$MNT" /mnt/t
{
	echo "uname=$(uname -r)"
	echo "kernel=$(cat /proc/version)"
	echo "guest_cpus=$(grep -c ^processor /proc/cpuinfo)"
	# the vCPUs QEMU was given (scripts/vm-run.sh passes its -smp)
	echo "qemu_smp=$(sed -n 's/.*cfod\.smp=\([0-9]*\).*/\1/p' /proc/cmdline)"
	echo "guest_mem_kb=$(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)"
	echo "cpu_model=$(sed -n 's/^model name\t*: //p' /proc/cpuinfo | head -n1)"
	echo "clocksource=$(cat $CLK)"
} >"$RAW/meta.txt"

t0=$(date +%s)
cp /host/out/bench/bin/cfbench /host/out/bench/bin/od-serve /host/out/bench/bin/odd "$KO" "$B/"
cp -r /host/out/bench/fuse "$B/fuse"
# PROFILE=1 (scripts/bench.sh --profile): the measured commands run under
# perf record, system-wide, sampling on the cpu-clock (TCG has no PMU).
PERF=
if [ "${PROFILE:-0}" = 1 ]; then
	cp -r /host/out/bench/perf "$B/perf"
	PERF="$B/perf/lib/ld-linux-x86-64.so.2 --library-path $B/perf/lib $B/perf/perf"
fi
prof() { # prof NAME command...: run it, under perf record if profiling
	if [ -n "$PERF" ]; then
		_n=$1; shift
		$PERF record -q -a -g -F 2000 -e cpu-clock -o "/tmp/$_n.data" -- "$@"
	else
		shift
		"$@"
	fi
}
# The data disk stays mounted: erofs file-backed needs a file on a
# filesystem with read_folio (ext4, not tmpfs), so that reference reads its
# image from the disk.
mkdir -p /data
mount -t ext4 -o ro /dev/vdb /data
cp /data/images/main.img /data/blobs/*.img "$B/blobs/"
cp /data/images/main.sqfs /data/blobs/*.sqfs "$B/sqfs/"
# Fill the cache disk once: the host allocates its sparse image file on
# first write, and that cost would otherwise land on whichever run writes
# a region first.
[ "${ICOUNT:-0}" = 1 ] || dd if=/dev/zero of=/cache/fill bs=1M count=$(( $(df -m /cache | awk 'NR==2{print $4}') - 64 )) 2>/dev/null
rm -f /cache/fill
sync
ktap_diag "copied the images to tmpfs and filled the cache disk in $(( $(date +%s) - t0 ))s"
KOFILE=$B/$(basename "$KO")
SQUASHFUSE="$B/fuse/lib/ld-linux-x86-64.so.2 --library-path $B/fuse/lib $B/fuse/squashfuse -f"

nconf=$(echo $CONFIGS | wc -w)
nwl=$(echo $WORKLOADS | wc -w)
ktap_plan $(( REPS * nconf * nwl + 2 ))
# Per-read latencies need a fine clock, not jiffies (see scripts/bench.sh).
ktap_check "clocksource is the TSC ($(cat $CLK))" [ "$(cat $CLK)" = tsc ]

set_backend() { # c | rust
	if [ "$1" = rust ]; then
		grep -q '^cachefiles_ondemand_rs ' /proc/modules || insmod "$KOFILE"
		# The module counts requests only if asked (RS_STATS=1).
		echo "${RS_STATS:-0}" >/sys/kernel/debug/cachefiles_ondemand_rs/stats_enabled
	else
		i=0
		while grep -q '^cachefiles_ondemand_rs ' /proc/modules; do
			rmmod cachefiles_ondemand_rs 2>/dev/null && break
			i=$((i + 1))
			[ $i -lt 100 ] || return 1
			sleep 0.1
		done
	fi
}

cold() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

daemon_pid= daemon=
# start_daemon BACKEND [odd]: bind a fresh, empty cache with od-serve, or
# with odd (its defaults: ODD_THREADS workers, read amplification of
# ODD_READ_EXTENT, small local requests on its devnode thread up to
# ODD_INLINE_MAX; it writes to its --ready-fd once bound and serving)
start_daemon() {
	daemon=${2:-od-serve} od_extra=
	set_backend "$1" || return 1
	rm -rf "$CACHE" /tmp/od.pid
	mkdir -p "$CACHE"
	cold
	if [ "$daemon" = odd ]; then
		"$B/odd" -q serve --dir "$CACHE" --source "dir:$B/blobs" \
			--threads "${ODD_THREADS:-4}" --read-extent "${ODD_READ_EXTENT:-1M}" \
			--inline-max "${ODD_INLINE_MAX:-128K}" \
			--ready-fd 3 3>/tmp/od.pid 2>/tmp/od.err &
	else
		"$B/od-serve" -p /tmp/od.pid "$CACHE" "$B/blobs" 2>/tmp/od.err &
	fi
	daemon_pid=$!
	i=0
	while [ ! -s /tmp/od.pid ]; do
		i=$((i + 1))
		[ $i -lt 200 ] || return 1
		sleep 0.05
	done
	[ "$(bound_backend)" = "$1" ] || { ktap_diag "bound $(bound_backend), wanted $1"; return 1; }
}

stop_daemon() {
	[ -n "$daemon_pid" ] || return 0
	kill -TERM "$daemon_pid"
	wait "$daemon_pid"
	daemon_pid=
	od_reads=$(sed -n 's/.*open [0-9]* read \([0-9]*\).*/\1/p' /tmp/od.err)
	od_open=$(sed -n 's/.*open \([0-9]*\) read [0-9]*.*/\1/p' /tmp/od.err)
	od_close=$(sed -n 's/.*open [0-9]* read [0-9]* close \([0-9]*\).*/\1/p' /tmp/od.err)
	if [ "$daemon" = odd ]; then
		# its statistics at exit: "requests: total=N open=N close=N read=N ..."
		_rq=$(grep '^ *requests: total=' /tmp/od.err | tail -n 1)
		od_reads=$(echo "$_rq" | sed -n 's/.* read=\([0-9]*\).*/\1/p')
		od_open=$(echo "$_rq" | sed -n 's/.* open=\([0-9]*\).*/\1/p')
		od_close=$(echo "$_rq" | sed -n 's/.* close=\([0-9]*\).*/\1/p')
		# and "data: bytes-written=N mapped-bytes=N ...": how many of the
		# bytes it wrote went from a mapping of the blob file
		_dt=$(grep '^ *data: ' /tmp/od.err | tail -n 1)
		od_extra="daemon_written=$(echo "$_dt" | sed -n 's/.* bytes-written=\([0-9]*\).*/\1/p')"
		od_extra="$od_extra daemon_mapped=$(echo "$_dt" | sed -n 's/.* mapped-bytes=\([0-9]*\).*/\1/p')"
	fi
}

# ICOUNT=1: the plugin's ranges (scripts/bench.sh passes ranges=$RAW/ranges),
# written anew at each workload's start (tests/lib/icount.sh).
icount_ranges() { icount_write_ranges /host/out/bench/plugin "$RAW/ranges"; }
nmark=0
icount_mark() { # CONFIG REP WORKLOAD start|end: a plugin mark, and what it is
	[ "${ICOUNT:-0}" = 1 ] || return 0
	[ "$4" = start ] && icount_ranges
	nmark=$((nmark + 1))
	echo "$nmark $*" >>"$RAW/marks"
	"$B/cfbench" mark
}

wait_mount() { # dir: wait for a FUSE server to mount it
	i=0
	while ! grep -q " $1 fuse" /proc/mounts; do
		i=$((i + 1))
		[ $i -lt 400 ] || return 1
		sleep 0.05
	done
}

fuse_pid=
mount_main() { # config
	case $1 in
	c|rust|odd-c|odd-rust) "$B/cfbench" mount none "$MNT" fsid=main.img ;;
	file)
		"$B/cfbench" mount /data/images/main.img "$MNT" || return 1
		# file-backed: erofs reads the file, no loop device in between
		grep -q "^/data/images/main.img $MNT erofs" /proc/mounts
		;;
	fuse)
		$SQUASHFUSE "$B/sqfs/main.sqfs" "$MNT" 2>/tmp/fuse.err &
		fuse_pid=$!
		wait_mount "$MNT"
		;;
	esac
}

umount_main() {
	umount "$MNT" || return 1
	if [ -n "$fuse_pid" ]; then
		wait "$fuse_pid"
		fuse_pid=
	fi
}

# outside_client xseq|xpar: the workloads seq and par read by busybox,
# which this project did not write, timed by cfbench from fork to exit:
# dd in 1 MiB reads (as cfbench seq), and one cat per reader directory at
# once (as cfbench par's threads). The sizes come from stat, which reads
# only the metadata that opening the files reads anyway.
outside_client() {
	case $1 in
	xseq)
		x_bytes=$(stat -c %s "$MNT/seq.bin") || return 1
		"$B/cfbench" time "$x_bytes" dd if="$MNT/seq.bin" bs=1M 2>/tmp/x.err ||
			{ cat /tmp/x.err >&2; return 1; }
		;;
	xpar)
		set --
		for x_i in $(seq 0 $((PAR_READERS - 1))); do
			set -- "$@" "$MNT/par/r$x_i"
		done
		x_bytes=0
		for x_dir in "$@"; do
			for x_size in $(stat -c %s "$x_dir"/*); do
				x_bytes=$((x_bytes + x_size))
			done
		done
		"$B/cfbench" time "$x_bytes" sh -c 'p=
			for d in "$@"; do cat "$d"/* & p="$p $!"; done
			rc=0
			for x in $p; do wait "$x" || rc=1; done
			exit $rc' xpar "$@" 2>/tmp/x.err ||
			{ cat /tmp/x.err >&2; return 1; }
		;;
	esac
}

# run_one CONFIG REP WORKLOAD: one cold run; appends a line to results.txt
run_one() {
	cfg=$1 rep=$2 wl=$3
	lat=$RAW/lat/$wl-$cfg-$rep.txt
	case $cfg in
	c|rust) start_daemon "$cfg" || return 1 ;;
	odd-c|odd-rust) start_daemon "${cfg#odd-}" odd || return 1 ;;
	*) rm -rf "$CACHE"; cold ;;
	esac
	icount_mark "$cfg" "$rep" "$wl" start
	case $wl in
	ttfb)
		case $cfg in
		c|rust|odd-c|odd-rust) out=$("$B/cfbench" ttfb fscache - /mnt/t "$NBLOBS" "$lat") ;;
		file) out=$("$B/cfbench" ttfb file /data/blobs /mnt/t "$NBLOBS" "$lat") ;;
		fuse) out=$("$B/cfbench" ttfb exec "$B/sqfs" /mnt/t "$NBLOBS" "$lat" $SQUASHFUSE) ;;
		esac || return 1
		;;
	*)
		mount_main "$cfg" || return 1
		cold
		case $wl in
		seq)
			out=$("$B/cfbench" seq "$MNT/seq.bin") || return 1
			# warm: the same file again, now in the page cache (not
			# in the instruction-count boot: no request)
			if [ "${ICOUNT:-0}" != 1 ]; then
				warm=$("$B/cfbench" seq "$MNT/seq.bin") || return 1
				echo "$cfg $rep warm $warm" >>"$RAW/results.txt"
			fi
			;;
		rand) out=$(prof "$wl-$cfg" "$B/cfbench" rand "$MNT/rand.bin" "$RAND_COUNT" "$rep" "$lat") || return 1 ;;
		par) out=$(prof "$wl-$cfg" "$B/cfbench" par "$MNT/par" "$PAR_READERS") || return 1 ;;
		rps) out=$(prof "$wl-$cfg" "$B/cfbench" rps "$MNT/rps.bin" "$RPS_THREADS" "$RPS_COUNT" "$rep") || return 1 ;;
		xseq|xpar) out=$(outside_client "$wl") || return 1 ;;
		esac
		;;
	esac
	if [ -n "$PERF" ] && [ -f "/tmp/$wl-$cfg.data" ]; then
		# Symbols come from this guest's /proc/kallsyms: report here.
		$PERF report -i "/tmp/$wl-$cfg.data" --stdio --no-children \
			--sort sym -g none --percent-limit 0.3 \
			>"$RAW/perf-$wl-$cfg-$rep.txt" 2>&1
		$PERF report -i "/tmp/$wl-$cfg.data" --stdio --no-children \
			--sort comm,dso -g none \
			>"$RAW/perf-$wl-$cfg-$rep-comm.txt" 2>&1
		$PERF report -i "/tmp/$wl-$cfg.data" --stdio --no-children \
			--sort dso,sym -g caller,0.5,callee --percent-limit 2 \
			>"$RAW/perf-$wl-$cfg-$rep-graph.txt" 2>&1
		rm -f "/tmp/$wl-$cfg.data"
	fi
	if [ "$cfg" = rust ] && [ "${ICOUNT:-0}" != 1 ] && [ "${RS_STATS:-0}" = 1 ]; then
		cs=$(rs_cache_stats)
		[ -n "$cs" ] && cp "$cs" "$RAW/stats/$wl-$cfg-$rep.txt"
	fi
	[ "$wl" = ttfb ] || umount_main || return 1
	case $cfg in
	c|rust|odd-c|odd-rust)
		stop_daemon
		out="$out daemon_reads=$od_reads daemon_open=$od_open daemon_close=$od_close${od_extra:+ $od_extra}"
		;;
	esac
	icount_mark "$cfg" "$rep" "$wl" end
	echo "$cfg $rep $wl $out" >>"$RAW/results.txt"
	ktap_diag "$cfg $rep $wl: $out"
}

# ICOUNT=1: the plugin's calibration, before any workload, while the guest
# is quiet (no daemon, no reader), three times for each of two N:
# cfbench spin N (a loop of two instructions), cfbench pollnode (N / 100
# poll()s of the unbound devnode) and cfbench spinx N (a loop of three, one
# across a page boundary), each between two marks; scripts/bench-report.py
# checks that the user count grew by exactly 2 and 3 a turn, and that
# cachefiles_daemon_poll's count is the same for every call.
calib() { # NAME CFBENCH-ARGS...: a calibration run, whose cfbench executes both marks
	echo "$((nmark + 1)) calib $rep $1 start" >>"$RAW/marks"
	echo "$((nmark + 2)) calib $rep $1 end" >>"$RAW/marks"
	nmark=$((nmark + 2))
	shift
	"$B/cfbench" "$@"
}
if [ "${ICOUNT:-0}" = 1 ]; then
	icount_ranges
	for rep in 1 2 3; do
		for n in 100000 200000; do
			calib "spin$n" spin "$n"
			calib "poll$((n / 100))" pollnode /dev/cachefiles $((n / 100))
			calib "spinx$n" spinx "$n"
		done
	done
fi

# The runs of one repetition and workload are back to back, so that the C
# and Rust runs of a pair are seconds apart; which backend goes first
# alternates, so that neither gains from the order (odd's pair likewise).
for rep in $(seq "$REPS"); do
	confs=$CONFIGS
	[ $((rep % 2)) = 0 ] && confs=$(echo " $CONFIGS " |
		sed 's/ c rust / rust c /; s/ odd-c odd-rust / odd-rust odd-c /')
	for wl in $WORKLOADS; do
		for cfg in $confs; do
			s=$(date +%s)
			if run_one "$cfg" "$rep" "$wl"; then
				ktap_ok "$cfg rep $rep $wl ($(( $(date +%s) - s ))s)"
			else
				ktap_fail "$cfg rep $rep $wl"
				[ -n "$daemon_pid" ] && sed "s/^/# $daemon: /" /tmp/od.err | tail -n 5
				grep -q " $MNT " /proc/mounts && umount -l "$MNT"
				for m in $(grep ' /mnt/t/' /proc/mounts | cut -d' ' -f2); do
					umount -l "$m"
				done
				[ -n "$daemon_pid" ] && { kill -KILL "$daemon_pid"; wait "$daemon_pid"; }
				daemon_pid= fuse_pid=
			fi
		done
	done
done
set_backend c
umount /data
echo "guest_uptime_end=$(cut -d' ' -f1 /proc/uptime)" >>"$RAW/meta.txt"
ktap_check "ran for $(( $(date +%s) - t0 ))s" true
ktap_finish
