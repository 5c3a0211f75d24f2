#!/bin/sh
# Metrics: odd's control socket serves the Prometheus text while it serves
# a mount; the counters match what was done (an OPEN, READs, bytes from the
# dir source equal to the rise in the read counter's data), the histogram
# is consistent, the cache usage is reported against the limits, and
# SIGUSR1 still prints the statistics block.
. "$T/lib/ktap.sh"
. "$T/lib/odd.sh"
DATA=/host/out/data
ktap_plan 9
backend_setup || exit 1
sock=/tmp/odd-metrics.sock
mkdir -p /mnt/odd
rm -rf /cache/odd-m && mkdir -p /cache/odd-m
"$BIN/odd" serve --dir /cache/odd-m --source "dir:$DATA/blobs" --control $sock \
	2>/tmp/odd-m.err &
pid=$!
ktap_check "odd bound the cache" wait_bound
ktap_check "mount" mount -t erofs none -o fsid=simple.img /mnt/odd
cat /mnt/odd/big/one.bin >/dev/null
m() { awk -v k="$1" '$1 == k {print $2}' /tmp/m.txt; }
# In flight: scrape until readahead the reader did not wait for is done.
c_idle() {
	for i in $(seq 50); do
		"$BIN/odd" metrics --control $sock >/tmp/m.txt
		[ "$(m 'odd_requests_in_flight{opcode="read"}')" = 0 ] && break
		sleep 0.1
	done
	[ "$(m 'odd_requests_in_flight{opcode="read"}')" = 0 ] && ! grep -q '^odd_errors_total.* [1-9]' /tmp/m.txt
}
ktap_check "nothing in flight, no errors" c_idle
sed -n '/^odd_requests_total/p; /^odd_bytes_written_total/p; /_count/p; /^odd_cache_free_percent/p' /tmp/m.txt | sed 's/^/# /'
ktap_check "one OPEN counted" [ "$(m 'odd_requests_total{opcode="open"}')" = 1 ]
reads=$(m 'odd_requests_total{opcode="read"}')
c_reads() { [ "${reads:-0}" -gt 0 ] && [ "$(m 'odd_request_duration_seconds_count{opcode="read"}')" = "$reads" ]; }
ktap_check "READs counted, each in the latency histogram" c_reads
bytes=$(m 'odd_bytes_written_total{source="dir"}')
ktap_check "bytes from the dir source cover the file read (>= 1536 KiB)" [ "${bytes:-0}" -ge 1572864 ]
c_usage() { [ "$(m 'odd_cache_limit_percent{limit="bcull"}')" = 7 ] && [ -n "$(m odd_cache_free_bytes)" ]; }
ktap_check "cache usage and limits reported" c_usage
kill -USR1 $pid
for i in $(seq 50); do grep -q "statistics:" /tmp/odd-m.err && break; sleep 0.1; done
ktap_check "SIGUSR1 still prints the statistics" grep -q "read=$reads " /tmp/odd-m.err
umount /mnt/odd
ktap_check "odd stops cleanly" stop $pid
ktap_finish
