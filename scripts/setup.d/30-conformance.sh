#!/usr/bin/env bash
# Builds the OCI distribution-spec conformance suite (judge of the embedded
# registry) into $WEFT_TOOLS/oci-conformance-<version>/, only for tests and only
# when it is missing. The suite has no tags: this is the pseudo-version of its
# main branch found with `go list -m -json github.com/opencontainers/distribution-spec/conformance@main`.
source "$(dirname "$0")/../lib.sh"
[[ "${WEFT_SETUP_MODE:-}" == --test ]] || exit 0
version="v0.0.0-20260730175803-fee21197eb94"
dest="$WEFT_TOOLS/oci-conformance-$version"
if [[ -x "$dest/conformance" ]]; then exit 0; fi
command -v go >/dev/null || die "go is needed to build the OCI conformance suite (install Go >= 1.24)"
log "building the OCI conformance suite $version into $dest"
tmp="$(mktemp -d "$WEFT_TOOLS/.oci-conformance.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath "github.com/opencontainers/distribution-spec/conformance@$version"
[[ -x "$tmp/conformance" ]] || die "go install did not produce the conformance binary"
mkdir -p "$tmp/out" && mv "$tmp/conformance" "$tmp/out/conformance"
rm -rf "$dest" && mv "$tmp/out" "$dest"
log "OCI conformance suite ready: $dest/conformance"
