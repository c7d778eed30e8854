#!/usr/bin/env bash
# Starts the test Kubernetes control plane with its real node in the in-cluster layout (kube-proxy
# and CoreDNS in the node's network namespace: pods reach the API server through the `kubernetes`
# Service and resolve Service names), and the weft registry the node pulls from (plain HTTP on a
# free loopback port); exports KUBECONFIG and WEFT_NODE_REGISTRY. The PostgreSQL of
# 45-postgres-up.sh, when it runs, is bridged into the cluster as the Service
# postgres.testenv-host (WEFT_TEST_POSTGRES_CLUSTER_URL: its URL as pods dial it).
source "$(dirname "$0")/../lib.sh"
: "${WEFT_TEST_ENV:?WEFT_TEST_ENV is not set}"
state="${TMPDIR:-/tmp}/weft-test-node-registry-$(printf '%s' "$WEFT_TEST_ENV" | md5sum | cut -c1-12)"
if [[ -f "$state/pid" ]]; then kill "$(cat "$state/pid")" 2>/dev/null || true; fi
rm -rf "$state"; mkdir -p "$state"
port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
nohup node "$WEFT_ROOT/dist/src/cli/main.js" registry serve --root "$state/root" --addr "127.0.0.1:$port" >"$state/registry.log" 2>&1 &
echo $! >"$state/pid"
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  kill -0 "$(cat "$state/pid")" 2>/dev/null || die "the node's registry exited at start: $(tail -5 "$state/registry.log")"
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null || die "the node's registry did not answer on 127.0.0.1:$port: $(tail -5 "$state/registry.log")"
echo "WEFT_NODE_REGISTRY=127.0.0.1:$port" >>"$WEFT_TEST_ENV"
log "weft registry for the real node on 127.0.0.1:$port (log: $state/registry.log)"
# The test PostgreSQL (loopback), reachable from pods as postgres.testenv-host.svc.cluster.local.
pg_url="$(sed -n 's/^WEFT_TEST_POSTGRES_URL=//p' "$WEFT_TEST_ENV" | tail -n1)"
host_services=""
if [[ "$pg_url" =~ ^(postgres://[^@]+@)(127\.0\.0\.1:([0-9]+))(/.*)$ ]]; then
  host_services="postgres=${BASH_REMATCH[2]}"
  echo "WEFT_TEST_POSTGRES_CLUSTER_URL=${BASH_REMATCH[1]}postgres.testenv-host.svc.cluster.local:${BASH_REMATCH[3]}${BASH_REMATCH[4]}" >>"$WEFT_TEST_ENV"
fi
out="$(WEFT_NODE_REGISTRIES="127.0.0.1:$port" WEFT_NODE_HOST_SERVICES="$host_services" bash "$WEFT_ROOT/scripts/k8s-testenv" up --real-node --in-cluster)" ||
  die "scripts/k8s-testenv up --real-node --in-cluster failed (see above)"
line="$(tail -n 1 <<<"$out")"
[[ "$line" == "export KUBECONFIG="* ]] || die "unexpected last line from scripts/k8s-testenv up: $line"
echo "KUBECONFIG=${line#export KUBECONFIG=}" >>"$WEFT_TEST_ENV"
