#!/usr/bin/env bash
# Builds the OCI distribution-spec conformance suite (judge of the embedded registry) into
# $WEFT_TOOLS/oci-conformance-<version>/, only for tests and only when it is missing. The suite
# has no tags: scripts/k8s/versions.sh lists pseudo-versions of its main branch, tried in order
# (the proxy stops serving old ones). The version used is recorded in $WEFT_TOOLS/oci-conformance.version.
source "$(dirname "$0")/../lib.sh"
[[ "${WEFT_SETUP_MODE:-}" == --test ]] || exit 0
source "$WEFT_ROOT/scripts/k8s/versions.sh"
command -v go >/dev/null || die "go is needed to build the OCI conformance suite (install Go >= 1.24)"
version="$(tool_version oci-conformance github.com/opencontainers/distribution-spec/conformance "$WEFT_CONFORMANCE_CANDIDATES")" ||
  die "no served version of the OCI conformance suite (see above)"
dest="$WEFT_TOOLS/oci-conformance-$version"
if [[ -x "$dest/conformance" ]]; then touch "$dest/.ok"; exit 0; fi
log "building the OCI conformance suite $version into $dest"
tmp="$(mktemp -d "$WEFT_TOOLS/.oci-conformance.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath "github.com/opencontainers/distribution-spec/conformance@$version" ||
  die "go install of the OCI conformance suite $version failed (see above)"
[[ -x "$tmp/conformance" ]] || die "go install did not produce the conformance binary"
mkdir -p "$tmp/out" && mv "$tmp/conformance" "$tmp/out/conformance" && touch "$tmp/out/.ok"
rm -rf "$dest" && mv "$tmp/out" "$dest"
log "OCI conformance suite ready: $dest/conformance"
