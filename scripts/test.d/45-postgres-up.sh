#!/usr/bin/env bash
# Starts Debian's PostgreSQL on a free loopback port with its own temp data dir (initdb as the
# postgres user) for the master's store tests, and exports WEFT_TEST_POSTGRES_URL.
source "$(dirname "$0")/../lib.sh"
: "${WEFT_TEST_ENV:?WEFT_TEST_ENV must name the file that collects test variables (scripts/test sets it)}"
bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
[[ -x "$bindir/initdb" && -x "$bindir/pg_ctl" ]] || die "PostgreSQL not found: install Debian's postgresql (scripts/setup --test does)"
id postgres >/dev/null 2>&1 || die "no postgres user: Debian's postgresql package creates it"
as_pg() { if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# One server per test-env file, so a benchmark and a test run do not share one.
state="${TMPDIR:-/tmp}/weft-test-postgres-$(printf '%s' "$WEFT_TEST_ENV" | md5sum | cut -c1-12)"
if [[ -f "$state/data/postmaster.pid" ]]; then as_pg "$bindir/pg_ctl" -D "$state/data" -m immediate stop >/dev/null 2>&1 || true; fi
rm -rf "$state"; mkdir -p "$state"
[[ "$(id -u)" == 0 ]] && chown postgres: "$state"
port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
printf '%s\n' "$password" >"$state/pwfile"; chmod 600 "$state/pwfile"; [[ "$(id -u)" == 0 ]] && chown postgres: "$state/pwfile"
as_pg "$bindir/initdb" -D "$state/data" -U weft --pwfile="$state/pwfile" --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$state/initdb.log" 2>&1 ||
  die "initdb failed: $(tail -5 "$state/initdb.log")"
rm -f "$state/pwfile"
# Loopback TCP only; the socket directory is private to this server.
as_pg "$bindir/pg_ctl" -D "$state/data" -l "$state/postgres.log" -w -t 30 \
  -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$state -c fsync=off -c max_connections=200" start >/dev/null ||
  die "PostgreSQL did not start: $(tail -5 "$state/postgres.log")"
echo "WEFT_TEST_POSTGRES_URL=postgres://weft:$password@127.0.0.1:$port/postgres" >>"$WEFT_TEST_ENV"
log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') listening on 127.0.0.1:$port (log: $state/postgres.log)"
