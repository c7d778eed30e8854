// The per-instance supervisor: a small POSIX shell loop, started detached
// (its own session) so instances outlive the weft process that started them.
// It runs the instance command in the background, records the child's pid
// and, when it ends, its exit code; with restart policy "always" (services)
// it restarts the program with exponential backoff until a stop marker
// appears. Everything it knows is in files of the instance directory, so any
// later weft process can read the instance's state:
//
//   child     pid of `runc run` (which forwards signals to the container) or of the host JVM
//   started   time the current attempt started (ms since epoch)
//   exit      exit code of the last attempt (absent while one is running)
//   restarts  number of restarts so far
//   stop      marker written by weft: do not restart
//
// With a private network (WEFT_NETNS set) it also owns the instance's network
// namespace (created with loopback up, kept across restarts, deleted when the
// supervisor ends) and the port proxies that publish WEFT_PUBLISH_PORTS on the
// host's 127.0.0.1 (port-proxy.ts; they end when the supervisor does).
export const SUPERVISOR_SCRIPT = `#!/bin/sh
# weft local runtime: instance supervisor. $1 = instance dir, $2 = restart policy (never|always), then the command.
d="$1"; policy="$2"; shift 2
if [ -n "$WEFT_NETNS" ]; then
  trap 'ip netns delete "$WEFT_NETNS" 2>/dev/null' EXIT
  ip netns add "$WEFT_NETNS" 2>/dev/null
  nsenter --net="/run/netns/$WEFT_NETNS" ip link set lo up || { echo "[weft] cannot set up the network namespace $WEFT_NETNS"; echo 125 > "$d/exit"; exit 125; }
  if [ -n "$WEFT_PUBLISH_PORTS" ]; then
    nsenter --net="/run/netns/$WEFT_NETNS" "$WEFT_NODE" "$WEFT_PORT_PROXY" inner "$d" $$ $WEFT_PUBLISH_PORTS &
    "$WEFT_NODE" "$WEFT_PORT_PROXY" outer "$d" $$ $WEFT_PUBLISH_PORTS &
  fi
fi
# Restarts counted so far (weft's own restarts included): crash restarts continue the count.
n=$(cat "$d/restarts" 2>/dev/null || echo 0)
case "$n" in ''|*[!0-9]*) n=0 ;; esac
delay=1
while :; do
  rm -f "$d/exit"
  echo "$(date +%s)000" > "$d/started"
  "$@" &
  child=$!
  echo "$child" > "$d/child.tmp" && mv "$d/child.tmp" "$d/child"
  wait "$child"
  code=$?
  if [ -n "$WEFT_AFTER_EXIT" ]; then sh -c "$WEFT_AFTER_EXIT" >/dev/null 2>&1; fi
  echo "$code" > "$d/exit.tmp" && mv "$d/exit.tmp" "$d/exit"
  [ "$policy" = always ] || break
  [ -e "$d/stop" ] && break
  echo "[weft] exited with code $code; restarting in \${delay}s"
  sleep "$delay"
  [ -e "$d/stop" ] && break
  n=$((n+1)); echo "$n" > "$d/restarts"
  delay=$((delay*2)); [ "$delay" -gt 30 ] && delay=30
done
`;
