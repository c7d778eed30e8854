# Shared shell helpers for weft's scripts. Source, don't run.
set -euo pipefail
WEFT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Tools built from Go modules live outside the repository, keyed by version.
WEFT_TOOLS="${WEFT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/weft/tools}"
export WEFT_ROOT WEFT_TOOLS
mkdir -p "$WEFT_TOOLS"
log() { printf '[weft] %s\n' "$*" >&2; }
die() { printf '[weft] error: %s\n' "$*" >&2; exit 1; }
