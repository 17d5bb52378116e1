# One real node for the local environment (tests/env/up --node): containerd,
# kubelet, kube-scheduler and kube-proxy, each with its own identity signed by
# the environment's CA, plus the default StorageClass. Sourced, never executed.
# The teardown side lives in node-teardown.sh.

NODE_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack iproute2 dnsutils)
NODE_BINARIES=(kubelet kube-scheduler kube-proxy)
NODE_COMPONENTS=(containerd kubelet kube-scheduler kube-proxy)
# Machine-wide paths of the node. Conventional locations, so that `ctr`, `crictl`
# and users find them; tests/env/down removes them all.
NODE_CONTAINERD_SOCKET=/run/containerd/containerd.sock
NODE_STATE_DIRS=(/var/lib/kubelet /var/lib/containerd /run/containerd /var/lib/cni
  /var/log/pods /var/log/containers /tmp/hostpath_pv /run/silo-node)
NODE_POD_CIDR=10.244.0.0/24
NODE_BRIDGE=cni0
PAUSE_IMAGE="localhost/silo/pause:3.4.1"

install_node_packages() {
  local missing=()
  for p in "${NODE_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing Debian packages for the node: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends \
    "${missing[@]}" >"$SILO_CACHE/apt-install-node.log" 2>&1 \
    || die "apt-get install failed; see $SILO_CACHE/apt-install-node.log"
  # The package enables a system containerd; the node runs its own with its own config.
  systemctl disable --now containerd >/dev/null 2>&1 || true
}

# The address the node is known by: the source address of the default route. The
# node is named after it, because the API server dials the kubelet by node name.
detect_node_ip() {
  NODE_IP="$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n1)"
  [[ -n "$NODE_IP" ]] || die "no IPv4 default route: the node needs an address pods can reach"
}

build_node_binaries() {
  local missing=() cmd
  for cmd in "${NODE_BINARIES[@]}"; do [[ -x "$KUBE_BIN_DIR/$cmd" ]] || missing+=("$cmd"); done
  ((${#missing[@]} == 0)) && return 0
  local tree; tree="$(kubernetes_source_tree)"
  for cmd in "${missing[@]}"; do
    log "building $cmd from source (under a minute each with the API server's build cache; cached afterwards)"
    (cd "$tree" && env GOPATH="$tree/.go" CGO_ENABLED=0 HOME="$SILO_CACHE/src/home" PATH="/usr/lib/go/bin:$PATH" \
        make WHAT="cmd/$cmd" >"$SILO_CACHE/src/build-$cmd.log" 2>&1) \
      || die "building $cmd failed; see $SILO_CACHE/src/build-$cmd.log"
    install -m 0755 "$tree/_output/bin/$cmd" "$KUBE_BIN_DIR/$cmd"
  done
}

# issue_certificate <name> <subject> <extendedKeyUsage> [subjectAltName]: a key and
# certificate signed by the environment's CA, in $SILO_ENV_DIR/pki/<name>.{key,crt}.
issue_certificate() {
  local name="$1" subject="$2" usage="$3" san="${4:-}" pki="$SILO_ENV_DIR/pki"
  (
    cd "$pki"
    openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subject" 2>/dev/null
    {
      echo "basicConstraints=CA:FALSE"
      echo "keyUsage=digitalSignature,keyEncipherment"
      echo "extendedKeyUsage=$usage"
      [[ -n "$san" ]] && echo "subjectAltName=$san"
    } >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out "$name.crt" -days 3650 -extfile "$name.ext" 2>/dev/null
    chmod 600 "$name.key"
    rm -f "$name.csr" "$name.ext"
  ) || die "could not issue the certificate $name (openssl)"
}

# Identities of the node's components: the kubelet as system:node:<ip> in
# system:nodes (the Node authorizer's subject), the kubelet's serving certificate,
# the API server's client certificate for the kubelet API, the scheduler and the proxy.
generate_node_certificates() {
  issue_certificate kubelet-client "/O=system:nodes/CN=system:node:$NODE_IP" clientAuth
  issue_certificate kubelet-serving "/CN=$NODE_IP" serverAuth "IP:$NODE_IP"
  issue_certificate apiserver-kubelet-client "/CN=silo-apiserver-kubelet-client" clientAuth
  issue_certificate kube-scheduler "/CN=system:kube-scheduler" clientAuth
  issue_certificate kube-proxy "/CN=system:kube-proxy" clientAuth
}

# write_cert_kubeconfig <file> <certificate name>: a kubeconfig that logs in with a client certificate.
write_cert_kubeconfig() {
  local file="$1" name="$2" pki="$SILO_ENV_DIR/pki"
  cat >"$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: silo-local
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $name
  user:
    client-certificate: $pki/$name.crt
    client-key: $pki/$name.key
contexts:
- name: silo-local
  context: {cluster: silo-local, user: $name}
current-context: silo-local
KUBECONFIG
  chmod 600 "$file"
}

# The pause image, built from the same Kubernetes tree, as a one-layer OCI archive
# written by hand (no registry, no builder needed). Cached by the source's digest.
build_pause_image() {
  local src; src="$(kubernetes_source_tree)/build/pause/linux/pause.c"
  local dir="$SILO_CACHE/images/pause" archive="$SILO_CACHE/images/pause.oci.tar"
  local stamp; stamp="$(sha256sum "$src" | cut -c1-16)"
  [[ -f "$archive" && "$(cat "$dir.stamp" 2>/dev/null)" == "$stamp" ]] && return 0
  rm -rf "$dir" && mkdir -p "$dir/rootfs" "$dir/oci/blobs/sha256"
  gcc -Os -static -DVERSION="${PAUSE_IMAGE##*:}" -o "$dir/rootfs/pause" "$src" 2>"$dir/gcc.log" \
    || die "compiling pause.c failed; see $dir/gcc.log"
  tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$dir/rootfs" -cf "$dir/layer.tar" pause
  local layer config manifest
  layer="$(oci_blob "$dir" "$dir/layer.tar")"
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "${layer%:*}" >"$dir/config.json"
  config="$(oci_blob "$dir" "$dir/config.json")"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "${config%:*}" "${config#*:}" "${layer%:*}" "${layer#*:}" >"$dir/manifest.json"
  manifest="$(oci_blob "$dir" "$dir/manifest.json")"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "${manifest%:*}" "${manifest#*:}" "$PAUSE_IMAGE" "${PAUSE_IMAGE##*:}" >"$dir/oci/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci/oci-layout"
  tar -C "$dir/oci" -cf "$archive" oci-layout index.json blobs
  echo "$stamp" >"$dir.stamp"
}

# oci_blob <dir> <file>: stores the file as a content-addressed blob; prints <sha256>:<size>.
oci_blob() {
  local digest size
  digest="$(sha256sum "$2" | cut -d' ' -f1)"
  size="$(stat -c %s "$2")"
  cp "$2" "$1/oci/blobs/sha256/$digest"
  echo "$digest:$size"
}

kubernetes_source_tree() {
  local tree; tree="$(find "$SILO_CACHE/src" -maxdepth 1 -type d -name "kubernetes-*${KUBE_VERSION}" | head -n1)"
  [[ -n "$tree" ]] || die "the kubernetes $KUBE_VERSION source tree is missing from $SILO_CACHE/src"
  echo "$tree"
}

# Kernel settings pods need; the values found are kept so down can restore them.
enable_pod_networking() {
  # Kept machine-wide, so that the cleanup after a killed run restores them too.
  [[ -f /run/silo-node/sysctl.orig ]] || sysctl -n net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables \
    | paste -sd' ' >/run/silo-node/sysctl.orig
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 \
    || die "could not enable IP forwarding and bridge netfilter (sysctl)"
}

write_containerd_config() {
  local dir="$SILO_ENV_DIR/node"
  mkdir -p "$dir/cni"
  # restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and without it every
  # sandbox fails in runc ("can't get final child's PID from pipe").
  cat >"$dir/containerd.toml" <<TOML
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "$NODE_CONTAINERD_SOCKET"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
TOML
  cat >"$dir/cni/10-silo.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "silo",
  "plugins": [
    {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$NODE_POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

start_containerd() {
  write_containerd_config
  mkdir -p /run/silo-node
  spawn containerd containerd --config "$SILO_ENV_DIR/node/containerd.toml"
  wait_until containerd "$SILO_ENV_DIR/logs/containerd.log" 30 \
    ctr -a "$NODE_CONTAINERD_SOCKET" version
  ctr -a "$NODE_CONTAINERD_SOCKET" -n k8s.io images import "$SILO_CACHE/images/pause.oci.tar" \
    >"$SILO_ENV_DIR/logs/pause-import.log" 2>&1 || die "importing the pause image failed; see $SILO_ENV_DIR/logs/pause-import.log"
}

write_kubelet_config() {
  local pki="$SILO_ENV_DIR/pki"
  # syncFrequency 5s: with the default minute, kubelet 1.20 and containerd 1.6 disagree
  # on NotFound for removed containers and every pod deletion takes about 65 s.
  cat >"$SILO_ENV_DIR/node/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
cgroupDriver: cgroupfs
failSwapOn: false
syncFrequency: 5s
# Reports Ready within a couple of seconds of being ready, not at the next 10 s update.
nodeStatusUpdateFrequency: 2s
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
serializeImagePulls: false
evictionHard: {nodefs.available: "1%", imagefs.available: "1%", memory.available: "100Mi"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
YAML
}

start_kubelet() {
  write_kubelet_config
  write_cert_kubeconfig "$SILO_ENV_DIR/node/kubelet.kubeconfig" kubelet-client
  KUBELET_STARTED_AT=$SECONDS
  spawn kubelet "$KUBE_BIN_DIR/kubelet" --config "$SILO_ENV_DIR/node/kubelet.yaml" \
    --kubeconfig "$SILO_ENV_DIR/node/kubelet.kubeconfig" \
    --container-runtime remote --container-runtime-endpoint "unix://$NODE_CONTAINERD_SOCKET" \
    --pod-infra-container-image "$PAUSE_IMAGE" \
    --hostname-override "$NODE_IP" --node-ip "$NODE_IP" --root-dir /var/lib/kubelet \
    --logtostderr=true --v=1
  wait_until kubelet "$SILO_ENV_DIR/logs/kubelet.log" 60 curl -fsS http://127.0.0.1:10248/healthz
}

start_scheduler() {
  local kubeconfig="$SILO_ENV_DIR/node/kube-scheduler.kubeconfig" port; port="$(free_port)"
  write_cert_kubeconfig "$kubeconfig" kube-scheduler
  spawn kube-scheduler "$KUBE_BIN_DIR/kube-scheduler" --kubeconfig "$kubeconfig" \
    --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$port" --port 0 --leader-elect=false \
    --logtostderr=true --v=1
  wait_until kube-scheduler "$SILO_ENV_DIR/logs/kube-scheduler.log" 60 curl -fsSk "https://127.0.0.1:$port/healthz"
}

start_proxy() {
  local kubeconfig="$SILO_ENV_DIR/node/kube-proxy.kubeconfig"
  write_cert_kubeconfig "$kubeconfig" kube-proxy
  # conntrack.maxPerCore 0: leave the machine's conntrack table size alone.
  cat >"$SILO_ENV_DIR/node/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $NODE_POD_CIDR
hostnameOverride: $NODE_IP
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection: {kubeconfig: $kubeconfig}
conntrack: {maxPerCore: 0}
YAML
  spawn kube-proxy "$KUBE_BIN_DIR/kube-proxy" --config "$SILO_ENV_DIR/node/kube-proxy.yaml" \
    --logtostderr=true --v=1
  wait_until kube-proxy "$SILO_ENV_DIR/logs/kube-proxy.log" 60 curl -fsS http://127.0.0.1:10256/healthz
}

# Cluster objects the node needs: the API server's right to use the kubelet API
# (through RBAC, not system:masters) and the default StorageClass, whose claims the
# controller manager's built-in host-path provisioner binds.
apply_node_objects() {
  kubectl_admin apply -f - >/dev/null <<YAML || die "could not apply the node's cluster objects"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: silo-apiserver-kubelet-client}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kubelet-api-admin"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: silo-apiserver-kubelet-client}]
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
YAML
}

kubectl_admin() { KUBECONFIG="$SILO_ENV_DIR/kubeconfig" "$TOOLS_BIN_DIR/kubectl" "$@"; }

wait_node_ready() {
  wait_until kubelet "$SILO_ENV_DIR/logs/kubelet.log" 120 \
    bash -c "[[ \"\$(KUBECONFIG='$SILO_ENV_DIR/kubeconfig' '$TOOLS_BIN_DIR/kubectl' get node '$NODE_IP' \
      -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}')\" == True ]]"
  log "node $NODE_IP Ready $((SECONDS - KUBELET_STARTED_AT))s after the kubelet started"
}

# Refuses to start when another node environment owns the machine-wide state.
claim_node() {
  local owner=/run/silo-node/owner pid
  for proc in kubelet containerd kube-proxy; do
    pid="$(node_process "$proc" | head -n1 || true)"
    [[ -z "$pid" ]] && continue
    die "another node environment is running ($proc, pid $pid, started from $(cat "$owner" 2>/dev/null || echo 'outside Silo')); \
only one can run per machine: stop it with its tests/env/down"
  done
  node_cleanup_leftovers
  mkdir -p /run/silo-node "$SILO_ENV_DIR/node"
  echo "$SILO_ENV_DIR" >"$owner"
}

# Runs after the control plane is up; claim_node and the certificates come before it.
start_node() {
  enable_pod_networking
  build_pause_image
  start_containerd
  apply_node_objects
  start_kubelet
  start_scheduler
  start_proxy
  start_cluster_dns "$NODE_IP"
  wait_node_ready
}
