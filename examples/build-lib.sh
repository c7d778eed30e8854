# Shared by the example builds (examples/*/build.sh), sourced: their input stamp and the
# one-step replacement of their output directory.

# Prints a hash of everything a build's output depends on: the calling build script, every file
# under the source directory $1 (names and contents), the extra lines given on standard input
# (dependency jars' hashes, a resolved version, ...), and the JDK's javac version.
example_stamp() {
  {
    cat "${BASH_SOURCE[1]}"
    (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    cat
    javac -version 2>&1
  } | sha256sum | cut -d' ' -f1
}

# True when directory $1 holds a finished build with stamp $2 and every file or link named after it.
example_up_to_date() {
  local out="$1" stamp="$2" f
  shift 2
  [[ -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" ]] || return 1
  for f in "$@"; do [[ -e "$out/$f" ]] || return 1; done
}

# Records stamp $3 in the new build $1 and puts it in place of $2 in one step, so that a failed
# build never leaves a half-written one.
example_install() {
  local new="$1" out="$2" stamp="$3"
  echo "$stamp" > "$new/.stamp"
  mkdir -p "$(dirname "$out")"
  rm -rf "$out.old"
  [[ -e "$out" ]] && mv "$out" "$out.old"
  mv "$new" "$out"
  rm -rf "$out.old"
}
