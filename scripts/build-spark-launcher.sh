#!/usr/bin/env bash
# Compiles weft's Spark launcher (src/runtime/spark/launcher, plain Java: Spark is loaded by
# reflection, so nothing but the JDK is needed) into dist/spark-launcher/weft-spark-launcher.jar,
# reproducibly. `weft build --spark` and runnables of kind spark put it into the image.
# Skipped when the sources, the JDK and this script are unchanged.
source "$(dirname "$0")/lib.sh"
src="$WEFT_ROOT/src/runtime/spark/launcher"
out="$WEFT_ROOT/dist/spark-launcher"
jar_file="$out/weft-spark-launcher.jar"
command -v javac >/dev/null && command -v jar >/dev/null || die "javac/jar not found: install default-jdk-headless (scripts/setup does)"
stamp="$( {
  cat "${BASH_SOURCE[0]}"
  (cd "$src" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
  javac -version 2>&1
} | sha256sum | cut -d' ' -f1)"
if [[ -f "$jar_file" && -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" ]]; then exit 0; fi
tmp="$(mktemp -d "${TMPDIR:-/tmp}/weft-spark-launcher.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mapfile -t sources < <(cd "$src" && find . -name '*.java' | LC_ALL=C sort)
(cd "$src" && javac --release 17 -nowarn -encoding UTF-8 -d "$tmp/classes" "${sources[@]}") || die "compiling the Spark launcher failed (see above)"
cp -r "$src/resources/." "$tmp/classes/"
printf 'Implementation-Title: weft-spark-launcher\n' > "$tmp/manifest.txt"
(cd "$tmp/classes" && mapfile -t entries < <(find . -mindepth 1 | LC_ALL=C sort) &&
  jar --create --date=2000-01-01T00:00:00Z --file "$tmp/weft-spark-launcher.jar" --manifest "$tmp/manifest.txt" "${entries[@]}")
mkdir -p "$out"
mv "$tmp/weft-spark-launcher.jar" "$jar_file"
echo "$stamp" > "$out/.stamp"
log "built $jar_file"
