# Teardown of the node (tests/env/down) and of what a killed run left behind
# (tests/env/up --node, before it starts). Sourced after common.sh and node.sh.

NODE_CHAIN_PATTERN='KUBE-|CNI-'
# Mount points the node leaves: the kubelet bind-mounts its root onto itself,
# containerd mounts rootfs overlays and shm, CNI pins network namespaces.
NODE_MOUNT_ROOTS=(/var/lib/kubelet /run/containerd /var/lib/containerd /run/netns)

# Deletes every pod with a short grace while the kubelet still runs, so that the
# kubelet stops their containers and releases their volumes and networks.
drain_node() {
  component_running kubelet && component_running kube-apiserver || return 0
  kubectl_admin delete pods --all --all-namespaces --grace-period=2 --wait=false >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 45))
  while ((SECONDS < deadline)); do
    [[ -z "$(kubectl_admin get pods --all-namespaces -o name 2>/dev/null)" ]] && return 0
    sleep 0.5
  done
  log "pods still present after 45s; removing their containers directly"
}

# Removes the containers containerd still holds (a drain that timed out, a kubelet that was gone).
remove_cri_containers() {
  [[ -S "$NODE_CONTAINERD_SOCKET" ]] || return 0
  local ctr_k8s=(ctr -a "$NODE_CONTAINERD_SOCKET" -n k8s.io) id
  for id in $("${ctr_k8s[@]}" tasks ls -q 2>/dev/null); do
    "${ctr_k8s[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    "${ctr_k8s[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
  done
  for id in $("${ctr_k8s[@]}" containers ls -q 2>/dev/null); do
    "${ctr_k8s[@]}" containers delete "$id" >/dev/null 2>&1 || true
  done
}

# Kills every process left in the kubelet's pod cgroups and removes those cgroups,
# deepest first (a killed run leaves its containers running without a containerd).
remove_pod_cgroups() {
  local controller dir pid
  for controller in /sys/fs/cgroup/*/; do
    [[ -d "$controller/kubepods" ]] || continue
    while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done \
      < <(find "$controller/kubepods" -name cgroup.procs -exec cat {} + 2>/dev/null)
  done
  pkill -KILL -f 'containerd-shim-runc-v2 .*-namespace k8s.io' 2>/dev/null || true
  sleep 0.2
  for controller in /sys/fs/cgroup/*/; do
    [[ -d "$controller/kubepods" ]] || continue
    find "$controller/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

unmount_node_paths() {
  local root mountpoint
  for root in "${NODE_MOUNT_ROOTS[@]}"; do
    # Deepest first; a path can be mounted more than once (the kubelet's self bind-mount).
    for _ in 1 2 3; do
      while read -r mountpoint; do
        umount "$mountpoint" 2>/dev/null || umount -l "$mountpoint" 2>/dev/null || true
      done < <(awk -v root="$root" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/self/mounts | sort -r)
    done
  done
  rm -f /run/netns/cni-* 2>/dev/null || true
}

# Removes the KUBE-* and CNI-* chains and every rule that jumps to them, in every table,
# for IPv4 and IPv6; the machine's own rules are written back as they were.
remove_node_iptables() {
  local save restore rules
  for family in iptables ip6tables; do
    save="$family-save" restore="$family-restore"
    command -v "$save" >/dev/null || continue
    rules="$("$save" 2>/dev/null)" || continue
    grep -qE "$NODE_CHAIN_PATTERN" <<<"$rules" || continue
    grep -vE "$NODE_CHAIN_PATTERN" <<<"$rules" | "$restore" 2>/dev/null \
      || log "could not rewrite the $family rules without the node's chains"
  done
}

restore_sysctls() {
  local saved=/run/silo-node/sysctl.orig forward bridge
  [[ -f "$saved" ]] || return 0
  read -r forward bridge <"$saved"
  sysctl -qw "net.ipv4.ip_forward=$forward" "net.bridge.bridge-nf-call-iptables=$bridge" 2>/dev/null || true
}

# Everything machine-wide the node leaves, in an order that works with or without
# live processes: what a clean stop leaves, and what a killed run leaves.
node_cleanup_leftovers() {
  remove_cri_containers
  stop_component containerd
  remove_pod_cgroups
  unmount_node_paths
  "$KUBE_BIN_DIR/kube-proxy" --cleanup >/dev/null 2>&1 || true
  remove_node_iptables
  ip link delete "$NODE_BRIDGE" 2>/dev/null || true
  clean_cluster_dns
  restore_sysctls
  rm -rf "${NODE_STATE_DIRS[@]}" "$SILO_ENV_DIR/node"
}

# What is left of a node on this machine, one line each; nothing when clean.
node_leftovers() {
  local proc root
  for proc in kubelet containerd kube-proxy kube-scheduler containerd-shim-runc-v2 silo-cluster-dns; do
    node_process "$proc" >/dev/null && echo "process: $proc ($(node_process "$proc" | paste -sd,))"
  done
  for root in "${NODE_MOUNT_ROOTS[@]}"; do
    awk -v root="$root" '$2 == root || index($2, root "/") == 1 { print "mount: " $2 }' /proc/self/mounts
  done
  for family in iptables-save ip6tables-save; do
    command -v "$family" >/dev/null || continue
    "$family" 2>/dev/null | grep -E "^:($NODE_CHAIN_PATTERN)" | sed "s/^:\([^ ]*\).*/$family chain: \1/"
  done
  pgrep -f '^dnsmasq .*--hostsdir=.*/silo-cluster-dns' >/dev/null && echo "process: the cluster's dnsmasq"
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && echo "bridge: $NODE_BRIDGE"
  ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null | sed 's/^/cgroup: /'
  for root in "${NODE_STATE_DIRS[@]}"; do [[ -e "$root" ]] && echo "directory: $root"; done
  grep -q '^# BEGIN silo-cluster-dns' /etc/hosts 2>/dev/null && echo "/etc/hosts: silo-cluster-dns block"
  return 0
}

# node_process <binary>: PIDs of processes running that binary (by command line, since
# the kernel truncates process names to 15 characters).
node_process() { pgrep -f "^(\S*/)?$1( |\$)"; }
