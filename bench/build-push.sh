#!/usr/bin/env bash
# Benchmark: a cold `weft build --output docker://` (build and push in one
# command) of the example program plus SIZE_MB of dependency jars, into a fresh
# Debian docker-registry (CNCF distribution) on 127.0.0.1 for every run, so
# every blob is uploaded. Compares this tree's weft with WEFT_MAIN_BEFORE (a
# weft.cjs from another commit, e.g. one without the build/push overlap), run
# interleaved, and Jib (the jib-core program bench/jib, whole java process,
# building the same program on the same base with its own layering and pushing
# it: Jib's build-to-registry; WEFT_BENCH_JIB=0 leaves it out); each run has an
# empty layer cache (weft: WEFT_BLOB_CACHE=off too, no mounts from other
# repositories).
# Output: a CSV (tool,size_mb,case,ms,digest) in bench/results/build-push-<time>.csv and medians.
# Usage: [WEFT_MAIN_BEFORE=/path/to/old/weft.cjs] bench/build-push.sh [-n REPETITIONS] [SIZE_MB...]   (default: -n 3 50)
source "$(dirname "$0")/../scripts/lib.sh"
source "$WEFT_ROOT/bench/build-common.sh"
bench_size_args 3 "50" "$@"
bench_setup weft-bench-push node docker-registry java jar
bench_results_csv build-push
prepare_inputs
tools=(weft)
if [[ "${WEFT_BENCH_JIB:-1}" != 0 ]]; then jib_setup; tools+=(jib); fi
if [[ -n "${WEFT_MAIN_BEFORE:-}" ]]; then
  [[ -f "$WEFT_MAIN_BEFORE" ]] || die "WEFT_MAIN_BEFORE=$WEFT_MAIN_BEFORE does not exist"
  tools+=(before)
fi

registry_pid=""
start_registry() { # <dir>: a fresh registry; sets $registry (host:port)
  local port
  port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
  mkdir -p "$1/data"
  printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$1/data" "$port" >"$1/config.yml"
  docker-registry serve "$1/config.yml" >"$1/log" 2>&1 &
  registry_pid=$!
  registry="127.0.0.1:$port"
  for _ in $(seq 1 100); do curl -fsS "http://$registry/v2/" >/dev/null 2>&1 && return 0; sleep 0.1; done
  cat "$1/log" >&2
  die "docker-registry did not start"
}
stop_registry() { [[ -z "$registry_pid" ]] || { kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; registry_pid=""; }; }
trap 'stop_registry; rm -rf "$work"' EXIT

for size in "${sizes[@]}"; do
  prepare_deps "$size"
  for ((i = 1; i <= reps; i++)); do
    order=("${tools[@]}")
    ((i % 2 == 0)) && mapfile -t order < <(printf "%s\n" "${tools[@]}" | tac)
    for tool in "${order[@]}"; do
      r="$work/r-$size-$i-$tool"
      start_registry "$r/registry"
      main="$weft_main"
      [[ "$tool" == before ]] && main="$WEFT_MAIN_BEFORE"
      t0=$(now_ms)
      if [[ "$tool" == jib ]]; then
        jib_build "$r/jc" "$work/v1-x" "$deps" "docker://$registry/bench/hello:1" || die "jib failed"
        cp "$work/jib-digest" "$r/digest"
      else
        WEFT_BLOB_CACHE=off WEFT_CACHE_DIR="$r/cache" node "$main" build "$work/v1/hello.jar" --lib "$deps" --base "oci:$work/base:jre" \
          --output "docker://$registry/bench/hello:1" >"$r/digest" 2>"$work/last.log" || { cat "$work/last.log" >&2; die "$tool failed"; }
      fi
      ms=$(( $(now_ms) - t0 ))
      stop_registry
      echo "$tool,$size,cold-push,$ms,$(cat "$r/digest")" >>"$csv"
      log "$tool $size MB cold build+push: $ms ms $(cat "$r/digest")"
      rm -rf "$r"
    done
  done
  rm -rf "$deps"
done

echo "| deps MB | tool | cold build + push ms (median) | runs |"
echo "|---:|---|---:|---:|"
for size in "${sizes[@]}"; do
  for tool in "${tools[@]}"; do
    m="$(awk -F, -v t="$tool" -v s="$size" '$1 == t && $2 == s {print $4}' "$csv" | median)"
    n="$(awk -F, -v t="$tool" -v s="$size" '$1 == t && $2 == s' "$csv" | wc -l)"
    echo "| $size | $tool | $m | $n |"
  done
done | tee "${csv%.csv}.md"
if [[ " ${tools[*]} " == *" jib "* ]]; then
  for size in "${sizes[@]}"; do
    w="$(awk -F, -v s="$size" '$1 == "weft" && $2 == s {print $4}' "$csv" | median)"
    j="$(awk -F, -v s="$size" '$1 == "jib" && $2 == s {print $4}' "$csv" | median)"
    echo "$size MB: weft / Jib build-to-registry = $(ratio "$j" "$w")"
  done | tee -a "${csv%.csv}.md"
fi
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; node $(node --version)" | tee -a "${csv%.csv}.md"
