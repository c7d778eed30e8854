#!/usr/bin/env bash
# Stops the etcd started by 40-etcd-up.sh and removes its data.
source "$(dirname "$0")/../lib.sh"
# One etcd per test-env file, so a benchmark and a test run do not share one.
state="${TMPDIR:-/tmp}/weft-test-etcd-$(printf '%s' "${WEFT_TEST_ENV:-none}" | md5sum | cut -c1-12)"
if [[ -f "$state/pid" ]]; then
  pid="$(cat "$state/pid")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
fi
rm -rf "$state"
