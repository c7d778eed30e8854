#!/usr/bin/env bash
# Stops the etcd started by 40-etcd-up.sh and removes its data.
source "$(dirname "$0")/../lib.sh"
# One etcd per test-env file, so a benchmark and a test run do not share one.
state="${TMPDIR:-/tmp}/weft-test-etcd-$(printf '%s' "${WEFT_TEST_ENV:-none}" | md5sum | cut -c1-12)"
stop_pid_file "$state/pid"
rm -rf "$state"
