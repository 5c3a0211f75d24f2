#!/bin/sh
# The Rust backend module loads, registers, unloads and logs each step;
# five load/unload cycles in a row leave nothing behind.
. "$T/lib/ktap.sh"
KO=$CFOD_KO
ktap_plan 6
grep -q '^cachefiles_ondemand_rs ' /proc/modules && rmmod cachefiles_ondemand_rs
dmesg -c >/dev/null
ktap_check "insmod" insmod "$KO"
ktap_check "listed in /proc/modules" grep -q '^cachefiles_ondemand_rs ' /proc/modules
ktap_check "logged that it loaded" sh -c "dmesg | grep -q 'cachefiles_ondemand_rs: loaded'"
ktap_check "rmmod" rmmod cachefiles_ondemand_rs
ktap_check "logged that it unloaded" sh -c "dmesg | grep -q 'cachefiles_ondemand_rs: unloaded'"
ok=1
for i in 1 2 3 4 5; do
	insmod "$KO" && rmmod cachefiles_ondemand_rs || ok=0
done
ktap_check "5 load/unload cycles" [ $ok = 1 ]
ktap_finish
