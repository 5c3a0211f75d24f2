#!/bin/sh
# The kernel patch's contract: which backend a cache binds to, and module
# pinning. Independent of the run's backend: it loads and unloads the module
# itself. The kernel refuses to unload a module whose reference count is not
# zero with EWOULDBLOCK (EAGAIN), which busybox rmmod reports as "Resource
# temporarily unavailable". Which backend has the cache: bound_backend()
# (the module's debugfs "bound", else fscache's list of active caches).
. "$T/lib/ktap.sh"
KO=$CFOD_KO
RS=/sys/kernel/debug/cachefiles_ondemand_rs
start_daemon() {
	od_serve_start "/cache/sel-$1" /tmp/sel.pid
	daemon=$od_pid
	[ -s /tmp/sel.pid ]
}
stop_daemon() { kill -TERM $daemon; wait $daemon; }

ktap_plan 13
grep -q '^cachefiles_ondemand_rs ' /proc/modules && rmmod cachefiles_ondemand_rs
dmesg -c >/dev/null
start_daemon c
ktap_check "no module: bind picks the built-in C backend" [ "$(bound_backend)" = c ]
ktap_check "the built-in backend logs nothing of the patch's" \
	sh -c "! dmesg | grep -q 'on-demand backend'"
ktap_check "insmod while a C cache is bound" insmod $KO
ktap_check "the bound cache keeps its C backend" [ "$(bound_backend)" = c ]
ktap_check "the module's bind was not called for it" [ "$(cat $RS/binds)" = 0 ]
stop_daemon
ktap_check "after the cache is gone nothing is bound" [ "$(bound_backend)" = none ]
ktap_check "bind picks the registered Rust backend" start_daemon rust
rust_has_it() { [ "$(bound_backend)" = rust ] && dmesg | grep -q 'cache bound to the Rust on-demand backend'; }
ktap_check "the module has the cache; it logged so" rust_has_it
ktap_check "module pinned while the cache is bound" \
	sh -c "[ \$(cat /sys/module/cachefiles_ondemand_rs/refcnt) -gt 0 ]"
refused() {
	out=$(rmmod cachefiles_ondemand_rs 2>&1) && return 1
	ktap_diag "rmmod: $out"
	grep -q '^cachefiles_ondemand_rs ' /proc/modules &&
		echo "$out" | grep -q 'temporarily unavailable'
}
ktap_check "rmmod refused while bound (EAGAIN)" refused
stop_daemon
ktap_check "unpinned once the daemon has exited" \
	sh -c "[ \$(cat /sys/module/cachefiles_ondemand_rs/refcnt) = 0 ]"
ktap_check "rmmod succeeds once the daemon has exited" rmmod cachefiles_ondemand_rs
ktap_check "the module's debugfs directory is gone with it" [ ! -e $RS ]
ktap_finish
