# Cluster DNS for the node: Debian's dnsmasq answers <svc>.<ns>.svc.cluster.local (and the
# short <svc>.<ns>.svc) from a hosts directory that silo-cluster-dns (tests/cluster-dns)
# fills from the API server's Services and Endpoints; every other name goes to the host's
# resolver. The host itself resolves the same names through a marked block the watcher keeps
# in /etc/hosts; /etc/resolv.conf is never touched, so a killed run cannot leave the machine
# without DNS. Sourced after common.sh and components.sh, never executed.

CLUSTER_DNS_DOMAIN="cluster.local"
CLUSTER_DNS_ETC_HOSTS="/etc/hosts"
CLUSTER_DNS_BLOCK_BEGIN="# BEGIN silo-cluster-dns"

_cluster_dns_bin() {
  echo "${CARGO_TARGET_DIR:-$SILO_ROOT/target}/debug/silo-cluster-dns"
}

# dnsmasq-base is the server alone (the dnsmasq package would start a system daemon on
# port 53); dnsutils gives dig for the readiness check and the tests.
install_dns_packages() {
  local missing=() p
  for p in dnsmasq-base dnsutils; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  [[ $EUID -eq 0 ]] || die "missing Debian packages (${missing[*]}); run tests/env/up as root once to install them"
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >"$SILO_CACHE/apt-install-dns.log" 2>&1 \
    || die "apt-get install failed; see $SILO_CACHE/apt-install-dns.log"
}

build_cluster_dns() {
  local build_log="$SILO_CACHE/cluster-dns-build.log"
  mkdir -p "$SILO_CACHE"
  (cd "$SILO_ROOT" && cargo build --locked -p silo-cluster-dns) >"$build_log" 2>&1 || {
    tail -n 20 "$build_log" >&2
    die "cargo build -p silo-cluster-dns failed; see $build_log"
  }
}

# True when dnsmasq at <ip> <port> answers <name> with at least one address.
_cluster_dns_resolves() {
  [[ -n "$(dig @"$1" -p "$2" +short +time=1 +tries=1 "$3" 2>/dev/null)" ]]
}

# start_cluster_dns <node-ip> [port]: dnsmasq on <node-ip>:53 (pods' nameserver, the
# kubelet's clusterDNS) and the watcher that feeds it and /etc/hosts. Returns once
# kubernetes.default.svc.cluster.local resolves through dnsmasq.
start_cluster_dns() {
  local node_ip="$1" port="${2:-53}" kubernetes="kubernetes.default.svc.$CLUSTER_DNS_DOMAIN"
  local bin; bin="$(_cluster_dns_bin)"
  [[ -x "$bin" ]] || die "$bin is missing; build_cluster_dns builds it"
  local dir; dir="$(make_temp_dir cluster-dns)"
  mkdir -p "$dir/hosts.d"
  # --local answers cluster.local and svc from the hosts files only (a search-path miss is an
  # instant NXDOMAIN, never a trip upstream); --domain-needed and --bogus-priv keep
  # single-label names and private reverse lookups local too. Records carry TTL 0 (dnsmasq's
  # --local-ttl default), so a changed Service is never served stale from a client cache.
  # Root because the hosts directory is a 0700 temp dir.
  spawn dnsmasq dnsmasq --keep-in-foreground --conf-file=/dev/null --log-facility=- \
    --user=root --pid-file="$dir/dnsmasq.pid" \
    --listen-address="$node_ip" --bind-interfaces --port="$port" \
    --no-hosts --hostsdir="$dir/hosts.d" \
    --local="/$CLUSTER_DNS_DOMAIN/" --local=/svc/ --domain-needed --bogus-priv \
    --resolv-file=/etc/resolv.conf --cache-size=1000
  # dig exits 0 on any answer, NXDOMAIN included: the server is listening.
  wait_until dnsmasq "$SILO_ENV_DIR/logs/dnsmasq.log" 15 \
    dig @"$node_ip" -p "$port" +time=1 +tries=1 "$kubernetes"
  spawn cluster-dns env KUBECONFIG="$SILO_ENV_DIR/kubeconfig" "$bin" watch \
    --hosts-dir "$dir/hosts.d" --etc-hosts "$CLUSTER_DNS_ETC_HOSTS" --cluster-domain "$CLUSTER_DNS_DOMAIN"
  wait_until cluster-dns "$SILO_ENV_DIR/logs/cluster-dns.log" 30 \
    _cluster_dns_resolves "$node_ip" "$port" "$kubernetes"
}

# Removes the records a killed watcher left in /etc/hosts (a watcher stopped with SIGTERM
# removes them itself). Safe to call at any time; never fails teardown.
clean_cluster_dns() {
  grep -qxF "$CLUSTER_DNS_BLOCK_BEGIN" "$CLUSTER_DNS_ETC_HOSTS" 2>/dev/null || return 0
  local bin; bin="$(_cluster_dns_bin)"
  if [[ -x "$bin" ]] && "$bin" remove-etc-hosts-block --etc-hosts "$CLUSTER_DNS_ETC_HOSTS" >/dev/null 2>&1; then
    log "removed the silo-cluster-dns block from $CLUSTER_DNS_ETC_HOSTS"
  else
    log "WARNING: could not remove the silo-cluster-dns block from $CLUSTER_DNS_ETC_HOSTS" \
      "(the next watcher replaces it; or delete the lines from '$CLUSTER_DNS_BLOCK_BEGIN' to '# END silo-cluster-dns')"
  fi
}
