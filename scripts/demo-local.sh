#!/usr/bin/env bash
# weft's main job on the local runtime, end to end on this machine, offline:
#   1. install what weft needs (scripts/setup) and compile the example program
#   2. make sure weft's embedded registry answers at 127.0.0.1:5000 (started in the background if not)
#   3. build a JRE base image from the local JDK                     (weft base jre)
#   4. build the example on it and push it to the embedded registry  (weft build --output docker://...)
#   5. run it on the local runtime                                   (weft run --runtime local)
#   6. stream its logs until it ends, then report its final state    (weft logs --follow, weft status)
# The app spec is test/twill/fixtures/hello-weft.yaml. Run state and logs are kept under
# ${XDG_STATE_HOME:-~/.local/state}/weft/local/runs/<run-id>/.
# Usage: scripts/demo-local.sh          (WEFT_LOCAL_MODE=host runs the program with the host's JVM instead of runc)
source "$(dirname "$0")/lib.sh"
cd "$WEFT_ROOT"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
[[ -n "${NO_COLOR:-}" || ! -t 2 ]] && step() { printf '\n==> %s\n' "$*" >&2; }

step "setting up (Debian packages, npm packages, TypeScript, example programs)"
bash scripts/setup

weft() { node "$WEFT_ROOT/dist/src/cli/main.js" "$@"; }
addr="${WEFT_REGISTRY_ADDR:-127.0.0.1:5000}"
[[ "$addr" == "127.0.0.1:5000" ]] || die "the app spec names 127.0.0.1:5000/hello:latest: unset WEFT_REGISTRY_ADDR (it is $addr)"

step "making sure the embedded registry answers at $addr"
node --input-type=module -e "
  const { ensureEmbeddedRegistry } = await import('$WEFT_ROOT/dist/src/registry/server/index.js');
  const r = await ensureEmbeddedRegistry({ addr: '$addr' });
  console.error(r.started ? '[weft] started the embedded registry at ' + r.url + ' (pid ' + r.pid + ', log ' + r.logFile + ')' : '[weft] the registry at ' + r.url + ' is already running');
" || die "the embedded registry did not start (see ${XDG_STATE_HOME:-$HOME/.local/state}/weft/registry.log)"

demo="$WEFT_ROOT/.weft/demo"
mkdir -p "$demo"
step "building the JRE base image: weft base jre --output oci:.weft/demo/images:jre"
weft base jre --output "oci:$demo/images:jre" >/dev/null

step "building the example and pushing it: weft build ... --output docker://$addr/hello:latest"
weft build examples/hello/build/hello.jar --base "oci:$demo/images:jre" --output "docker://$addr/hello:latest"

step "running it on the local runtime: weft run test/twill/fixtures/hello-weft.yaml --runtime local"
run_id="$(weft run test/twill/fixtures/hello-weft.yaml --runtime local)"
[[ -n "$run_id" ]] || die "weft run printed no run id"
log "run $run_id started"

step "streaming its logs until it ends: weft logs --follow $run_id --runtime local"
weft logs --follow "$run_id" --runtime local

step "final state: weft status $run_id --runtime local"
weft status "$run_id" --runtime local
state="$(weft status "$run_id" --runtime local --json | node -e 'let t="";process.stdin.on("data",d=>t+=d).on("end",()=>console.log(JSON.parse(t).state))')"
[[ "$state" == COMPLETED ]] || die "the run ended $state"
step "done: run $run_id COMPLETED (image docker://$addr/hello:latest)"
