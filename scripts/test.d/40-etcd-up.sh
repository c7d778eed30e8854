#!/usr/bin/env bash
# Starts Debian's etcd (etcd-server) on a free loopback port with a temp data dir for
# the coord tests, waits until it is healthy, and exports WEFT_ETCD_ENDPOINTS.
source "$(dirname "$0")/../lib.sh"
: "${WEFT_TEST_ENV:?WEFT_TEST_ENV must name the file that collects test variables (scripts/test sets it)}"
etcd_bin="$(command -v etcd || true)"
[[ -x "$etcd_bin" ]] || die "etcd not found: install Debian's etcd-server (scripts/setup --test does)"
# One etcd per test-env file, so a benchmark and a test run do not share one.
state="${TMPDIR:-/tmp}/weft-test-etcd-$(printf '%s' "${WEFT_TEST_ENV:-none}" | md5sum | cut -c1-12)"
# A previous run that was not torn down: stop it first.
if [[ -f "$state/pid" ]]; then kill "$(cat "$state/pid")" 2>/dev/null || true; sleep 0.5; fi
rm -rf "$state"; mkdir -p "$state"
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
client_port="$(free_port)"; peer_port="$(free_port)"
nohup "$etcd_bin" --name weft-test --data-dir "$state/data" \
  --listen-client-urls "http://127.0.0.1:$client_port" --advertise-client-urls "http://127.0.0.1:$client_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "weft-test=http://127.0.0.1:$peer_port" >"$state/etcd.log" 2>&1 &
echo $! >"$state/pid"
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$client_port/health" 2>/dev/null | grep -q '"health":"true"'; then
    echo "WEFT_ETCD_ENDPOINTS=http://127.0.0.1:$client_port" >>"$WEFT_TEST_ENV"
    log "etcd $(etcd --version | head -1 | awk '{print $3}') listening on 127.0.0.1:$client_port (log: $state/etcd.log)"
    exit 0
  fi
  kill -0 "$(cat "$state/pid")" 2>/dev/null || die "etcd exited at start: $(tail -5 "$state/etcd.log")"
  sleep 0.2
done
die "etcd did not become healthy within 20 s: $(tail -5 "$state/etcd.log")"
