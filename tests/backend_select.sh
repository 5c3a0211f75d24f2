#!/bin/sh
# The kernel patch's contract: which backend a cache binds to, and module
# pinning. Independent of the run's backend: it loads and unloads the module
# itself. The kernel refuses to unload a module whose reference count is not
# zero with EWOULDBLOCK (EAGAIN), which busybox rmmod reports as "Resource
# temporarily unavailable".
. "$T/lib/ktap.sh"
KO=$CFOD_KO
A=/sys/kernel/debug/cachefiles/ondemand_backend
start_daemon() {
	rm -rf "/cache/sel-$1" /tmp/sel.pid
	mkdir -p "/cache/sel-$1"
	"$BIN/od-serve" -p /tmp/sel.pid "/cache/sel-$1" /host/out/data/blobs 2>/dev/null &
	daemon=$!
	for i in $(seq 50); do [ -s /tmp/sel.pid ] && break; sleep 0.2; done
	[ -s /tmp/sel.pid ]
}
stop_daemon() { kill -TERM $daemon; wait $daemon; }
registered() { sed -n 's/^registered: //p' $A; }

ktap_plan 12
grep -q '^cachefiles_ondemand_rs ' /proc/modules && rmmod cachefiles_ondemand_rs
ktap_check "no module: nothing registered" [ "$(registered)" = none ]
start_daemon c
ktap_check "no module: bind picks the built-in C backend" [ "$(bound_backend)" = c ]
ktap_check "insmod while a C cache is bound" insmod $KO
ktap_check "the bound cache keeps its C backend" [ "$(bound_backend)" = c ]
stop_daemon
ktap_check "module registered as rust" [ "$(registered)" = rust ]
ktap_check "after the cache is gone nothing is bound" [ "$(bound_backend)" = none ]
ktap_check "bind picks the registered Rust backend" start_daemon rust
ktap_check "debugfs says bound: rust" [ "$(bound_backend)" = rust ]
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
ktap_check "rmmod succeeds once the daemon has exited" rmmod cachefiles_ondemand_rs
ktap_check "unregistered after rmmod" [ "$(registered)" = none ]
ktap_finish
