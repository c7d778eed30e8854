#!/usr/bin/env bash
# Builds the Spark example with javac against the Spark jars that jars.sh resolves from Maven
# Central (no Maven build: Maven only fetches), reproducibly:
#   build/spark-examples.jar   com.example.spark.SparkPi and com.example.spark.WordCount
#   build/libs                 a link to the Spark jars (outside the repository, in $WEFT_TOOLS)
# Skips the work when the sources, the Spark version, the JDK and this script are unchanged.
# Usage: examples/spark/build.sh [--force]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/build"
log() { printf '[weft] examples/spark: %s\n' "$*" >&2; }
command -v javac >/dev/null && command -v jar >/dev/null || { echo "javac/jar not found: install default-jdk-headless (scripts/setup does)" >&2; exit 1; }
jars="$(bash "$here/jars.sh")"
source "$here/../build-lib.sh"
stamp="$(echo "$jars" | example_stamp "$here/src")"
if [[ "${1:-}" != --force ]] && example_up_to_date "$out" "$stamp" spark-examples.jar libs; then
  log "up to date ($out)"
  exit 0
fi
log "compiling into $out"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/weft-spark-example.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mapfile -t sources < <(cd "$here/src" && find . -name '*.java' | LC_ALL=C sort)
(cd "$here/src" && javac --release 17 -nowarn -encoding UTF-8 -cp "$jars/*" -d "$tmp/classes" "${sources[@]}")
mkdir -p "$tmp/out"
printf 'Implementation-Title: spark-examples\nImplementation-Version: 1.0.0\n' > "$tmp/manifest.txt"
(cd "$tmp/classes" && mapfile -t entries < <(find . -mindepth 1 | LC_ALL=C sort) &&
  jar --create --date=2000-01-01T00:00:00Z --file "$tmp/out/spark-examples.jar" --manifest "$tmp/manifest.txt" "${entries[@]}")
ln -s "$jars" "$tmp/out/libs"
example_install "$tmp/out" "$out" "$stamp"
log "built $out/spark-examples.jar (Spark jars: $jars)"
