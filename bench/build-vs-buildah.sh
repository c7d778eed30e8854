#!/usr/bin/env bash
# Benchmark: `weft build` vs buildah on the same program and the same base image,
# in one run. Not a test: it prints medians and ratios (a Markdown table) for
#   cold            empty layer cache / empty buildah storage, fresh output layout
#   one-class       rebuild after one class changed (Greeter.java), same cache/storage and output
#   no-change       the same inputs again
# and, for the seed's question, the build on a base that already holds the common
# jars (weft base jre --add-jars) against the plain base: build time and the bytes
# the application adds on top of its base.
#
# buildah does what a Containerfile `FROM base; COPY libs/ resources/ classes/;
# ENTRYPOINT [...]` does, step by step (buildah from / copy / config / commit to an
# oci: layout), with the vfs driver and a private --root/--runroot. It gets the
# program already exploded into classes/ and resources/ (as a build tool has them
# on disk; not timed); weft reads the jar itself.
#
# Usage: bench/build-vs-buildah.sh [-n REPETITIONS]   (default 5; results also go to bench/results/)
#        WEFT_MAIN=<path to a weft entry (dist/bin/weft.cjs)> to measure another copy of weft
# The set-up (inputs, base, the buildah steps) is shared with bench/build-sizes.sh: bench/build-common.sh.
source "$(dirname "$0")/../scripts/lib.sh"
source "$WEFT_ROOT/bench/build-common.sh"
reps=5
while getopts "n:" opt; do
  case "$opt" in
    n) reps="$OPTARG" ;;
    *) echo "usage: $0 [-n REPETITIONS]" >&2; exit 2 ;;
  esac
done
[[ "$reps" =~ ^[1-9][0-9]*$ ]] || die "-n needs a positive whole number"
bench_setup weft-bench-build buildah skopeo node java jar
prepare_inputs

# A program jar without Class-Path, for the base that already holds the dependencies.
mkdir -p "$work/nodeps"
mkdir -p "$work/nodeps-src" && cp -r "$work/v1-x/classes/." "$work/v1-x/resources/." "$work/nodeps-src/"
(cd "$work/nodeps-src" && jar --create --file "$work/nodeps/hello.jar" --main-class com.example.hello.Main .)
mkdir -p "$work/nodeps-x/libs" && cp -r "$work/v1-x/classes" "$work/v1-x/resources" "$work/nodeps-x/"

log "building the base with the dependencies baked in (weft base jre --add-jars)"
weft base jre --output "oci:$work/base-libs:jre" --add-jars "$work/v1/libs" >/dev/null 2>&1

timed() { local t0; t0=$(now_ms); "$@" || return 1; echo $(( $(now_ms) - t0 )); }

# Bytes an image adds on top of its base: compressed layers not in the base manifest.
added_bytes() { # <layout> <base layout>
  node -e '
    const fs = require("fs"), path = require("path");
    const manifest = (dir) => { const idx = JSON.parse(fs.readFileSync(path.join(dir, "index.json")));
      const d = idx.manifests[idx.manifests.length - 1].digest.split(":")[1];
      return JSON.parse(fs.readFileSync(path.join(dir, "blobs/sha256", d))); };
    const base = new Set(manifest(process.argv[2]).layers.map((l) => l.digest));
    console.log(manifest(process.argv[1]).layers.filter((l) => !base.has(l.digest)).reduce((n, l) => n + l.size, 0));
  ' "$1" "$2"
}

declare -A t
# measure <key> <command...>: runs it once, timed, and records the milliseconds under key.
measure() { local key="$1" ms; shift; ms="$(timed "$@")" || die "failed: $*"; t[$key]="${t[$key]:-} $ms"; }
for ((i = 1; i <= reps; i++)); do
  log "repetition $i/$reps"
  wc="$work/weft-cache-$i" wo="$work/weft-out-$i" bs="$work/buildah-$i" bo="$work/buildah-out-$i"
  measure weft-cold weft_build "$wc" "$work/v1" "$wo"
  measure buildah-cold buildah_build "$bs" "$work/v1-x" - "$bo"
  measure weft-change weft_build "$wc" "$work/v2" "$wo"
  measure buildah-change buildah_build "$bs" "$work/v2-x" - "$bo"
  measure weft-same weft_build "$wc" "$work/v2" "$wo"
  measure buildah-same buildah_build "$bs" "$work/v2-x" - "$bo"
  # With the common jars in the base: cold builds of the same program without its dependencies.
  measure weft-libbase weft_build "$wc-lb" "$work/nodeps" "$wo-lb" "$work/base-libs"
  measure buildah-libbase buildah_build "$bs-lb" "$work/nodeps-x" - "$bo-lb" "$work/base-libs"
  # buildah's default for oci: outputs: uncompressed layers (less work, 2x the bytes to store and push).
  measure raw-cold buildah_build "$bs-raw" "$work/v1-x" - "$bo-raw" "$work/base" raw
  measure raw-change buildah_build "$bs-raw" "$work/v2-x" - "$bo-raw" "$work/base" raw
  measure raw-same buildah_build "$bs-raw" "$work/v2-x" - "$bo-raw" "$work/base" raw
  measure raw-libbase buildah_build "$bs-raw-lb" "$work/nodeps-x" - "$bo-raw-lb" "$work/base-libs" raw
  if ((i == 1)); then
    # Sanity: both outputs are images skopeo can read, and sizes for the report.
    skopeo inspect "oci:$wo:hello" >/dev/null && skopeo inspect "oci:$bo:hello" >/dev/null
    weft_added_plain=$(added_bytes "$wo" "$work/base"); weft_added_lib=$(added_bytes "$wo-lb" "$work/base-libs")
    buildah_added_plain=$(added_bytes "$bo" "$work/base"); buildah_added_lib=$(added_bytes "$bo-lb" "$work/base-libs")
  fi
  if ((i == 1)); then buildah_raw_added=$(added_bytes "$bo-raw" "$work/base"); fi
  rm -rf "$wc" "$wo" "$bs" "$bo" "$wc-lb" "$wo-lb" "$bs-lb" "$bo-lb" "$bs-raw" "$bo-raw" "$bs-raw-lb" "$bo-raw-lb"
done

med() { tr ' ' '\n' <<<"${t[$1]}" | grep . | median; }
row() { # <label> <weft key> <buildah key> <buildah raw key>
  local w b r
  w=$(med "$2"); b=$(med "$3"); r=$(med "$4")
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$w" "$b" "$(ratio "$w" "$b")" "$r" "$(ratio "$w" "$r")"
}
{
  echo "Median of $reps runs, milliseconds (buildah / weft = how many times faster weft is):"
  echo
  echo "| build | weft ms | buildah ms (gzip) | buildah / weft | buildah ms (uncompressed) | buildah uncompr. / weft |"
  echo "|---|---:|---:|---:|---:|---:|"
  row "cold (empty cache/storage)" weft-cold buildah-cold raw-cold
  row "rebuild after a one-class change" weft-change buildah-change raw-change
  row "no-change rebuild" weft-same buildah-same raw-same
  row "cold, on a base with the deps baked in" weft-libbase buildah-libbase raw-libbase
  echo
  echo "Bytes the application adds on top of its base (compressed layers):"
  echo
  echo "| base | weft | buildah |"
  echo "|---|---:|---:|"
  echo "| plain JRE base | $weft_added_plain | $buildah_added_plain |"
  echo "| JRE base with commons-lang3 + guava in /app/libs | $weft_added_lib | $buildah_added_lib |"
  echo
  echo "(buildah with its default uncompressed oci: output adds $buildah_raw_added bytes on the plain base.)"
  echo
  echo "machine: $(nproc) cores, $(uname -r); $(buildah --version); node $(node --version); $(java -version 2>&1 | head -n1)"
} | tee "$work/result.md"
mkdir -p "$WEFT_ROOT/bench/results"
cp "$work/result.md" "$WEFT_ROOT/bench/results/build-vs-buildah-$(date -u +%Y%m%dT%H%M%SZ).md"
