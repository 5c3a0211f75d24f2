#!/usr/bin/env bash
# daemon/odd.service through `systemd-analyze verify`, with its odd paths
# pointed at the binary just built (the unit names /usr/local/bin/odd, where
# the install recipe in its header puts it). Any complaint fails.
set -euo pipefail
. "$(dirname "$0")/env.sh"
odd=$CFOD_TOP/out/bin/odd
[ -x "$odd" ] || { echo "verify-unit: no $odd (scripts/build-daemon.sh)" >&2; exit 1; }
command -v systemd-analyze >/dev/null || { echo "verify-unit: systemd-analyze missing" >&2; exit 1; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
sed "s|/usr/local/bin/odd|$odd|g" "$CFOD_TOP/daemon/odd.service" >"$d/odd.service"
out=$(systemd-analyze verify "$d/odd.service" 2>&1) && [ -z "$out" ] && exit 0
echo "$out" >&2
exit 1
