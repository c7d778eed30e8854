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
#
# In-cluster networking (up --real-node --in-cluster, or WEFT_IN_CLUSTER=1): containerd (so the CNI
# bridge and every pod), kube-proxy and CoreDNS run in a network namespace this script creates (a
# file under the node dir, not /run/netns); the kubelet stays in the host's. Pods then reach the API
# server through the `kubernetes` Service (10.96.0.1:443, kube-proxy's iptables rules inside the
# namespace) and resolve Service names through kube-dns (10.96.0.10). The API server and the
# registries on the host's loopback are bridged into the namespace through unix sockets
# (scripts/k8s/unix-bridge.mjs): nothing listens on a non-loopback address of the host. Other
# loopback services of the host (WEFT_NODE_HOST_SERVICES=name=127.0.0.1:port,..., e.g. the test
# PostgreSQL) are bridged the same way and get a selector-less Service <name>.testenv-host in the
# cluster, the way a cluster reaches a database outside it. Facts behind it:
# docs/kubernetes-testenv.md "In-cluster networking".

NODE_DIR="$STATE/node"
REAL_NODE_NAME="${WEFT_REAL_NODE_NAME:-localhost}"
REAL_NODE_BRIDGE="${WEFT_REAL_NODE_BRIDGE:-weftbr0}"
REAL_NODE_SUBNET="${WEFT_REAL_NODE_SUBNET:-10.88.77.0/24}"
REAL_NODE_LABEL="weft.io/real-node"
PAUSE_IMAGE="weft.local/pause:3.10"
CNI_BIN_DIR="${WEFT_CNI_BIN_DIR:-/usr/lib/cni}"
CONTAINERD_SOCK="$NODE_DIR/containerd/containerd.sock"
# In-cluster networking: the node's network namespace, the veth pair to it (names from the bridge
# name, so that several environments on one machine do not collide) and its /30 (from the third
# octet of the pod subnet unless WEFT_REAL_NODE_LINK_NET=a.b.c.d names the /30's first address).
IN_CLUSTER="${WEFT_IN_CLUSTER:-0}"
NETNS_FILE="$NODE_DIR/netns"
LINK_HOST="${REAL_NODE_BRIDGE:0:12}-h" LINK_NODE="${REAL_NODE_BRIDGE:0:12}-n"
LINK_SVC="${REAL_NODE_BRIDGE:0:12}-s" LINK_SVC_PEER="${REAL_NODE_BRIDGE:0:12}-p"
_link_base="${WEFT_REAL_NODE_LINK_NET:-10.201.$(cut -d. -f3 <<<"$REAL_NODE_SUBNET").0}"
LINK_HOST_ADDR="${_link_base%.*}.$((${_link_base##*.} + 1))" LINK_NODE_ADDR="${_link_base%.*}.$((${_link_base##*.} + 2))"
CLUSTER_DNS_IP=10.96.0.10
BRIDGE_DIR="$NODE_DIR/bridge"

in_ns() { nsenter --net="$NETNS_FILE" "$@"; }

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
  if [[ "$IN_CLUSTER" == 1 ]]; then
    for b in nsenter iptables iptables-restore node; do
      command -v "$b" >/dev/null || die "$b is missing (in-cluster networking needs util-linux, iptables and node)"
    done
    if ip link show "$LINK_HOST" >/dev/null 2>&1; then
      die "a network interface $LINK_HOST exists that this environment did not create: set WEFT_REAL_NODE_BRIDGE to another name"
    fi
    if [[ -n "$(ip route show "$REAL_NODE_SUBNET" 2>/dev/null)" || -n "$(ip route show to match "$LINK_HOST_ADDR" | grep -v '^default')" ]]; then
      die "the host already routes $REAL_NODE_SUBNET or $LINK_HOST_ADDR: set WEFT_REAL_NODE_SUBNET (and WEFT_REAL_NODE_LINK_NET) to free ranges"
    fi
    if [[ ! -x "$K8S_BIN/kube-proxy" || ! -x "$WEFT_TOOLS/coredns-$WEFT_COREDNS_VERSION/bin/coredns" ]]; then
      WEFT_IN_CLUSTER=1 bash "$WEFT_ROOT/scripts/k8s/build.sh" || die "kube-proxy or CoreDNS could not be built (see above)"
      source "$WEFT_ROOT/scripts/k8s/versions.sh"
    fi
    [[ -x "$K8S_BIN/kube-proxy" ]] || die "kube-proxy is not built in $K8S_BIN: run scripts/k8s/build.sh"
    COREDNS_BIN="$WEFT_TOOLS/coredns-$WEFT_COREDNS_VERSION/bin/coredns"
    [[ -x "$COREDNS_BIN" ]] || die "coredns is not built in $COREDNS_BIN: run WEFT_IN_CLUSTER=1 scripts/k8s/build.sh"
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
  # The kubelet (host namespace) reaches exec/attach/port-forward on the stream server.
  local stream_addr=127.0.0.1 ipam_routes=""
  if [[ "$IN_CLUSTER" == 1 ]]; then
    stream_addr="$LINK_NODE_ADDR"
    # Pods need a route off their subnet (the Service CIDR, the namespace's own address); the
    # namespace itself has no default route, so nothing leaves the machine.
    ipam_routes=',
        "routes": [{ "dst": "0.0.0.0/0" }]'
  fi
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
  stream_server_address = "$stream_addr"
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
        "dataDir": "$NODE_DIR/cni/ipam"$ipam_routes
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
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -subj "/O=system:nodes/CN=system:node:$REAL_NODE_NAME" \
    -keyout "$k/kubelet.key" -out "$k/kubelet.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth" >"$k/kubelet.ext"
  openssl x509 -req -sha256 -days 3650 -in "$k/kubelet.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$k/kubelet.ext" -out "$k/kubelet.crt" 2>/dev/null
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
  # Pods get cluster DNS only with in-cluster networking; otherwise a harmless resolv.conf.
  printf 'nameserver 127.0.0.1\noptions ndots:1\n' >"$k/resolv.conf"
  local dns=""
  if [[ "$IN_CLUSTER" == 1 ]]; then dns="clusterDNS: [$CLUSTER_DNS_IP]
clusterDomain: cluster.local"; fi
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
$dns
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

# ---- In-cluster networking ---------------------------------------------------------------------

# The node's network namespace (a bind-mounted nsfs file under the node dir), a veth pair to the
# host (the host routes the pod subnet through it, so the kubelet's probes and tests reach pod IPs)
# and, inside, a second veth pair that carries the route to the Service CIDR (the kernel has no
# dummy module here): processes of the namespace (containerd pulling from a ClusterIP, hostNetwork
# pods) need a route before kube-proxy's OUTPUT DNAT applies. No default route: nothing a pod
# sends leaves the machine. IP forwarding is switched on inside the namespace only.
in_cluster_net_up() {
  : >"$NETNS_FILE"
  unshare --net="$NETNS_FILE" true || die "could not create the node's network namespace at $NETNS_FILE"
  ip link add "$LINK_HOST" type veth peer name "$LINK_NODE" || die "could not create the veth pair $LINK_HOST/$LINK_NODE"
  ip link set "$LINK_NODE" netns "$NETNS_FILE"
  ip addr add "$LINK_HOST_ADDR/30" dev "$LINK_HOST"
  ip link set "$LINK_HOST" up
  in_ns ip link set lo up
  in_ns ip addr add "$LINK_NODE_ADDR/30" dev "$LINK_NODE"
  in_ns ip link set "$LINK_NODE" up
  in_ns ip link add "$LINK_SVC" type veth peer name "$LINK_SVC_PEER"
  in_ns ip link set "$LINK_SVC" up
  in_ns ip link set "$LINK_SVC_PEER" up
  in_ns ip route add "$SERVICE_CIDR" dev "$LINK_SVC"
  in_ns sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'
  ip route add "$REAL_NODE_SUBNET" via "$LINK_NODE_ADDR" dev "$LINK_HOST" || die "could not route $REAL_NODE_SUBNET to the node's namespace"
}

# The loopback registries the node pulls from (certs.d), as host:port lines.
loopback_registries() {
  local d
  for d in "$NODE_DIR/containerd/certs.d"/*; do
    d="$(basename "$d")"
    [[ "$d" =~ ^127\.[0-9.]+:[0-9]+$ ]] && echo "$d"
  done
  return 0
}

# Loopback services of the host that pods reach through a Service (WEFT_NODE_HOST_SERVICES, a
# comma-separated list of name=127.0.0.1:port): merged into $NODE_DIR/host-services ("name
# host:port" lines; a name given again gets its new address), so an `up` without the variable
# keeps them. Only with in-cluster networking (without it pods reach no Service at all).
record_host_services() {
  local file="$NODE_DIR/host-services" entry name addr
  touch "$file"
  IFS=, read -r -a entries <<<"${WEFT_NODE_HOST_SERVICES:-}"
  for entry in "${entries[@]}"; do
    entry="${entry// /}"; [[ -n "$entry" ]] || continue
    [[ "$entry" =~ ^([a-z]([-a-z0-9]{0,30}[a-z0-9])?)=(127\.[0-9]+\.[0-9]+\.[0-9]+:[0-9]+)$ ]] ||
      die "WEFT_NODE_HOST_SERVICES: '$entry' is not name=127.x.y.z:port (name: a DNS label; only loopback addresses are bridged)"
    name="${BASH_REMATCH[1]}" addr="${BASH_REMATCH[3]}"
    { grep -v "^$name " "$file" || true; echo "$name $addr"; } >"$file.tmp" && mv "$file.tmp" "$file"
  done
}

host_services() { [[ -f "$NODE_DIR/host-services" ]] && sort "$NODE_DIR/host-services"; return 0; }

# What the bridges carry, as one line (restart them when it changes).
bridged_list() { { loopback_registries; host_services; } | tr '\n' ' '; }

# The Services of the host's loopback services: namespace testenv-host, one selector-less Service
# per name (port = the host port) and an EndpointSlice to the bridge's end on the namespace's
# address, so pods reach <name>.testenv-host.svc.cluster.local:<port>.
host_service_objects() {
  local name addr port f="$NODE_DIR/host-services.yaml"
  [[ -s "$NODE_DIR/host-services" ]] || return 0
  printf 'apiVersion: v1\nkind: Namespace\nmetadata: { name: testenv-host, labels: { app.kubernetes.io/managed-by: weft-testenv } }\n' >"$f"
  while read -r name addr; do
    port="${addr##*:}"
    cat >>"$f" <<EOF
---
apiVersion: v1
kind: Service
metadata: { name: $name, namespace: testenv-host, labels: { app.kubernetes.io/managed-by: weft-testenv } }
spec:
  ports: [{ name: tcp, port: $port, protocol: TCP, targetPort: $port }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $name-weft-testenv
  namespace: testenv-host
  labels: { kubernetes.io/service-name: $name, endpointslice.kubernetes.io/managed-by: weft-testenv }
addressType: IPv4
endpoints: [{ addresses: ["$LINK_NODE_ADDR"], conditions: { ready: true } }]
ports: [{ name: tcp, port: $port, protocol: TCP }]
EOF
  done < <(host_services)
  kubectl_ apply -f "$f" >/dev/null || die "could not create the Services of the host's loopback services (see above)"
}

# The unix-socket bridge: on the host, a forwarder serves $BRIDGE_DIR/*.sock and connects to the
# API server, the loopback registries and the host services on 127.0.0.1; in the namespace, a
# forwarder listens on the namespace's address (API server, host services) and its loopback
# (registries, where containerd pulls from) and connects to those sockets. Restarted when the
# list changes.
in_cluster_bridges_up() {
  stop unix-bridge-netns
  stop unix-bridge-host
  mkdir -p "$BRIDGE_DIR"; chmod 700 "$BRIDGE_DIR"
  local host=("$BRIDGE_DIR/api.sock" "127.0.0.1:$API_PORT") netns=("$LINK_NODE_ADDR:$API_PORT" "$BRIDGE_DIR/api.sock") r i=0 name addr
  for r in $(loopback_registries); do
    host+=("$BRIDGE_DIR/reg$i.sock" "$r"); netns+=("$r" "$BRIDGE_DIR/reg$i.sock"); i=$((i + 1))
  done
  while read -r name addr; do
    [[ -n "$name" ]] || continue
    host+=("$BRIDGE_DIR/svc-$name.sock" "$addr"); netns+=("$LINK_NODE_ADDR:${addr##*:}" "$BRIDGE_DIR/svc-$name.sock")
  done < <(host_services)
  start unix-bridge-host node "$WEFT_ROOT/scripts/k8s/unix-bridge.mjs" serve-unix "${host[@]}"
  wait_for "the host end of the unix-socket bridge" 30 unix-bridge-host test -S "$BRIDGE_DIR/api.sock"
  start unix-bridge-netns nsenter --net="$NETNS_FILE" node "$WEFT_ROOT/scripts/k8s/unix-bridge.mjs" serve-tcp "${netns[@]}"
  wait_for "the API server through the bridge at https://$LINK_NODE_ADDR:$API_PORT (inside the node's namespace)" 30 unix-bridge-netns \
    in_ns curl -sfk --max-time 3 -H "Authorization: Bearer $ADMIN_TOKEN" -o /dev/null "https://$LINK_NODE_ADDR:$API_PORT/readyz"
}

# sign_client NAME CN [O]: a client certificate and a kubeconfig for a component in the namespace,
# which reaches the API server through the bridge on the namespace's address (the serving
# certificate has no SAN for it: the name checked is "kubernetes").
sign_client() {
  local name="$1" cn="$2" org="${3:-}" d="$NODE_DIR/$1"
  mkdir -p "$d"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -subj "${org:+/O=$org}/CN=$cn" -keyout "$d/client.key" -out "$d/client.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth" >"$d/client.ext"
  openssl x509 -req -sha256 -days 3650 -in "$d/client.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$d/client.ext" -out "$d/client.crt" 2>/dev/null
  [[ -s "$d/client.crt" ]] || die "openssl could not sign the $name client certificate"
  chmod 600 "$d/client.key"
  cat >"$d/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: weft-testenv
  cluster:
    server: https://$LINK_NODE_ADDR:$API_PORT
    certificate-authority: $PKI/ca.crt
    tls-server-name: kubernetes
users:
- name: $name
  user:
    client-certificate: $d/client.crt
    client-key: $d/client.key
contexts:
- name: weft-testenv
  context: { cluster: weft-testenv, user: $name }
current-context: weft-testenv
EOF
}

# Objects the in-cluster layout needs: the API server runs with --endpoint-reconciler-type=none,
# so the `kubernetes` Service gets its endpoint (the bridge) by hand; kube-dns is a selector-less
# Service at a fixed ClusterIP whose endpoint is CoreDNS on the namespace's address; CoreDNS's
# read-only RBAC.
in_cluster_objects() {
  kubectl_ apply -f - >/dev/null <<EOF || die "could not create the Services, EndpointSlices and RBAC of in-cluster networking"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes-weft-testenv
  namespace: default
  labels: { kubernetes.io/service-name: kubernetes, endpointslice.kubernetes.io/managed-by: weft-testenv }
addressType: IPv4
endpoints: [{ addresses: ["$LINK_NODE_ADDR"], conditions: { ready: true } }]
ports: [{ name: https, port: $API_PORT, protocol: TCP }]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: { k8s-app: kube-dns, kubernetes.io/name: CoreDNS }
spec:
  clusterIP: $CLUSTER_DNS_IP
  ports:
  - { name: dns, port: 53, protocol: UDP, targetPort: 53 }
  - { name: dns-tcp, port: 53, protocol: TCP, targetPort: 53 }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-weft-testenv
  namespace: kube-system
  labels: { kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: weft-testenv }
addressType: IPv4
endpoints: [{ addresses: ["$LINK_NODE_ADDR"], conditions: { ready: true } }]
ports:
- { name: dns, port: 53, protocol: UDP }
- { name: dns-tcp, port: 53, protocol: TCP }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: "weft-testenv:coredns" }
rules:
- { apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch] }
- { apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: "weft-testenv:coredns" }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "weft-testenv:coredns" }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: "weft-testenv:coredns" }]
EOF
}

# kube-proxy (iptables mode; its rules live in the namespace's own netfilter tables) and CoreDNS,
# both host processes in the node's namespace. kube-proxy touches no global sysctl: conntrack
# sizing and timeouts are 0 (left alone), no localhost NodePorts (route_localnet), oomScoreAdj 0.
# Started before containerd and the kubelet (they need only the API server, through the bridge),
# so their start-up overlaps the node's registration; in_cluster_services_wait waits for them.
in_cluster_services_start() {
  local a b
  sign_client kube-proxy system:kube-proxy & a=$!
  sign_client coredns weft-testenv:coredns & b=$!
  wait "$a" || { wait "$b"; die "could not sign the client certificate of kube-proxy"; }
  wait "$b" || die "could not sign the client certificate of CoreDNS"
  in_cluster_objects
  host_service_objects
  cat >"$NODE_DIR/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: $NODE_DIR/kube-proxy/kubeconfig }
hostnameOverride: $REAL_NODE_NAME
mode: iptables
clusterCIDR: $REAL_NODE_SUBNET
bindAddress: $LINK_NODE_ADDR
healthzBindAddress: $LINK_NODE_ADDR:10256
metricsBindAddress: $LINK_NODE_ADDR:10249
nodePortAddresses: ["$LINK_NODE_ADDR/32"]
oomScoreAdj: 0
iptables: { localhostNodePorts: false }
conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s }
EOF
  start kube-proxy nsenter --net="$NETNS_FILE" "$K8S_BIN/kube-proxy" --config="$NODE_DIR/kube-proxy/config.yaml" --v=1
  cat >"$NODE_DIR/coredns/Corefile" <<EOF
.:53 {
    bind $LINK_NODE_ADDR
    errors
    ready $LINK_NODE_ADDR:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $NODE_DIR/coredns/kubeconfig weft-testenv
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOF
  start coredns nsenter --net="$NETNS_FILE" "$COREDNS_BIN" -conf "$NODE_DIR/coredns/Corefile"
}

in_cluster_services_wait() {
  wait_for "kube-proxy /healthz on $LINK_NODE_ADDR:10256 (inside the node's namespace)" 120 kube-proxy \
    in_ns curl -sf --max-time 3 -o /dev/null "http://$LINK_NODE_ADDR:10256/healthz"
  wait_for "CoreDNS /ready on $LINK_NODE_ADDR:8181 (inside the node's namespace)" 120 coredns \
    in_ns curl -sf --max-time 3 -o /dev/null "http://$LINK_NODE_ADDR:8181/ready"
  wait_for "kube-proxy's rules for the kubernetes Service" 60 kube-proxy \
    in_ns curl -sfk --max-time 3 -H "Authorization: Bearer $ADMIN_TOKEN" -o /dev/null "https://10.96.0.1:443/readyz"
}

in_cluster_running() { alive unix-bridge-host && alive unix-bridge-netns && alive kube-proxy && alive coredns; }

# The namespace's processes, then the namespace (the mount of its file goes with the node dir's
# mounts) and the veth pair (deleting the host end deletes both ends and the route).
in_cluster_down() {
  stop coredns
  stop kube-proxy
  stop unix-bridge-netns
  stop unix-bridge-host
  ip link del "$LINK_HOST" 2>/dev/null || true
}

real_node_running() {
  alive containerd && alive kubelet || return 1
  # The layout on disk must be the one asked for.
  if [[ "$IN_CLUSTER" == 1 ]]; then [[ -e "$NODE_DIR/in-cluster" ]] && in_cluster_running; else [[ ! -e "$NODE_DIR/in-cluster" ]]; fi
}

real_node_ready() {
  [[ "$(kubectl_ get node "$REAL_NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

real_node_up() {
  if [[ "$IN_CLUSTER" != 1 && -n "${WEFT_NODE_HOST_SERVICES:-}" ]]; then
    log "WEFT_NODE_HOST_SERVICES is ignored without --in-cluster (without kube-proxy pods reach no Service)"
  fi
  if real_node_running && real_node_ready; then
    write_registry_hosts # new WEFT_NODE_REGISTRIES take effect at the next pull
    if [[ "$IN_CLUSTER" == 1 ]]; then
      # New loopback registries and host services need their bridge into the namespace.
      record_host_services
      [[ "$(bridged_list)" == "$(cat "$NODE_DIR/bridged" 2>/dev/null)" ]] || {
        in_cluster_bridges_up; bridged_list >"$NODE_DIR/bridged"; host_service_objects; }
    fi
    local what=""
    [[ "$IN_CLUSTER" == 1 ]] && what=" (in-cluster networking)"
    log "real node $REAL_NODE_NAME: already up$what"
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
  local netns=() in_cluster_pid=""
  if [[ "$IN_CLUSTER" == 1 ]]; then
    touch "$NODE_DIR/in-cluster"
    in_cluster_net_up
    record_host_services
    # The bridges, kube-proxy and CoreDNS start while containerd and the kubelet do.
    ( in_cluster_bridges_up && bridged_list >"$NODE_DIR/bridged" && in_cluster_services_start ) &
    in_cluster_pid=$!
    # nsenter, not `ip netns exec`: that remounts /sys and hides the cgroup v1 hierarchies.
    netns=(nsenter --net="$NETNS_FILE")
  fi
  start containerd "${netns[@]}" unshare --mount --propagation unchanged "$NODE_DIR/shield/enter" \
    containerd --config "$NODE_DIR/containerd/config.toml"
  wait_for "containerd on $CONTAINERD_SOCK" 60 containerd ctr_ version
  ctr_ images import "$pause_tar" >/dev/null || die "could not import the pause image into containerd"
  start kubelet unshare --mount --propagation unchanged "$NODE_DIR/shield/enter" \
    "$K8S_BIN/kubelet" --config="$NODE_DIR/kubelet-config/config.yaml" \
    --kubeconfig="$NODE_DIR/kubelet-config/kubeconfig" --root-dir="$NODE_DIR/kubelet" \
    --cert-dir="$NODE_DIR/kubelet-config/pki" --hostname-override="$REAL_NODE_NAME" \
    --node-labels="$REAL_NODE_LABEL=true" --v=1
  if [[ -n "$in_cluster_pid" ]]; then wait "$in_cluster_pid" || die "in-cluster networking did not start (see above)"; fi
  wait_for "node $REAL_NODE_NAME to be Ready" 120 kubelet real_node_ready
  local what=""
  if [[ "$IN_CLUSTER" == 1 ]]; then
    in_cluster_services_wait
    what="; in-cluster networking: namespace $NETNS_FILE, kube-proxy, CoreDNS at $CLUSTER_DNS_IP"
  fi
  log "real node $REAL_NODE_NAME Ready in $((SECONDS - t0))s (label $REAL_NODE_LABEL=true, taint $REAL_NODE_LABEL=true:NoSchedule$what)"
}

# Everything the node left on the machine, in reverse order of creation.
real_node_down_quiet() {
  [[ -d "$NODE_DIR" ]] || { ip link del "$REAL_NODE_BRIDGE" 2>/dev/null || true; ip link del "$LINK_HOST" 2>/dev/null || true; return 0; }
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
  in_cluster_down
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
