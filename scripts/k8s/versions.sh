# Versions of the test control plane and the other tools built from Go modules. Source, don't run.
# Each list is tried in order (scripts/lib.sh go_resolve): the pin first, then versions known to
# work, because the Go module proxy here stops serving versions over time. Setting one of the
# single-version variables (WEFT_K8S_VERSION, ...) pins exactly that version, with no fallback.
# (Prefixed WEFT_: etcd reads every ETCD_* variable as a flag, and kwok reads KWOK_*.)
# "latest-in:vX.Y" = the newest vX.Y.* release the proxy lists.
WEFT_K8S_CANDIDATES="${WEFT_K8S_VERSION:-v1.35.4 latest-in:v1.35 v1.36.3 latest-in:v1.36}"
WEFT_KWOK_CANDIDATES="${WEFT_KWOK_VERSION:-v0.8.0 latest-in:v0.8 v0.7.0}"
# etcd built from go.etcd.io/etcd/server/v3: the 3.6 line that k8s.io/kubernetes v1.35 requires.
WEFT_ETCD_CANDIDATES="${WEFT_ETCD_VERSION:-v3.6.5 latest-in:v3.6}"
# CoreDNS (cluster DNS of the real node's in-cluster networking, scripts/k8s-testenv --in-cluster).
WEFT_COREDNS_CANDIDATES="${WEFT_COREDNS_VERSION:-v1.12.4 latest-in:v1.12 v1.14.7 latest-in:v1.14}"
WEFT_CRANE_CANDIDATES="${CRANE_VERSION:-v0.21.9 latest-in:v0.21 v0.22.1}"
# The conformance suite has no tags: pseudo-versions of its main branch (both passed 986 checks).
WEFT_CONFORMANCE_CANDIDATES="${WEFT_CONFORMANCE_VERSION:-v0.0.0-20260831232431-97274622c111 v0.0.0-20260730175803-fee21197eb94}"

# tool_version NAME MODULE CANDIDATES: the version of tool NAME to use. A candidate already built
# in $WEFT_TOOLS/NAME-<version> (marked by a .ok file) wins with no network access; otherwise the
# first candidate the proxy serves. The choice is recorded in $WEFT_TOOLS/NAME.version, which
# scripts/k8s-testenv and the tests read to find the binaries.
tool_version() {
  local name="$1" module="$2" c version
  for c in $3; do
    [[ "$c" == latest-in:* ]] && continue
    if [[ -e "$WEFT_TOOLS/$name-$c/.ok" ]]; then echo "$c" >"$WEFT_TOOLS/$name.version"; echo "$c"; return 0; fi
  done
  # shellcheck disable=SC2086
  version="$(go_resolve "$module" $3)" || return 1
  echo "$version" >"$WEFT_TOOLS/$name.version"
  echo "$version"
}

# recorded_version NAME DEFAULT: the version recorded by tool_version, else DEFAULT (first pin).
recorded_version() {
  local f="$WEFT_TOOLS/$1.version"
  if [[ -s "$f" ]]; then cat "$f"; else echo "${2%% *}"; fi
}
WEFT_K8S_VERSION="$(recorded_version kubernetes "$WEFT_K8S_CANDIDATES")"
WEFT_KWOK_VERSION="$(recorded_version kwok "$WEFT_KWOK_CANDIDATES")"
WEFT_ETCD_VERSION="$(recorded_version etcd "$WEFT_ETCD_CANDIDATES")"
WEFT_COREDNS_VERSION="$(recorded_version coredns "$WEFT_COREDNS_CANDIDATES")"
