# Shared shell helpers for weft's scripts. Source, don't run.
set -euo pipefail
WEFT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Tools built from Go modules live outside the repository, keyed by version.
WEFT_TOOLS="${WEFT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/weft/tools}"
export WEFT_ROOT WEFT_TOOLS
mkdir -p "$WEFT_TOOLS"
# stop_pid_file FILE: ends the process whose pid FILE records (TERM, then KILL after 5 s); quiet if gone.
stop_pid_file() {
  [[ -f "$1" ]] || return 0
  local pid i
  pid="$(cat "$1")"
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
log() { printf '[weft] %s\n' "$*" >&2; }
die() { printf '[weft] error: %s\n' "$*" >&2; exit 1; }

# go_resolve MODULE CANDIDATE...: prints the first candidate version of MODULE that the Go module
# proxy serves. The proxy's set of served versions changes over time (a pin that worked last week
# may be refused today), so every tool built from a Go module lists its pin first and then the
# versions known to work. A candidate "latest-in:vX.Y" means the newest served vX.Y.* release.
# Fails with a message naming every version tried and why it was refused.
go_resolve() {
  local module="$1" candidate version out tried=()
  shift
  for candidate in "$@"; do
    version="$candidate"
    if [[ "$candidate" == latest-in:* ]]; then
      local line="${candidate#latest-in:}"
      version="$(cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod go list -m -versions "$module" 2>/dev/null | tr ' ' '\n' |
        grep -E "^${line//./\\.}\.[0-9]+$" | sort -V | tail -n 1)" || true
      if [[ -z "$version" ]]; then tried+=("$candidate (no such release listed)"); continue; fi
    fi
    # `go mod download -json` exits non-zero and prints an Error field when a version is refused.
    if out="$(cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod go mod download -json "$module@$version" 2>&1)" &&
      ! grep -q '"Error"' <<<"$out"; then
      ((${#tried[@]})) && log "$module: using $version (refused or missing: ${tried[*]})"
      echo "$version"
      return 0
    fi
    local why
    why="$(grep -o '"Error": "[^"]*' <<<"$out" | head -n1 | sed 's/"Error": "//; s/\\n.*//' | grep -oE '[0-9]{3} [A-Za-z ]+|not found|unknown revision|invalid version' | head -n1)"
    tried+=("$version (${why:-refused})")
  done
  log "error: the Go module proxy ($(go env GOPROXY)) serves none of the versions of $module tried: ${tried[*]}"
  log "pick a served one with: go list -m -versions $module, and set it in the environment (see scripts/k8s/versions.sh)"
  return 1
}
