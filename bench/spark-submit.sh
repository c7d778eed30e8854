#!/usr/bin/env bash
# Benchmark: Spark's SparkPi on the test environment's real node, submitted by weft and by Spark's own
# `spark-submit --deploy-mode cluster` (java -cp <the Spark jars> SparkSubmit) with the same image
# (bench/spark-submit.ts says what is measured). Brings up the test environment with in-cluster
# networking and the node's registry (scripts/test.d/50-k8s-up.sh), on a private state dir, bridge
# and pod subnet (WEFT_K8S_STATE, WEFT_REAL_NODE_BRIDGE, WEFT_REAL_NODE_SUBNET override them), and
# takes it down at the end. Needs root (the real node) and scripts/setup --test (the Spark jars).
# Usage: bench/spark-submit.sh [--runs 3] [--slices 8]
source "$(dirname "$0")/../scripts/lib.sh"
cd "$WEFT_ROOT"
bash scripts/setup.d/25-spark.sh
bash examples/spark/build.sh
npx tsc -p tsconfig.json >/dev/null || die "the TypeScript build failed: npm run build"
export WEFT_K8S_STATE="${WEFT_K8S_STATE:-/tmp/weft-bench-spark-k8s}" WEFT_REAL_NODE_BRIDGE="${WEFT_REAL_NODE_BRIDGE:-weftbrspark}"
export WEFT_REAL_NODE_SUBNET="${WEFT_REAL_NODE_SUBNET:-10.88.91.0/24}"
export WEFT_TEST_ENV="$(mktemp)"
cleanup() { bash scripts/test.d/50-k8s-down.sh >/dev/null 2>&1; rm -f "$WEFT_TEST_ENV"; }
trap cleanup EXIT
bash scripts/test.d/50-k8s-up.sh >&2 || die "the test environment did not come up (see above)"
set -a; source "$WEFT_TEST_ENV"; set +a
node dist/bench/spark-submit.js "$@"
