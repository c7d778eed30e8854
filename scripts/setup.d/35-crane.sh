#!/usr/bin/env bash
# Builds crane (go-containerregistry's registry CLI) from its Go module into
# $WEFT_TOOLS/crane-<version>/crane. Tests and benchmarks use it as an independent peer client.
# Only in --test mode; skipped when already built. Versions tried in order: scripts/k8s/versions.sh
# (CRANE_VERSION pins one); the version used is recorded in $WEFT_TOOLS/crane.version.
source "$(dirname "$0")/../lib.sh"
[[ "${WEFT_SETUP_MODE:-}" == --test ]] || exit 0
[[ -x /usr/local/go/bin/go ]] && PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || die "crane needs Go to build: install Go (https://go.dev/doc/install) or put it on PATH"
source "$WEFT_ROOT/scripts/k8s/versions.sh"
version="$(tool_version crane github.com/google/go-containerregistry "$WEFT_CRANE_CANDIDATES")" ||
  die "no served version of go-containerregistry for crane (see above)"
dest="$WEFT_TOOLS/crane-$version"
if [[ -x "$dest/crane" ]]; then touch "$dest/.ok"; exit 0; fi
log "building crane $version into $dest"
tmp="$(mktemp -d "$WEFT_TOOLS/.crane-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath "github.com/google/go-containerregistry/cmd/crane@$version" ||
  die "go install of crane $version failed (see above)"
mkdir -p "$dest"
mv "$tmp/crane" "$dest/crane.partial"
mv "$dest/crane.partial" "$dest/crane"
"$dest/crane" version >/dev/null || die "crane $version was built but does not run"
touch "$dest/.ok"
log "crane $version ready"
