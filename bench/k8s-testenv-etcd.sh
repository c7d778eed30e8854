#!/usr/bin/env bash
# Benchmark: the test control plane (scripts/k8s-testenv) on etcd 3.6.5 (built from Go modules,
# the default) vs Debian's etcd 3.4.23 (the peer), in one run, alternating, on fresh clusters:
#   up    - wall time of `scripts/k8s-testenv up` (certificates ... nodes Ready, default SA)
#   jobs  - from creating N Jobs at once to all N Complete (scheduler, Job controller, kwok stages)
# Prints every sample, then medians and the ratio 3.4/3.6.
# Usage: bench/k8s-testenv-etcd.sh [N=10] [REPEATS=3]
source "$(dirname "$0")/../scripts/lib.sh"
source "$WEFT_ROOT/scripts/k8s/versions.sh"
n="${1:-10}" repeats="${2:-3}"
kubectl="$WEFT_TOOLS/kubernetes-$WEFT_K8S_VERSION/bin/kubectl"
declare -A etcd=([3.6]="$WEFT_TOOLS/etcd-$WEFT_ETCD_VERSION/bin/etcd" [3.4]=/usr/bin/etcd)
for v in "${!etcd[@]}"; do [[ -x "${etcd[$v]}" ]] || die "etcd $v missing at ${etcd[$v]} (scripts/k8s/build.sh; apt-get install etcd-server)"; done
work="$(mktemp -d)"
cleanup() { [[ -d "$work/state" ]] && WEFT_K8S_STATE="$work/state" bash "$WEFT_ROOT/scripts/k8s-testenv" down >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
now() { date +%s.%N; }
jobs_yaml() {
  local i
  for ((i = 0; i < n; i++)); do
    printf -- '---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: bench-%d}\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: main, image: example.invalid/bench:1}]\n' "$i"
  done
}
declare -A samples
for ((r = 1; r <= repeats; r++)); do
  for v in 3.6 3.4; do
    t0="$(now)"
    WEFT_K8S_STATE="$work/state" WEFT_K8S_ETCD="${etcd[$v]}" bash "$WEFT_ROOT/scripts/k8s-testenv" up >/dev/null 2>"$work/up.log" \
      || { cat "$work/up.log" >&2; die "up failed with etcd $v"; }
    t1="$(now)"
    export KUBECONFIG="$work/state/kubeconfig"
    jobs_yaml | "$kubectl" apply -f - >/dev/null
    t2="$(now)"
    deadline=$((SECONDS + 900))
    until [[ "$("$kubectl" get jobs -o jsonpath='{range .items[*]}{.status.succeeded}{"\n"}{end}' | grep -c '^1$')" -eq "$n" ]]; do
      ((SECONDS < deadline)) || die "etcd $v: $n jobs did not complete in 900s"
      sleep 0.2
    done
    t3="$(now)"
    WEFT_K8S_STATE="$work/state" bash "$WEFT_ROOT/scripts/k8s-testenv" down >/dev/null 2>&1
    up_s="$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')"
    jobs_s="$(awk -v a="$t2" -v b="$t3" 'BEGIN{printf "%.2f", b-a}')"
    samples[$v,up]+="$up_s " samples[$v,jobs]+="$jobs_s "
    printf 'run %d etcd %s: up %ss, %d jobs complete in %ss\n' "$r" "$v" "$up_s" "$n" "$jobs_s"
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "medians over $repeats runs (N=$n jobs):"
for m in up jobs; do
  a="$(median <<<"${samples[3.6,$m]}")" b="$(median <<<"${samples[3.4,$m]}")"
  printf '  %-5s etcd 3.6.5 %8.2fs   etcd 3.4.23 %8.2fs   ratio 3.4/3.6 %6.2fx\n' "$m" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", b/a}')"
done
