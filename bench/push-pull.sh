#!/usr/bin/env bash
# Push/pull benchmark: weft vs skopeo vs crane on Debian's docker-registry (loopback).
# Usage: bench/push-pull.sh [--runs 5] [--mb 32]
set -euo pipefail
cd "$(dirname "$0")/.."
WEFT_SETUP_MODE=--test bash scripts/setup.d/35-crane.sh
npx tsc -p tsconfig.json >/dev/null || true
node scripts/bundle-cli.mjs >/dev/null
exec node dist/bench/push-pull.js "$@"
