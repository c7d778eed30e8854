#!/usr/bin/env bash
# Stops the test Kubernetes control plane and removes its state.
source "$(dirname "$0")/../lib.sh"
bash "$WEFT_ROOT/scripts/k8s-testenv" down
