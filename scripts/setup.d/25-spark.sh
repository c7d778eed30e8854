#!/usr/bin/env bash
# Spark: compiles weft's Spark launcher (always: `weft build --spark` and runnables of kind spark
# put it into images; it needs only javac), and in --test mode fetches the Spark jars from Maven
# Central (examples/spark/jars.sh: 169 jars, 234 MB, into $WEFT_TOOLS and Maven's ~/.m2) and builds
# the Spark example with javac. Each part is skipped when already done.
source "$(dirname "$0")/../lib.sh"
bash "$WEFT_ROOT/scripts/build-spark-launcher.sh"
[[ "${WEFT_SETUP_MODE:-}" == --test ]] || exit 0
bash "$WEFT_ROOT/examples/spark/build.sh"
