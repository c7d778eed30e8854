#!/usr/bin/env bash
# Resolves the Spark jars (spark-core and spark-kubernetes for Scala 2.13 with every runtime
# dependency, pom.xml) from Maven Central with Maven, into $WEFT_TOOLS/spark-<version>/jars:
# hard links into Maven's own cache (~/.m2) where they share a file system, so the 234 MB are
# stored once. Prints that directory. Skipped when it is already there.
# Versions are tried in order (WEFT_SPARK_VERSIONS, default below): the first one Maven resolves
# is used and recorded in $WEFT_TOOLS/spark.version. jackson-core is pinned to the version of
# jackson-databind that Spark brings (pom.xml says why).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/lib.sh"
candidates=(${WEFT_SPARK_VERSIONS:-4.0.1 4.0.2 4.1.1 4.2.0})
say() { printf '[weft] spark jars: %s\n' "$*" >&2; }

for v in "${candidates[@]}"; do
  if [[ -f "$WEFT_TOOLS/spark-$v/.ok" ]]; then
    echo "$v" > "$WEFT_TOOLS/spark.version"
    echo "$WEFT_TOOLS/spark-$v/jars"
    exit 0
  fi
done
command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Spark jars: install Debian's maven (scripts/setup --test does)"

tried=()
for v in "${candidates[@]}"; do
  tmp="$(mktemp -d "$WEFT_TOOLS/.spark-$v.XXXXXX")"
  jackson=2.18.2
  started=$SECONDS
  ok=
  for attempt in 1 2; do
    say "resolving Spark $v (jackson-core $jackson) with Maven"
    if ! (cd "$here" && mvn -B -q -Dstyle.color=never -f pom.xml "-Dspark.version=$v" "-Djackson.version=$jackson" \
      dependency:build-classpath -DincludeScope=runtime "-Dmdep.outputFile=$tmp/classpath") >"$tmp/mvn.log" 2>&1; then
      why="$(grep -m1 -oE 'Could not (find|transfer) artifact [^ ]+|could not be resolved: [^ ,]+|Non-resolvable [^:]*' "$tmp/mvn.log" ||
        grep -m1 'ERROR' "$tmp/mvn.log" | sed 's/^\[ERROR\] *//' | cut -c1-160)"
      tried+=("$v (${why:-mvn failed, see $tmp/mvn.log})")
      break
    fi
    databind="$(tr ':' '\n' <"$tmp/classpath" | sed -n 's#.*/jackson-databind-\([0-9][^/]*\)\.jar$#\1#p' | head -n1)"
    core="$(tr ':' '\n' <"$tmp/classpath" | sed -n 's#.*/jackson-core-\([0-9][^/]*\)\.jar$#\1#p' | head -n1)"
    if [[ -n "$databind" && "$databind" != "$core" ]]; then
      if [[ $attempt == 2 ]]; then tried+=("$v (jackson-core $core stays beside jackson-databind $databind)"); break; fi
      jackson="$databind"
      continue
    fi
    ok=1
    break
  done
  if [[ -z "$ok" ]]; then
    [[ "${#tried[@]}" -gt 0 ]] && say "Spark $v: ${tried[-1]}"
    rm -rf "$tmp"
    continue
  fi
  mkdir -p "$tmp/jars"
  { tr ":" "\n" <"$tmp/classpath"; echo; } | while read -r jar; do
    [[ -n "$jar" ]] || continue
    ln "$jar" "$tmp/jars/" 2>/dev/null || cp "$jar" "$tmp/jars/"
  done
  count="$(ls "$tmp/jars" | wc -l)"
  size="$(du -sm "$tmp/jars" | cut -f1)"
  dest="$WEFT_TOOLS/spark-$v"
  rm -rf "$dest"
  mkdir -p "$dest"
  mv "$tmp/jars" "$dest/jars"
  cp "$tmp/classpath" "$dest/classpath"
  rm -rf "$tmp"
  touch "$dest/.ok"
  echo "$v" > "$WEFT_TOOLS/spark.version"
  ((${#tried[@]})) && say "using Spark $v; not resolved: ${tried[*]}"
  say "Spark $v: $count jars, $size MB, resolved in $((SECONDS - started)) s into $dest/jars"
  echo "$dest/jars"
  exit 0
done
die "Maven resolved none of the Spark versions tried: ${tried[*]}. Check that Maven Central is reachable (mvn -B dependency:get -Dartifact=org.apache.spark:spark-core_2.13:4.0.1), or set WEFT_SPARK_VERSIONS to versions it serves"
