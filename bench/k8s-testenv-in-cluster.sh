#!/usr/bin/env bash
# Benchmark: what in-cluster networking costs `scripts/k8s-testenv up`. On fresh clusters, in one
# run, alternating: the control plane (`up`), then the real node added to it (`up --real-node`,
# or `up --real-node --in-cluster`: the node's namespace, the unix-socket bridges, kube-proxy and
# CoreDNS ready, the `kubernetes` Service answering inside the namespace), then `down`.
# Prints every sample, then medians. A private state dir, bridge and pod subnet (WEFT_K8S_STATE,
# WEFT_REAL_NODE_BRIDGE, WEFT_REAL_NODE_SUBNET override them), so a test cluster is untouched.
# Usage: bench/k8s-testenv-in-cluster.sh [REPEATS=3]    (root: the real node needs it)
source "$(dirname "$0")/../scripts/lib.sh"
repeats="${1:-3}"
work="$(mktemp -d)"
export WEFT_K8S_STATE="${WEFT_K8S_STATE:-$work/state}" WEFT_REAL_NODE_BRIDGE="${WEFT_REAL_NODE_BRIDGE:-weftbench}"
export WEFT_REAL_NODE_SUBNET="${WEFT_REAL_NODE_SUBNET:-10.88.90.0/24}" WEFT_K8S_NODES="${WEFT_K8S_NODES:-3}"
cleanup() { bash "$WEFT_ROOT/scripts/k8s-testenv" down >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
declare -A samples
for ((r = 1; r <= repeats; r++)); do
  for mode in real-node in-cluster; do
    args=(--real-node); [[ "$mode" == in-cluster ]] && args+=(--in-cluster)
    t0="$(now)"
    bash "$WEFT_ROOT/scripts/k8s-testenv" up >/dev/null 2>"$work/up.log" || { cat "$work/up.log" >&2; die "up failed"; }
    t1="$(now)"
    bash "$WEFT_ROOT/scripts/k8s-testenv" up "${args[@]}" >/dev/null 2>"$work/up.log" || { cat "$work/up.log" >&2; die "up ${args[*]} failed"; }
    t2="$(now)"
    bash "$WEFT_ROOT/scripts/k8s-testenv" down >/dev/null 2>&1
    t3="$(now)"
    cp_s="$(secs "$t0" "$t1")" node_s="$(secs "$t1" "$t2")" down_s="$(secs "$t2" "$t3")"
    samples[$mode,cp]+="$cp_s " samples[$mode,node]+="$node_s " samples[$mode,total]+="$(secs "$t0" "$t2") " samples[$mode,down]+="$down_s "
    printf 'run %d %-10s: control plane %6ss, node %6ss, down %6ss (load %s)\n' "$r" "$mode" "$cp_s" "$node_s" "$down_s" "$(cut -d' ' -f1 /proc/loadavg)"
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "medians over $repeats runs:"
for m in cp node total down; do
  a="$(median <<<"${samples[real-node,$m]}")" b="$(median <<<"${samples[in-cluster,$m]}")"
  printf '  %-6s --real-node %7.2fs   --real-node --in-cluster %7.2fs   difference %+6.2fs\n' "$m" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", b-a}')"
done
