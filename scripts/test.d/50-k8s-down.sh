#!/usr/bin/env bash
# Stops the test Kubernetes control plane (real node included) and the node's registry.
source "$(dirname "$0")/../lib.sh"
bash "$WEFT_ROOT/scripts/k8s-testenv" down
state="${TMPDIR:-/tmp}/weft-test-node-registry-$(printf '%s' "${WEFT_TEST_ENV:-none}" | md5sum | cut -c1-12)"
if [[ -f "$state/pid" ]]; then
  pid="$(cat "$state/pid")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
fi
rm -rf "$state"
