#!/usr/bin/env bash
# Leader failover benchmark for the coordination backends (memory, etcd, Kubernetes Leases).
# Starts its own etcd (as the tests do), uses the test control plane (scripts/k8s-testenv up).
# Usage: bench/coord-failover.sh [--kills N] [--backends memory,etcd,kubernetes] [--lease MS --renew MS --retry MS]
source "$(dirname "$0")/../scripts/lib.sh"
cd "$WEFT_ROOT"
npx tsc -p tsconfig.json >/dev/null || true
export WEFT_TEST_ENV="$(mktemp)"
trap 'bash scripts/test.d/40-etcd-down.sh; rm -f "$WEFT_TEST_ENV"' EXIT
bash scripts/test.d/40-etcd-up.sh
if [[ -z "${KUBECONFIG:-}" ]]; then
  line="$(bash scripts/k8s-testenv up | tail -n 1)"
  [[ "$line" == "export KUBECONFIG="* ]] || die "scripts/k8s-testenv up did not print a KUBECONFIG"
  echo "KUBECONFIG=${line#export KUBECONFIG=}" >>"$WEFT_TEST_ENV"
fi
set -a; source "$WEFT_TEST_ENV"; set +a
# The peers (client-go leaderelection, etcd concurrency.Election) as a Go program,
# built once into the tool cache, keyed by the hash of its sources.
if [[ -z "${WEFT_COORD_PEER:-}" ]] && command -v go >/dev/null; then
  key="$(cat bench/coord-peer/go.mod bench/coord-peer/go.sum bench/coord-peer/main.go | sha256sum | cut -c1-12)"
  WEFT_COORD_PEER="$WEFT_TOOLS/coord-peer-$key/coord-peer"
  if [[ ! -x "$WEFT_COORD_PEER" ]]; then
    log "building the Go peer (bench/coord-peer: client-go leaderelection and etcd concurrency.Election)"
    (cd bench/coord-peer && CGO_ENABLED=0 go build -trimpath -o "$WEFT_COORD_PEER" .)
  fi
  export WEFT_COORD_PEER
fi
[[ -n "${WEFT_COORD_PEER:-}" ]] || log "go not found: running without the Go peers"
node dist/bench/coord-failover.js "$@"
