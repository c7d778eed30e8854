#!/usr/bin/env bash
# Builds the test Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kubelet, kube-proxy from k8s.io/kubernetes; etcd; kwok, kwokctl; and
# CoreDNS for the in-cluster networking test) into $WEFT_TOOLS.
# Only the tests need it. Skipped quickly when the binaries of the pinned versions exist.
source "$(dirname "$0")/../lib.sh"
[[ "${WEFT_SETUP_MODE:-}" == --test ]] || exit 0
WEFT_IN_CLUSTER=1 bash "$WEFT_ROOT/scripts/k8s/build.sh"
