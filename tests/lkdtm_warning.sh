#!/bin/sh
# Harness self-test, run in its own boot by scripts/check.sh: provoke a kernel
# WARNING with LKDTM. The host's splat detector must catch it.
. "$T/lib/ktap.sh"
ktap_plan 1
ktap_check "provoked a WARNING" sh -c "echo WARNING >/sys/kernel/debug/provoke-crash/DIRECT"
ktap_finish
