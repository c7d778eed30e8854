#!/usr/bin/env bash
# Builds crane (go-containerregistry's registry CLI) from its Go module into
# $WEFT_TOOLS/crane-<version>/crane. Tests and benchmarks use it as an
# independent peer client. Only in --test mode; skipped when already built.
source "$(dirname "$0")/../lib.sh"
[[ "${WEFT_SETUP_MODE:-}" == --test ]] || exit 0
CRANE_VERSION="${CRANE_VERSION:-v0.21.9}"
dest="$WEFT_TOOLS/crane-$CRANE_VERSION"
if [[ -x "$dest/crane" ]]; then
  exit 0
fi
[[ -x /usr/local/go/bin/go ]] && PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || die "crane needs Go to build: install Go (https://go.dev/doc/install) or put it on PATH"
log "building crane $CRANE_VERSION into $dest"
tmp="$(mktemp -d "$WEFT_TOOLS/.crane-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
mkdir -p "$dest"
mv "$tmp/crane" "$dest/crane.partial"
mv "$dest/crane.partial" "$dest/crane"
"$dest/crane" version >/dev/null || die "crane $CRANE_VERSION was built but does not run"
log "crane $CRANE_VERSION ready"
