#!/usr/bin/env bash
# Dependency jars of a given total size for the build benchmarks, from the
# machine's Debian Java libraries (/usr/share/java, symlinks resolved, each jar
# once). Below the total of those jars it takes them in name order until the
# size is reached; above it, it adds renamed copies (name-copyN.jar) of them,
# which tar and compress like any other jar (each is bigger than gzip's 32 KiB
# window, so a copy is not cheaper to compress).
# Usage: bench/make-deps.sh <megabytes> <directory>
set -euo pipefail
mb="${1:?usage: $0 <megabytes> <directory>}"
dir="${2:?usage: $0 <megabytes> <directory>}"
[[ "$mb" =~ ^[0-9]+$ ]] || { echo "megabytes must be a whole number" >&2; exit 2; }
mkdir -p "$dir"
target=$((mb * 1024 * 1024))
mapfile -t jars < <(for j in /usr/share/java/*.jar; do realpath "$j"; done | sort -u)
total=0
copy=0
while ((total < target)); do
  for jar in "${jars[@]}"; do
    ((total < target)) || break
    name="$(basename "$jar" .jar)"
    ((copy == 0)) || name="$name-copy$copy"
    cp "$jar" "$dir/$name.jar"
    total=$((total + $(stat -c %s "$jar")))
  done
  copy=$((copy + 1))
done
echo "$total"
