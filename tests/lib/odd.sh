# Helpers for the tests that run the project's daemon, odd.
# shellcheck shell=sh
wait_bound() {
	for i in $(seq 100); do
		[ "$(bound_backend)" = "$CFOD_BACKEND" ] && return 0
		sleep 0.1
	done
	return 1
}
stop() { kill -TERM "$1"; wait "$1"; }
