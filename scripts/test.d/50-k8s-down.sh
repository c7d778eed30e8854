#!/usr/bin/env bash
# Stops the test Kubernetes control plane (real node included) and the node's registry.
source "$(dirname "$0")/../lib.sh"
bash "$WEFT_ROOT/scripts/k8s-testenv" down
state="${TMPDIR:-/tmp}/weft-test-node-registry-$(printf '%s' "${WEFT_TEST_ENV:-none}" | md5sum | cut -c1-12)"
stop_pid_file "$state/pid"
rm -rf "$state"
