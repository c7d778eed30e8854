#!/usr/bin/env bash
# Native addons of weft's npm dependencies (better-sqlite3), built once per version, Node ABI and
# machine and kept in ${XDG_CACHE_HOME:-~/.cache}/weft/native: `npm ci --ignore-scripts` then this
# script costs seconds instead of a C++ build of SQLite (about 10 minutes on 2 busy cores) in every
# fresh clone. No prebuilt binary can be downloaded here, so the first build is from source.
# Usage: scripts/native-modules.sh   (after npm ci --ignore-scripts; idempotent)
source "$(dirname "$0")/lib.sh"
cd "$WEFT_ROOT"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft/native"
abi="$(node -p 'process.versions.modules')-$(node -p 'process.arch')-$(node -p 'process.platform')"

# native_addon PACKAGE BINARY (relative to the package): restore from the cache, else build and cache.
native_addon() {
  local pkg="$1" binary="$2" dir="node_modules/$1" version key
  [[ -d "$dir" ]] || return 0
  version="$(node -p "require('./$dir/package.json').version")"
  key="$cache_root/$pkg-$version-node$abi"
  if [[ -s "$key/$(basename "$binary")" ]]; then
    mkdir -p "$dir/$(dirname "$binary")"
    cp "$key/$(basename "$binary")" "$dir/$binary"
  elif [[ ! -s "$dir/$binary" ]]; then
    log "building the native addon of $pkg $version from source (once per machine; cached in $key)"
    command -v make >/dev/null && command -v g++ >/dev/null && command -v python3 >/dev/null ||
      die "building $pkg needs make, g++ and python3 (scripts/apt-packages.txt lists them)"
    (cd "$dir" && npm run install --loglevel=error) || die "building the native addon of $pkg failed (see above)"
  fi
  [[ -s "$dir/$binary" ]] || die "$pkg has no native addon at $dir/$binary"
  if [[ ! -s "$key/$(basename "$binary")" ]]; then
    mkdir -p "$key.tmp" && cp "$dir/$binary" "$key.tmp/" && rm -rf "$key" && mv "$key.tmp" "$key"
  fi
}

native_addon better-sqlite3 build/Release/better_sqlite3.node
node -e "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()" ||
  die "better-sqlite3 does not load (remove $cache_root and re-run scripts/setup)"
