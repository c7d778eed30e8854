#!/usr/bin/env bash
# Starts the test Kubernetes control plane and exports KUBECONFIG to the tests.
source "$(dirname "$0")/../lib.sh"
out="$(bash "$WEFT_ROOT/scripts/k8s-testenv" up)" || die "scripts/k8s-testenv up failed (see above)"
line="$(tail -n 1 <<<"$out")"
[[ "$line" == "export KUBECONFIG="* ]] || die "unexpected last line from scripts/k8s-testenv up: $line"
echo "KUBECONFIG=${line#export KUBECONFIG=}" >>"${WEFT_TEST_ENV:?WEFT_TEST_ENV is not set}"
