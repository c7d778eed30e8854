#!/usr/bin/env bash
# Builds the web dashboard (dashboard/, Preact + Vite) into dist/dashboard, which `weft master`
# serves at /. Skipped when the sources and the lock file are unchanged since the last build.
source "$(dirname "$0")/../lib.sh"
cd "$WEFT_ROOT"
out="dist/dashboard"
hash="$( (find dashboard -type f ! -path '*/node_modules/*' -print0 | sort -z | xargs -0 sha256sum; sha256sum package-lock.json) | sha256sum | cut -c1-32)"
if [[ -f "$out/.source-hash" && "$(cat "$out/.source-hash")" == "$hash" && -f "$out/index.html" ]]; then
  exit 0
fi
log "building the dashboard (dashboard/ -> $out)"
npx tsc -p dashboard/tsconfig.json || die "the dashboard does not type-check (see above)"
npx vite build --config dashboard/vite.config.ts || die "building the dashboard with Vite failed (see above)"
echo "$hash" >"$out/.source-hash"
