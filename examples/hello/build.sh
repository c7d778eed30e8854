#!/usr/bin/env bash
# Builds the hello example with the machine's JDK (javac + jar), reproducibly:
#   <out>/hello.jar        program jar: Main-Class + Class-Path: libs/<dep>.jar ...
#   <out>/libs/*.jar       its dependency jars (commons-lang3, guava from Debian)
#   <out>/hello-fat.jar    Spring-Boot-style fat jar: BOOT-INF/classes, BOOT-INF/lib/*.jar,
#                          a tiny launcher (Main-Class) and Start-Class; runs with `java -jar`
# Skips the work when sources, dependency jars, JDK and this script are unchanged.
# Usage: examples/hello/build.sh [--src DIR] [--out DIR] [--force]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/src"
out="$here/build"
force=
while (($#)); do
  case "$1" in
    --src) src="$(cd "$2" && pwd)"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --force) force=1; shift ;;
    *) echo "usage: $0 [--src DIR] [--out DIR] [--force]" >&2; exit 2 ;;
  esac
done
log() { printf '[weft] examples/hello: %s\n' "$*" >&2; }

deps=(/usr/share/java/commons-lang3.jar /usr/share/java/guava.jar)
for d in "${deps[@]}"; do
  [[ -f "$d" ]] || { echo "missing $d: install libcommons-lang3-java and libguava-java (scripts/setup does)" >&2; exit 1; }
done
command -v javac >/dev/null && command -v jar >/dev/null || { echo "javac/jar not found: install default-jdk-headless (scripts/setup does)" >&2; exit 1; }

# Versioned names, as a Maven/Gradle build would produce them (weft's layering reads them).
# (Read with the JDK's own jar tool, so nothing beyond the JDK is needed.)
version_of() {
  local d
  d="$(mktemp -d)"
  (cd "$d" && jar xf "$1" META-INF/MANIFEST.MF 2>/dev/null) || true
  [[ -f "$d/META-INF/MANIFEST.MF" ]] && tr -d '\r' < "$d/META-INF/MANIFEST.MF" | sed -n 's/^Bundle-Version: *\(.*\)$/\1/p;s/^Implementation-Version: *\(.*\)$/\1/p' | head -n1
  rm -rf "$d"
}
lang3_version="$(version_of /usr/share/java/commons-lang3.jar)"; lang3_version="${lang3_version:-3}"
guava_version="$(version_of /usr/share/java/guava.jar)"; guava_version="${guava_version%.jre}"; guava_version="${guava_version:-0}-jre"
lib_names=("commons-lang3-${lang3_version}.jar" "guava-${guava_version}.jar")

source "$here/../build-lib.sh"
stamp="$(sha256sum "${deps[@]}" | example_stamp "$src")"
if [[ -z "$force" ]] && example_up_to_date "$out" "$stamp" hello.jar hello-fat.jar; then
  log "up to date ($out)"
  exit 0
fi

log "compiling into $out"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/weft-hello.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
date="2000-01-01T00:00:00Z"   # fixed entry times: same sources, same jar bytes
mkdir -p "$tmp/out/libs" "$tmp/classes" "$tmp/launcher" "$tmp/fat/BOOT-INF/lib" "$tmp/fat/BOOT-INF/classes"
cp "${deps[0]}" "$tmp/out/libs/${lib_names[0]}"
cp "${deps[1]}" "$tmp/out/libs/${lib_names[1]}"
classpath="$tmp/out/libs/${lib_names[0]}:$tmp/out/libs/${lib_names[1]}"

mapfile -t sources < <(cd "$src/main/java" && find . -name '*.java' | LC_ALL=C sort)
(cd "$src/main/java" && javac --release 17 -nowarn -encoding UTF-8 -cp "$classpath" -d "$tmp/classes" "${sources[@]}")
(cd "$src/main/resources" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -I{} cp --parents {} "$tmp/classes/")
mapfile -t launcher_sources < <(cd "$src/launcher/java" && find . -name '*.java' | LC_ALL=C sort)
(cd "$src/launcher/java" && javac --release 17 -nowarn -encoding UTF-8 -d "$tmp/launcher" "${launcher_sources[@]}")

# Program jar.
printf 'Class-Path: libs/%s libs/%s\nImplementation-Title: hello\nImplementation-Version: 1.0.0\n' "${lib_names[@]}" > "$tmp/manifest.txt"
(cd "$tmp/classes" && mapfile -t entries < <(find . -mindepth 1 | LC_ALL=C sort) && \
  jar --create --date="$date" --file "$tmp/out/hello.jar" --manifest "$tmp/manifest.txt" --main-class com.example.hello.Main "${entries[@]}")

# Fat jar: launcher at the root, application under BOOT-INF/classes, dependencies under BOOT-INF/lib
# (stored, not re-deflated, as Spring Boot does, so the nested jars can be read directly).
cp -r "$tmp/classes/." "$tmp/fat/BOOT-INF/classes/"
cp -r "$tmp/launcher/." "$tmp/fat/"
printf 'Start-Class: com.example.hello.Main\nImplementation-Title: hello\nImplementation-Version: 1.0.0\n' > "$tmp/fat-manifest.txt"
(cd "$tmp/fat" && mapfile -t entries < <(find . -mindepth 1 | LC_ALL=C sort) && \
  jar --create --date="$date" --file "$tmp/out/hello-fat.jar" --manifest "$tmp/fat-manifest.txt" --main-class com.example.launcher.JarLauncher "${entries[@]}")
cp "$tmp/out/libs/"*.jar "$tmp/fat/BOOT-INF/lib/"
(cd "$tmp/fat" && mapfile -t libs < <(find BOOT-INF/lib -mindepth 1 | LC_ALL=C sort) && \
  jar --update --date="$date" --no-compress --file "$tmp/out/hello-fat.jar" "${libs[@]}")

example_install "$tmp/out" "$out" "$stamp"
log "built $out/hello.jar, $out/hello-fat.jar"
