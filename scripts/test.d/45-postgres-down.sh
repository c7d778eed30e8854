#!/usr/bin/env bash
# Stops the PostgreSQL started by 45-postgres-up.sh and removes its data.
source "$(dirname "$0")/../lib.sh"
state="${TMPDIR:-/tmp}/weft-test-postgres-$(printf '%s' "${WEFT_TEST_ENV:-none}" | md5sum | cut -c1-12)"
bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
if [[ -f "$state/data/postmaster.pid" && -x "$bindir/pg_ctl" ]]; then
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$bindir/pg_ctl" -D "$state/data" -m fast -w -t 20 stop >/dev/null 2>&1 || true
  else "$bindir/pg_ctl" -D "$state/data" -m fast -w -t 20 stop >/dev/null 2>&1 || true; fi
fi
# Anything left (a server that would not stop): end it by its recorded pid.
if [[ -f "$state/data/postmaster.pid" ]]; then kill -9 "$(head -n1 "$state/data/postmaster.pid")" 2>/dev/null || true; fi
rm -rf "$state"
