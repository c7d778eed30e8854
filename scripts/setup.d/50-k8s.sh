#!/usr/bin/env bash
# Builds the test Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl from k8s.io/kubernetes; kwok, kwokctl) into $WEFT_TOOLS.
# Only the tests need it. Skipped quickly when the binaries of the pinned versions exist.
source "$(dirname "$0")/../lib.sh"
[[ "${WEFT_SETUP_MODE:-}" == --test ]] || exit 0
bash "$WEFT_ROOT/scripts/k8s/build.sh"
