# The set-up the build benchmarks share (bench/build-vs-buildah.sh, bench/build-sizes.sh):
# sourced after scripts/lib.sh. Provides
#   $weft_main         the weft command measured: WEFT_MAIN, or this tree's installed one (dist/bin/weft.cjs)
#   $work              a fresh work directory, removed on exit
#   now_ms, median, ratio
#   prepare_inputs     $work/v1 (examples/hello: hello.jar + libs/), $work/v2 (the same with
#                      Greeter.java changed), $work/v1-x and $work/v2-x (the program exploded into
#                      classes/ and resources/ as a Containerfile would COPY it, plus libs/; not timed)
#                      and the base $work/base:jre (weft base jre)
#   weft_build <cache> <program dir> <out layout> [base layout] [weft build args...]
#   buildah_build <storage> <exploded program dir> <deps dir|-> <out layout> [base layout] [gzip|raw]
#                      what `FROM base; COPY libs/ resources/ classes/; ENTRYPOINT [...]` does,
#                      step by step (from / copy / config / commit to oci:), vfs, private root
# Usage: bench_setup <work dir prefix> <tool...>   (checks the tools, makes $work)

# The size benchmarks' arguments, [-n REPETITIONS] [SIZE_MB...], into $reps and $sizes.
bench_size_args() { # <default repetitions> <default sizes, space-separated> <the script's arguments...>
  reps="$1"
  local defaults="$2" opt OPTIND=1
  shift 2
  while getopts "n:" opt; do
    case "$opt" in
      n) reps="$OPTARG" ;;
      *) echo "usage: $0 [-n REPETITIONS] [SIZE_MB...]" >&2; exit 2 ;;
    esac
  done
  shift $((OPTIND - 1))
  sizes=("$@")
  ((${#sizes[@]})) || read -ra sizes <<<"$defaults"
}

# The dependency jars of one size: the example's own plus SIZE_MB made by make-deps.sh, in $work/deps-<size>; sets deps.
prepare_deps() { # <size MB>
  deps="$work/deps-$1"
  mkdir -p "$deps"
  cp "$work/v1/libs/"*.jar "$deps/"
  (($1 == 0)) || bash "$WEFT_ROOT/bench/make-deps.sh" "$1" "$deps/extra" >/dev/null
  [[ -d "$deps/extra" ]] && mv "$deps/extra/"*.jar "$deps/" && rmdir "$deps/extra"
  return 0
}

# A new results file bench/results/<name>-<UTC time>.csv with the CSV header, in $csv.
bench_results_csv() { # <name>
  mkdir -p "$WEFT_ROOT/bench/results"
  csv="$WEFT_ROOT/bench/results/$1-$(date -u +%Y%m%dT%H%M%SZ).csv"
  echo "tool,size_mb,case,ms,digest" >"$csv"
}

bench_setup() { # <work dir prefix> <tool...>
  local prefix="$1" tool
  shift
  for tool in "$@"; do command -v "$tool" >/dev/null || die "$tool not found: run scripts/setup --test"; done
  weft_main="${WEFT_MAIN:-$WEFT_ROOT/dist/bin/weft.cjs}"
  [[ -f "$weft_main" ]] || die "weft is not built ($weft_main): run scripts/setup (or npm run build)"
  # Lowercase path: buildah names an image pulled from oci:<dir> after the directory.
  work="/tmp/$prefix-$$-$(date +%s)"
  mkdir -p "$work"
  trap 'rm -rf "$work"' EXIT
}

weft() { node "$weft_main" "$@"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a > 0) printf "%.2f", b / a; else print "n/a"}'; }

explode() { # <jar> <dest>: the program as a Containerfile would COPY it (not timed)
  local x="$2.unzip"
  mkdir -p "$x" "$2/classes" "$2/resources"
  (cd "$x" && jar xf "$1")
  rm -rf "$x/META-INF"
  (cd "$x" && find . -type f -name '*.class' -exec cp --parents {} "$2/classes/" \; && find . -type f ! -name '*.class' -exec cp --parents {} "$2/resources/" \;)
  rm -rf "$x"
}

prepare_inputs() {
  log "preparing inputs in $work"
  bash "$WEFT_ROOT/examples/hello/build.sh" >/dev/null 2>&1 || bash "$WEFT_ROOT/examples/hello/build.sh"
  cp -r "$WEFT_ROOT/examples/hello/build" "$work/v1"
  cp -r "$WEFT_ROOT/examples/hello/src" "$work/src2"
  sed -i 's/"nobody"/"nobody at all"/' "$work/src2/main/java/com/example/hello/Greeter.java"
  bash "$WEFT_ROOT/examples/hello/build.sh" --src "$work/src2" --out "$work/v2" 2>/dev/null
  local v
  for v in v1 v2; do
    explode "$work/$v/hello.jar" "$work/$v-x"
    cp -r "$work/$v/libs" "$work/$v-x/libs"
  done
  log "building the base image (weft base jre)"
  weft base jre --output "oci:$work/base:jre" >/dev/null 2>&1
}

weft_build() { # <cache> <program dir> <out layout> [base layout] [weft build args...]
  local cache="$1" program="$2" out="$3" base="${4:-$work/base}"
  shift 3; (($#)) && shift
  WEFT_CACHE_DIR="$cache" weft build "$program/hello.jar" --base "oci:$base:jre" --output "oci:$out:hello" "$@" >/dev/null 2>"$work/last.log" || { cat "$work/last.log" >&2; return 1; }
}

buildah_build() { # <storage> <exploded program dir> <deps dir|-> <out layout> [base layout] [gzip|raw]
  # buildah commit writes uncompressed layers to oci: unless told otherwise; weft writes gzip.
  local compress=--disable-compression=false deps="$3"
  [[ "${6:-gzip}" == raw ]] && compress=--disable-compression=true
  local b=(buildah --storage-driver vfs --root "$1/root" --runroot "$1/run") c
  c="$("${b[@]}" from --quiet "oci:${5:-$work/base}:jre")" || return 1
  [[ "$deps" == - ]] && deps="$2/libs"
  if [[ -d "$deps" && -n "$(ls -A "$deps")" ]]; then "${b[@]}" copy --quiet "$c" "$deps" /app/libs >/dev/null || return 1; fi
  "${b[@]}" copy --quiet "$c" "$2/resources" /app/resources >/dev/null || return 1
  "${b[@]}" copy --quiet "$c" "$2/classes" /app/classes >/dev/null || return 1
  "${b[@]}" config --entrypoint '["java","-cp","/app/resources:/app/classes:/app/libs/*","com.example.hello.Main"]' --cmd '' "$c" 2>/dev/null || return 1
  "${b[@]}" commit --quiet "$compress" --rm "$c" "oci:$4:hello" >/dev/null || return 1
}

# Jib: the jib-core program bench/jib (JibBuild.java), built once with Maven into the tool cache
# (keyed by a hash of its sources; jib-core and its dependencies come from Maven Central).
jib_setup() {
  command -v mvn >/dev/null || die "mvn not found: run scripts/setup --test"
  local key
  key="$(cat "$WEFT_ROOT/bench/jib/pom.xml" "$WEFT_ROOT/bench/jib/src/main/java/weft/bench/JibBuild.java" | sha256sum | cut -c1-12)"
  jib_home="$WEFT_TOOLS/jib-bench-$key"
  if [[ ! -f "$jib_home/ok" ]]; then
    log "building the jib-core program (bench/jib) into $jib_home"
    rm -rf "$jib_home" && mkdir -p "$jib_home"
    cp -r "$WEFT_ROOT/bench/jib/." "$jib_home/src-tree"
    (cd "$jib_home/src-tree" && mvn -q -B package dependency:copy-dependencies -DoutputDirectory="$jib_home/lib" >"$jib_home/build.log" 2>&1) || { cat "$jib_home/build.log" >&2; die "building bench/jib failed"; }
    cp "$jib_home/src-tree/target/jib-build-1.jar" "$jib_home/lib/"
    touch "$jib_home/ok"
  fi
  # Jib reads its base from a docker-archive tar: the same base, converted once (not timed).
  weft copy -q "oci:$work/base:jre" "docker-archive:$work/base.tar:base:jre" >/dev/null
}

jib_build() { # <cache dir> <exploded program dir> <deps dir> <out tar | docker://ref>: the whole java process; writes an OCI image tar or pushes
  [[ "$4" == docker://* ]] || rm -f "$4"
  java -cp "$jib_home/lib/*" weft.bench.JibBuild "$work/base.tar" "$2" "$3" "$4" "$1" >"$work/jib-digest" 2>"$work/last.log" || { cat "$work/last.log" >&2; return 1; }
}
