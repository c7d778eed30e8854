# A real Kubernetes node for scripts/k8s-testenv: kubelet (built from the same k8s.io/kubernetes
# module as the control plane), containerd, runc and the CNI bridge/host-local/loopback plugins
# from Debian, and a pause image built here from a 30-line Go program. Source from
# scripts/k8s-testenv after its definitions; don't run. Facts behind each setting: docs/kubernetes-testenv.md.
#
# The machine is left as it was: the kubelet and containerd run in private mount namespaces whose
# /proc/sys files that they would write (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops,
# net.ipv4.ip_forward) are stub files, and whose iptables binary is a stub that exits 3, so no host
# sysctl and no netfilter rule changes. `down` removes processes, mounts, cgroups, the bridge and
# the pod network namespaces.

NODE_DIR="$STATE/node"
REAL_NODE_NAME="${WEFT_REAL_NODE_NAME:-localhost}"
REAL_NODE_BRIDGE="${WEFT_REAL_NODE_BRIDGE:-weftbr0}"
REAL_NODE_SUBNET="${WEFT_REAL_NODE_SUBNET:-10.88.77.0/24}"
REAL_NODE_LABEL="weft.io/real-node"
PAUSE_IMAGE="weft.local/pause:3.10"
CNI_BIN_DIR="${WEFT_CNI_BIN_DIR:-/usr/lib/cni}"
CONTAINERD_SOCK="$NODE_DIR/containerd/containerd.sock"

ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

real_node_preflight() {
  [[ $(id -u) -eq 0 ]] || die "the real node needs root (kubelet and containerd manage mounts, cgroups and network namespaces)"
  local b
  for b in containerd ctr containerd-shim-runc-v2 runc unshare mount; do
    command -v "$b" >/dev/null || die "$b is missing: apt-get install containerd runc util-linux (scripts/setup --test does)"
  done
  for b in bridge host-local loopback; do
    [[ -x "$CNI_BIN_DIR/$b" ]] || die "CNI plugin $CNI_BIN_DIR/$b is missing: apt-get install containernetworking-plugins"
  done
  [[ -x "$K8S_BIN/kubelet" ]] || die "kubelet is not built in $K8S_BIN: run scripts/k8s/build.sh"
  # The apiserver reaches the kubelet by the node's Hostname address: it must be a loopback name.
  local addr
  addr="$(getent ahostsv4 "$REAL_NODE_NAME" | awk 'NR==1{print $1}')"
  [[ "$addr" == 127.* ]] || die "node name $REAL_NODE_NAME resolves to '${addr:-nothing}', not a loopback address: set WEFT_REAL_NODE_NAME=localhost"
  if ip link show "$REAL_NODE_BRIDGE" >/dev/null 2>&1 && ! [[ -e "$NODE_DIR" ]]; then
    die "a network interface $REAL_NODE_BRIDGE exists that this environment did not create: set WEFT_REAL_NODE_BRIDGE to another name"
  fi
}

# The pause image: our own static Go binary (sleep until SIGTERM/SIGINT, reap children) in a
# one-layer OCI archive, imported into containerd, so the node never needs a registry for it.
build_pause_image() {
  local src="$WEFT_ROOT/scripts/k8s/pause" key out
  key="$(cat "$src/main.go" "$src/go.mod" | sha256sum | cut -c1-12)"
  out="$WEFT_TOOLS/pause-$key"
  if [[ ! -s "$out/pause.tar" ]]; then
    command -v go >/dev/null || die "go is needed to build the pause image"
    rm -rf "$out.tmp" && mkdir -p "$out.tmp"
    (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out.tmp/pause" .) || die "building the pause program failed (see above)"
    node "$WEFT_ROOT/scripts/k8s/oci-archive.mjs" "$out.tmp/pause" /pause "$PAUSE_IMAGE" "$out.tmp/pause.tar" ||
      die "writing the pause image archive failed (see above)"
    rm -rf "$out" && mv "$out.tmp" "$out"
  fi
  echo "$out/pause.tar"
}

# Registries the node pulls from over plain HTTP: 127.0.0.1:5000 (weft's default) and
# WEFT_NODE_REGISTRIES (comma-separated host:port), each a certs.d/<host>/hosts.toml.
write_registry_hosts() {
  local list="127.0.0.1:5000${WEFT_NODE_REGISTRIES:+,$WEFT_NODE_REGISTRIES}" r
  mkdir -p "$NODE_DIR/containerd/certs.d"
  IFS=, read -r -a regs <<<"$list"
  for r in "${regs[@]}"; do
    r="${r// /}"; [[ -n "$r" ]] || continue
    [[ "$r" =~ ^[A-Za-z0-9.-]+:[0-9]+$ ]] || die "WEFT_NODE_REGISTRIES: '$r' is not host:port"
    mkdir -p "$NODE_DIR/containerd/certs.d/$r"
    cat >"$NODE_DIR/containerd/certs.d/$r/hosts.toml" <<EOF
server = "http://$r"
[host."http://$r"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
EOF
  done
}

write_containerd_config() {
  mkdir -p "$NODE_DIR/containerd" "$NODE_DIR/cni/net.d" "$NODE_DIR/cni/ipam"
  cat >"$NODE_DIR/containerd/config.toml" <<EOF
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Without CAP_SYS_RESOURCE no process may lower its oom_score_adj; the kubelet asks -998 for
  # every pause container, so without this every pod fails.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$NODE_DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$NODE_DIR/containerd/certs.d"
EOF
  local gw="${REAL_NODE_SUBNET%.*}.1"
  cat >"$NODE_DIR/cni/net.d/10-weft.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "weft-real-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$REAL_NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "subnet": "$REAL_NODE_SUBNET",
        "gateway": "$gw",
        "dataDir": "$NODE_DIR/cni/ipam"
      }
    }
  ]
}
EOF
  write_registry_hosts
}

write_kubelet_config() {
  local k="$NODE_DIR/kubelet-config"
  mkdir -p "$k" "$NODE_DIR/kubelet" "$NODE_DIR/pod-logs" "$NODE_DIR/volume-plugins"
  # Client certificate for the node identity: the Node authorizer and NodeRestriction accept it.
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/O=system:nodes/CN=system:node:$REAL_NODE_NAME" \
    -keyout "$k/kubelet.key" -out "$k/kubelet.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth" >"$k/kubelet.ext"
  openssl x509 -req -sha256 -days 3650 -in "$k/kubelet.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -extfile "$k/kubelet.ext" -out "$k/kubelet.crt" 2>/dev/null
  [[ -s "$k/kubelet.crt" ]] || die "openssl could not sign the kubelet certificate"
  chmod 600 "$k/kubelet.key"
  cat >"$k/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: weft-testenv
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: kubelet
  user:
    client-certificate: $k/kubelet.crt
    client-key: $k/kubelet.key
contexts:
- name: weft-testenv
  context: { cluster: weft-testenv, user: kubelet }
current-context: weft-testenv
EOF
  # Pods get no cluster DNS here (in-cluster networking is another layer); a harmless resolv.conf.
  printf 'nameserver 127.0.0.1\noptions ndots:1\n' >"$k/resolv.conf"
  cat >"$k/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: { enabled: true }
  webhook: { enabled: false }
authorization: { mode: AlwaysAllow }
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imageServiceEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
oomScoreAdj: 0
protectKernelDefaults: false
podLogsDir: $NODE_DIR/pod-logs
volumePluginDir: $NODE_DIR/volume-plugins
resolvConf: $k/resolv.conf
maxPods: 30
serializeImagePulls: false
registerWithTaints:
- { key: $REAL_NODE_LABEL, value: "true", effect: NoSchedule }
evictionHard: { memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2% }
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
syncFrequency: 10s
nodeStatusReportFrequency: 10s
EOF
}

# shield_script: the wrapper each of containerd and the kubelet runs in, inside its own mount
# namespace: stub files over the /proc/sys files they would change, a stub iptables.
write_shield() {
  local s="$NODE_DIR/shield"
  mkdir -p "$s"
  echo 1 >"$s/overcommit_memory"; echo 10 >"$s/panic"; echo 1 >"$s/panic_on_oops"; echo 1 >"$s/ip_forward"
  printf '#!/bin/sh\n# weft real node: no netfilter changes on the shared machine.\nexit 3\n' >"$s/no-iptables"
  chmod 755 "$s/no-iptables"
  local ipt
  ipt="$(readlink -f "$(command -v iptables 2>/dev/null || echo /nonexistent)")"
  cat >"$s/enter" <<EOF
#!/bin/bash
# Runs "\$@" with the host's sysctls and netfilter shielded (private mount namespace).
set -e
mount --bind $s/overcommit_memory /proc/sys/vm/overcommit_memory
mount --bind $s/panic /proc/sys/kernel/panic
mount --bind $s/panic_on_oops /proc/sys/kernel/panic_on_oops
mount --bind $s/ip_forward /proc/sys/net/ipv4/ip_forward
if [[ -x "$ipt" ]]; then mount --bind $s/no-iptables "$ipt"; fi
exec "\$@"
EOF
  chmod 755 "$s/enter"
}

real_node_running() { alive containerd && alive kubelet; }

real_node_ready() {
  [[ "$(kubectl_ get node "$REAL_NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

real_node_up() {
  if real_node_running && real_node_ready; then
    write_registry_hosts # new WEFT_NODE_REGISTRIES take effect at the next pull
    log "real node $REAL_NODE_NAME: already up"
    return 0
  fi
  real_node_down_quiet
  real_node_preflight
  local t0=$SECONDS pause_tar
  pause_tar="$(build_pause_image)"
  mkdir -p "$NODE_DIR"
  local ports
  read -r -a ports <<<"$(free_ports 2)"
  KUBELET_PORT="${ports[0]}" KUBELET_HEALTHZ_PORT="${ports[1]}"
  printf 'KUBELET_PORT=%s\nKUBELET_HEALTHZ_PORT=%s\n' "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" >"$NODE_DIR/ports.env"
  write_containerd_config
  write_kubelet_config
  write_shield
  # Volumes the kubelet mounts (projected, downward API, secrets) must propagate to containerd
  # and runc in other mount namespaces: the kubelet root is a shared bind mount.
  mount --bind "$NODE_DIR/kubelet" "$NODE_DIR/kubelet"
  mount --make-rshared "$NODE_DIR/kubelet"
  start containerd unshare --mount --propagation unchanged "$NODE_DIR/shield/enter" \
    containerd --config "$NODE_DIR/containerd/config.toml"
  wait_for "containerd on $CONTAINERD_SOCK" 60 containerd ctr_ version
  ctr_ images import "$pause_tar" >/dev/null || die "could not import the pause image into containerd"
  start kubelet unshare --mount --propagation unchanged "$NODE_DIR/shield/enter" \
    "$K8S_BIN/kubelet" --config="$NODE_DIR/kubelet-config/config.yaml" \
    --kubeconfig="$NODE_DIR/kubelet-config/kubeconfig" --root-dir="$NODE_DIR/kubelet" \
    --cert-dir="$NODE_DIR/kubelet-config/pki" --hostname-override="$REAL_NODE_NAME" \
    --node-labels="$REAL_NODE_LABEL=true" --v=1
  wait_for "node $REAL_NODE_NAME to be Ready" 120 kubelet real_node_ready
  log "real node $REAL_NODE_NAME Ready in $((SECONDS - t0))s (label $REAL_NODE_LABEL=true, taint $REAL_NODE_LABEL=true:NoSchedule)"
}

# Everything the node left on the machine, in reverse order of creation.
real_node_down_quiet() {
  [[ -d "$NODE_DIR" ]] || { ip link del "$REAL_NODE_BRIDGE" 2>/dev/null || true; return 0; }
  # Pods first, through the API, while the kubelet can still stop them (CNI DEL frees their IPs).
  if alive kubelet && [[ -n "${API_PORT:-}" ]]; then
    kubectl_ delete pods --all-namespaces --field-selector "spec.nodeName=$REAL_NODE_NAME" \
      --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    local i
    for ((i = 0; i < 40; i++)); do
      [[ -z "$(ctr_ tasks ls -q 2>/dev/null)" ]] && break
      sleep 0.5
    done
  fi
  stop kubelet
  # The containers' cgroups are named by their ids: remember ours (another containerd may share /k8s.io).
  local ids=()
  if alive containerd; then mapfile -t ids < <(ctr_ containers ls -q 2>/dev/null); fi
  if alive containerd; then
    local t
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    sleep 0.5
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
  fi
  stop containerd
  # Shims outlive containerd: they are ours when their command line names our state dir.
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in $(pgrep -f "$NODE_DIR/containerd" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  # Mounts under the node dir (rootfs overlays, netns, volumes, the shared bind), deepest first.
  local m
  for ((i = 0; i < 5; i++)); do
    mapfile -t mounts < <(awk -v d="$NODE_DIR" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    ((${#mounts[@]})) || break
    for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
  done
  # cgroups containerd made for containers (cgroupsPerQOS is off: /k8s.io/<id> in each hierarchy).
  local cg id
  for cg in /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/k8s.io; do
    [[ -d "$cg" ]] || continue
    for id in "${ids[@]}"; do if [[ -n "$id" && -d "$cg/$id" ]]; then rmdir "$cg/$id" 2>/dev/null || true; fi; done
    rmdir "$cg" 2>/dev/null || true # only when no other containerd uses it
  done
  ip link del "$REAL_NODE_BRIDGE" 2>/dev/null || true
  if [[ -n "${API_PORT:-}" ]] && [[ -f "$KUBECONFIG_FILE" ]]; then
    kubectl_ delete node "$REAL_NODE_NAME" --wait=false >/dev/null 2>&1 || true
  fi
  rm -rf "$NODE_DIR" 2>/dev/null || { sleep 1; rm -rf "$NODE_DIR"; }
}

real_node_down() {
  [[ -d "$NODE_DIR" ]] || return 0
  real_node_down_quiet
  log "real node $REAL_NODE_NAME: stopped; mounts, cgroups, bridge and state removed"
}
