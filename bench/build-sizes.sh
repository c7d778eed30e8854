#!/usr/bin/env bash
# Benchmark: build time against the size of the dependencies, weft vs buildah,
# in one run (interleaved). For each size (MB of dependency jars on top of the
# example program examples/hello, whose own jars are 3.5 MB; 0 = the example
# alone) it measures
#   cold        empty cache/storage: weft with 1 gzip thread, weft with the
#               default (one per core), buildah (from/copy/config/commit, gzip),
#               Jib (the jib-core program bench/jib, whole java process, an OCI image
#               tar as output; skipped with WEFT_BENCH_JIB=0)
#   one-class   the same after Greeter.java changed, with the cold build's cache/storage
# and checks that weft's image digest is the same with 1 and N threads.
# Output: a CSV (tool,size_mb,case,ms,digest) in bench/results/build-sizes-<time>.csv,
# and a Markdown table of medians; bench/chart.ts turns the CSV into an SVG.
# Usage: bench/build-sizes.sh [-n REPETITIONS] [SIZE_MB...]   (default: -n 3 0 50 300)
# The set-up (inputs, base, the buildah steps) is shared with bench/build-vs-buildah.sh: bench/build-common.sh.
source "$(dirname "$0")/../scripts/lib.sh"
source "$WEFT_ROOT/bench/build-common.sh"
bench_size_args 3 "0 50 300" "$@"
bench_setup weft-bench-sizes buildah node java jar
bench_results_csv build-sizes
prepare_inputs
tools=(weft1 weftN buildah)
if [[ "${WEFT_BENCH_JIB:-1}" != 0 ]]; then jib_setup; tools+=(jib); fi

digest_of() { node -e 'const i=require(process.argv[1]);console.log(i.manifests[i.manifests.length-1].digest)' "$1/index.json"; }
weft_build_threads() { # <threads|default> <cache> <program dir> <deps dir> <out>
  if [[ "$1" == default ]]; then weft_build "$2" "$3" "$5" "" --lib "$4"; else WEFT_GZIP_THREADS="$1" weft_build "$2" "$3" "$5" "" --lib "$4"; fi
}
record() { # <tool> <size> <case> <out dir or -> <command...>
  local tool="$1" size="$2" kase="$3" out="$4" t0 ms d=""
  shift 4
  t0=$(now_ms)
  "$@" || die "failed: $*"
  ms=$(( $(now_ms) - t0 ))
  [[ "$out" == - ]] || d="$(digest_of "$out")"
  echo "$tool,$size,$kase,$ms,$d" >>"$csv"
  log "$tool $size MB $kase: $ms ms $d"
}

for size in "${sizes[@]}"; do
  prepare_deps "$size"
  for ((i = 1; i <= reps; i++)); do
    log "size $size MB, repetition $i/$reps"
    r="$work/r-$size-$i"
    # Interleaved; the order rotates so no tool always runs first after the inputs were copied.
    order=("${tools[@]}")
    for ((k = 0; k < (i - 1) % ${#tools[@]}; k++)); do order=("${order[@]:1}" "${order[0]}"); done
    for tool in "${order[@]}"; do
      case "$tool" in
        weft1) record weft-1-thread "$size" cold "$r/w1o" weft_build_threads 1 "$r/w1c" "$work/v1" "$deps" "$r/w1o" ;;
        weftN) record weft "$size" cold "$r/wNo" weft_build_threads default "$r/wNc" "$work/v1" "$deps" "$r/wNo" ;;
        buildah) record buildah "$size" cold - buildah_build "$r/bs" "$work/v1-x" "$deps" "$r/bo" ;;
        jib) record jib "$size" cold - jib_build "$r/jc" "$work/v1-x" "$deps" "$r/jib.tar" ;;
      esac
    done
    for tool in "${order[@]}"; do
      case "$tool" in
        weft1) record weft-1-thread "$size" one-class "$r/w1o" weft_build_threads 1 "$r/w1c" "$work/v2" "$deps" "$r/w1o" ;;
        weftN) record weft "$size" one-class "$r/wNo" weft_build_threads default "$r/wNc" "$work/v2" "$deps" "$r/wNo" ;;
        buildah) record buildah "$size" one-class - buildah_build "$r/bs" "$work/v2-x" "$deps" "$r/bo" ;;
        jib) record jib "$size" one-class - jib_build "$r/jc" "$work/v2-x" "$deps" "$r/jib.tar" ;;
      esac
    done
    rm -rf "$r"
  done
  rm -rf "$deps"
done

node "$WEFT_ROOT/dist/bench/build-sizes-report.js" "$csv" | tee "${csv%.csv}.md"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; $(buildah --version); node $(node --version)" | tee -a "${csv%.csv}.md"
