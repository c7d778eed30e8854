#!/usr/bin/env bash
# Compiles the example programs (skipped when their sources are unchanged).
source "$(dirname "$0")/../lib.sh"
bash "$WEFT_ROOT/examples/hello/build.sh"
