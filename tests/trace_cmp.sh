#!/bin/sh
# The two backends leave the same trace: one workload (mount an image, read
# two files, unmount) run on the built-in C code and then on the Rust module
# in this boot, with the seven cachefiles_ondemand_* tracepoints on; the
# streams, with the per-boot numbers (object debug ids, msg and object ids,
# fds, backing inodes) renamed in order of appearance, are equal line for
# line. The object references each backend takes are balanced per reason
# (cachefiles_ref), and the module takes none of its own here.
# Independent of the run's backend: it loads and unloads the module itself.
. "$T/lib/ktap.sh"
TR=/sys/kernel/tracing
ktap_plan 9
grep -q " $TR tracefs" /proc/mounts || mount -t tracefs nodev $TR

# run_workload BACKEND: the workload, which must run on BACKEND, traced
# into /tmp/trace-BACKEND.
run_workload() {
	mkdir -p /mnt/tr
	echo 0 >$TR/tracing_on
	echo >$TR/trace
	echo >$TR/set_event
	for e in open copen close read cread fd_write fd_release; do
		echo "cachefiles:cachefiles_ondemand_$e" >>$TR/set_event
	done
	echo cachefiles:cachefiles_ref >>$TR/set_event
	echo 1 >$TR/tracing_on
	od_serve_start "/cache/trace-$1" /tmp/tr.pid
	d=$od_pid
	ok=0
	got=$(bound_backend)
	[ "$got" = "$1" ] || ktap_diag "the cache is bound to the $got backend, not $1"
	if [ "$got" = "$1" ] && mount -t erofs none -o fsid=simple.img /mnt/tr; then
		md5sum /mnt/tr/a/b/c/d/deep.bin /mnt/tr/many/f000.txt >/tmp/tr-$1.md5 && ok=1
		umount /mnt/tr || ok=0
	fi
	kill -TERM $d
	wait $d
	echo 0 >$TR/tracing_on
	grep -v '^#' $TR/trace >/tmp/trace-$1
	echo >$TR/set_event
	[ $ok = 1 ]
}

# normalise FILE: the ondemand events, fields renamed by first appearance.
normalise() {
	sed -n 's/.*: \(cachefiles_ondemand_[a-z_]*\): /\1 /p' "$1" | awk '
	function ren(kind, v) {
		if (v ~ /^0+$/) return "0"
		if (!((kind, v) in seen)) seen[kind, v] = kind (++n[kind])
		return seen[kind, v]
	}
	{
		out = $1
		for (i = 2; i <= NF; i++) {
			split($i, kv, "=")
			k = kv[1]; v = kv[2]
			if (k == "o" || k == "mid" || k == "oid" || k == "fd" || k == "iB")
				v = ren(k, v)
			out = out " " k "=" v
		}
		print out
	}'
}

# refs FILE REASON: "gets puts" of cachefiles_ref lines with that reason.
refs() {
	printf '%s %s\n' "$(grep -c "GET $2" "$1")" "$(grep -c "PUT $2" "$1")"
}

grep -q '^cachefiles_ondemand_rs ' /proc/modules && rmmod cachefiles_ondemand_rs
ktap_check "workload on the built-in C code" run_workload c
ktap_check "insmod" insmod "$CFOD_KO"
ktap_check "workload on the Rust module" run_workload rust
rmmod cachefiles_ondemand_rs
ktap_check "both read the same bytes" cmp -s /tmp/tr-c.md5 /tmp/tr-rust.md5
normalise /tmp/trace-c >/tmp/norm-c
normalise /tmp/trace-rust >/tmp/norm-rust
ktap_diag "C: $(wc -l </tmp/norm-c) ondemand events, Rust: $(wc -l </tmp/norm-rust)"
for e in open copen read cread fd_write close fd_release; do
	ktap_diag "  $e: C $(grep -c "^cachefiles_ondemand_$e " /tmp/norm-c)," \
		"Rust $(grep -c "^cachefiles_ondemand_$e " /tmp/norm-rust)"
done
ktap_check "every one of the seven events fired on C" sh -c '
	for e in open copen read cread fd_write close fd_release; do
		grep -q "^cachefiles_ondemand_$e " /tmp/norm-c || exit 1
	done'
if ! cmp -s /tmp/norm-c /tmp/norm-rust; then
	diff /tmp/norm-c /tmp/norm-rust | head -n 40 | sed 's/^/# /'
fi
ktap_check "the two streams are equal, event for event and field for field" \
	cmp -s /tmp/norm-c /tmp/norm-rust
ktap_diag "refs C: ondemand_fd $(refs /tmp/trace-c ondemand_fd), read_req $(refs /tmp/trace-c read_req)"
ktap_diag "refs Rust: ondemand_fd $(refs /tmp/trace-rust ondemand_fd)," \
	"backend $(refs /tmp/trace-rust backend)"
balanced() { set -- $(refs "$1" "$2"); [ "$1" -gt 0 ] && [ "$1" = "$2" ]; }
ktap_check "C: ondemand_fd references balanced" balanced /tmp/trace-c ondemand_fd
ktap_check "Rust: ondemand_fd references balanced (taken by cachefiles for the module)" \
	balanced /tmp/trace-rust ondemand_fd
# A request borrows its object from its sender, who holds it while it
# waits: in this workload, where no request outlives its sender's wait, the
# module takes no object reference of its own.
none() { [ "$(refs "$1" "$2")" = "0 0" ]; }
ktap_check "Rust: no object reference of the module's own: its requests borrow their senders' (backend GET and PUT 0)" \
	none /tmp/trace-rust backend
ktap_finish
