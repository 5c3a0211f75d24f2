# KTAP helpers for shell tests, sourced by tests/*.sh.
# shellcheck shell=sh
_ktap_n=0
_ktap_fail=0
_ktap_skip=0
# Where a test's time goes: a point that took KTAP_SLOW centiseconds or more
# since the previous one (or the plan) is followed by a diagnostic saying so.
# /proc/uptime is read with the shell's own read (no process per point).
KTAP_SLOW=${KTAP_SLOW:-1000}
# _ktap_cs: the uptime in centiseconds, in _ktap_c.
_ktap_cs() { read -r _ktap_c _ktap_rest </proc/uptime; _ktap_c=${_ktap_c%.*}${_ktap_c#*.}; }
_ktap_cs; _ktap_t=$_ktap_c
_ktap_took() {
	_ktap_cs
	_ktap_d=$((_ktap_c - _ktap_t)); _ktap_t=$_ktap_c
	[ "$_ktap_d" -lt "$KTAP_SLOW" ] ||
		echo "# point $_ktap_n took $((_ktap_d / 100)).$((_ktap_d / 10 % 10)) s"
}
ktap_plan() { echo "KTAP version 1"; echo "1..$1"; _ktap_cs; _ktap_t=$_ktap_c; }
ktap_ok() { _ktap_n=$((_ktap_n + 1)); echo "ok $_ktap_n $*"; _ktap_took; }
ktap_fail() { _ktap_n=$((_ktap_n + 1)); _ktap_fail=$((_ktap_fail + 1)); echo "not ok $_ktap_n $*"; _ktap_took; }
ktap_skip() { _ktap_n=$((_ktap_n + 1)); _ktap_skip=$((_ktap_skip + 1)); echo "ok $_ktap_n $* # SKIP"; _ktap_took; }
# ktap_check "description" command...: a test point from a command's status.
ktap_check() {
	_kd=$1; shift
	if "$@"; then ktap_ok "$_kd"; else ktap_fail "$_kd"; fi
}
ktap_diag() { echo "# $*"; }
# same_tree DIR [SKIP]: DIR holds exactly the test tree: the same names
# (out/data/tree.list) and every file the MD5 the host computed
# (out/data/tree.md5). Only DIR is read, not the host's copy over 9p (a
# diff -r against that took 24 s a tree under TCG). SKIP, a top-level
# directory, is left out of both sides.
same_tree() {
	_st=/tmp/same_tree$(echo "$1" | tr / _)
	# Without SKIP, the patterns match no line ("./" starts every one).
	_st_names="^\./${2:-/}\(/\|\$\)" _st_files="  \./${2:-/}/"
	grep -v "$_st_names" /host/out/data/tree.list >$_st.want &&
		grep -v "$_st_files" /host/out/data/tree.md5 >$_st.md5 || return 1
	(cd "$1" && find . | LC_ALL=C sort | grep -v "$_st_names") >$_st.got || return 1
	[ -s $_st.md5 ] && cmp -s $_st.want $_st.got &&
		(cd "$1" && md5sum -c $_st.md5 >$_st.out 2>&1)
	_st_rc=$?
	# What differed, as diagnostics (to stderr: callers may drop stdout).
	if [ $_st_rc != 0 ]; then
		diff $_st.want $_st.got 2>&1 | head -n 5 | sed "s|^|# same_tree $1: names: |" >&2
		grep -v ': OK$' $_st.out 2>/dev/null | head -n 5 | sed "s|^|# same_tree $1: |" >&2
	fi
	rm -f $_st.out $_st.want $_st.got $_st.md5
	return $_st_rc
}
ktap_finish() {
	[ "$_ktap_fail" -eq 0 ] || exit 1
	[ "$_ktap_skip" -eq 0 ] || [ "$_ktap_skip" -lt "$_ktap_n" ] || exit 4
	exit 0
}
# The Rust module built for the running kernel (tests/guest/init sets it).
CFOD_KO=${CFOD_KO:-/host/cachefiles_ondemand_rs.ko}
# Load the Rust backend when the run is for it, and check which backend a
# newly bound cache used.
backend_setup() {
	if [ "$CFOD_BACKEND" = rust ]; then
		grep -q '^cachefiles_ondemand_rs ' /proc/modules ||
			insmod "$CFOD_KO" || return 1
	else
		if grep -q '^cachefiles_ondemand_rs ' /proc/modules; then
			rmmod cachefiles_ondemand_rs || return 1
		fi
	fi
	return 0
}
# od_serve_start DIR PIDFILE [ERRFILE]: the test daemon on a fresh cache
# directory DIR over the host's blobs, its stderr to ERRFILE; sets od_pid.
# Succeeds once the daemon has bound the cache (it writes PIDFILE then).
od_serve_start() {
	rm -rf "$1" "$2"
	mkdir -p "$1"
	"$BIN/od-serve" -p "$2" "$1" /host/out/data/blobs 2>"${3:-/dev/null}" &
	od_pid=$!
	for _i in $(seq 50); do [ -s "$2" ] && break; sleep 0.2; done
	[ -s "$2" ]
}
# The backend of the bound cache: rust when the module says it has a cache
# (debugfs "bound"), else c when fscache lists an active cache (the built-in
# code has it: the patch adds nothing visible for it), else none.
bound_backend() {
	if [ "$(cat /sys/kernel/debug/cachefiles_ondemand_rs/bound 2>/dev/null)" = 1 ]; then
		echo rust
	elif awk 'NR > 2 && $6 == "A" { f = 1 } END { exit !f }' /proc/fs/netfs/caches; then
		echo c
	else
		echo none
	fi
}
# The Rust backend's statistics: RS_TOTALS over unbound caches, and
# rs_cache_stats, the file of the most recently bound cache (empty if none).
RS_DIR=/sys/kernel/debug/cachefiles_ondemand_rs
RS_TOTALS=$RS_DIR/stats
rs_cache_stats() {
	_n=$(ls -d $RS_DIR/cache* 2>/dev/null | sed 's/.*cache//' | sort -n | tail -n1)
	[ -n "$_n" ] && echo "$RS_DIR/cache$_n/stats"
}
# rs_reads FILE: the READs a statistics file counts as queued.
rs_reads() { sed -n 's/^read: queued \([0-9]*\).*/\1/p' "$1" 2>/dev/null; }
# killmatch SIGNAL PATTERN: signal every process whose command line contains
# PATTERN (this busybox has no pkill). Succeeds if it signalled any. One grep
# over /proc: arguments are NUL-separated there, so spaces match any byte.
killmatch() {
	_hit=1
	# "[o]dd.serve" matches "odd serve" but not grep's own command line.
	_re="[$(echo "$2" | cut -c1)]$(echo "$2" | cut -c2- | tr ' ' .)"
	for _f in $(grep -l -a "$_re" /proc/[0-9]*/cmdline 2>/dev/null); do
		_pid=${_f#/proc/}; _pid=${_pid%/cmdline}
		[ "$_pid" = $$ ] && continue
		kill -"$1" "$_pid" 2>/dev/null && _hit=0
	done
	return $_hit
}
# d_state_scan: succeeds if no task is stuck in D state; a task merely
# passing through D (a disk wait) is not counted, one still there after
# about 2 s is, and is listed. The kernel's hung-task detector skips killable
# waits (a reader waiting for a READ is one): this does not.
d_state_scan() {
	for _i in 1 2 3 4 5 6 7 8 9 10; do
		_ds=$(grep -l '^State:.*(disk sleep)' /proc/[0-9]*/task/[0-9]*/status 2>/dev/null)
		[ -z "$_ds" ] && return 0
		sleep 0.2
	done
	for _f in $_ds; do
		ktap_diag "in D state: $(sed -n 's/^Name:[[:space:]]*//p' "$_f" 2>/dev/null) (${_f%/status})"
	done
	return 1
}
