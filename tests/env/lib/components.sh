# Starts the local components. Each start_* function records its PID in
# $SILO_ENV_DIR/<component>.pid and its log in $SILO_ENV_DIR/logs/<component>.log.

# spawn <component> <command...>: runs the command detached, in its own session.
spawn() {
  local component="$1"; shift
  setsid "$@" >"$SILO_ENV_DIR/logs/$component.log" 2>&1 </dev/null &
  echo $! >"$SILO_ENV_DIR/$component.pid"
}

# A temp dir that tests/env/down removes.
make_temp_dir() {
  local dir; dir="$(mktemp -d "${TMPDIR:-/tmp}/silo-$1.XXXXXX")"
  echo "$dir" >>"$SILO_ENV_DIR/tmpdirs"
  echo "$dir"
}

generate_certificates() {
  local pki="$SILO_ENV_DIR/pki"
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=silo-local-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    # With a node, pods reach the API server through the kubernetes Service's ClusterIP
    # (the first address of the service range) and the node's address.
    local san="IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc"
    [[ -n "${NODE_IP:-}" ]] && san+=",DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1,IP:$NODE_IP"
    printf '%s\n' "subjectAltName=$san" \
      "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  ) || die "could not generate the API server's certificates (openssl)"
}

# write_kubeconfig <file> <token> <port>
write_kubeconfig() {
  local file="$1" token="$2" port="$3"
  cat >"$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: silo-local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 "$SILO_ENV_DIR/pki/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: silo-local
  context: {cluster: silo-local, user: admin}
current-context: silo-local
KUBECONFIG
  chmod 600 "$file"
}

start_etcd() {
  ETCD_PORT="$(free_port)"
  local peer_port; peer_port="$(free_port)"
  local data; data="$(make_temp_dir etcd)"
  spawn etcd etcd --name silo --data-dir "$data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "silo=http://127.0.0.1:$peer_port" --unsafe-no-fsync
  wait_until etcd "$SILO_ENV_DIR/logs/etcd.log" 60 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
}

# Without a node the API server is reachable on loopback only. With one, pods reach it
# at the advertised node address; the Node authorizer and NodeRestriction confine the
# kubelet to its own node, and the API server calls the kubelet with its own certificate.
apiserver_node_flags() {
  local pki="$SILO_ENV_DIR/pki"
  if [[ -z "${NODE_IP:-}" ]]; then
    APISERVER_NODE_FLAGS=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --authorization-mode RBAC)
    return
  fi
  APISERVER_NODE_FLAGS=(--bind-address 0.0.0.0 --advertise-address "$NODE_IP"
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt"
    --kubelet-client-key "$pki/apiserver-kubelet-client.key"
    --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP)
}

start_apiserver() {
  API_PORT="$(free_port)"
  apiserver_node_flags
  ADMIN_TOKEN="$(openssl rand -hex 32)"
  local controller_token; controller_token="$(openssl rand -hex 32)"
  local pki="$SILO_ENV_DIR/pki"
  printf '%s,admin,admin,"system:masters"\n%s,system:kube-controller-manager,kcm,"system:masters"\n' \
    "$ADMIN_TOKEN" "$controller_token" >"$pki/tokens.csv"
  chmod 600 "$pki/tokens.csv"
  spawn kube-apiserver "$KUBE_BIN_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" "${APISERVER_NODE_FLAGS[@]}" \
    --secure-port "$API_PORT" --insecure-port 0 \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer "https://kubernetes.default.svc" --api-audiences "https://kubernetes.default.svc" \
    --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true \
    --cert-dir "$pki" --profiling=false --logtostderr=true --v=1
  write_kubeconfig "$SILO_ENV_DIR/kubeconfig" "$ADMIN_TOKEN" "$API_PORT"
  write_kubeconfig "$SILO_ENV_DIR/controller-manager.kubeconfig" "$controller_token" "$API_PORT"
  wait_until kube-apiserver "$SILO_ENV_DIR/logs/kube-apiserver.log" 120 \
    curl -fsS --cacert "$pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "https://127.0.0.1:$API_PORT/readyz"
}

start_controller_manager() {
  local pki="$SILO_ENV_DIR/pki" port; port="$(free_port)"
  # With a node, the built-in host-path provisioner backs the default StorageClass.
  local provisioner=()
  [[ -n "${NODE_IP:-}" ]] && provisioner=(--enable-hostpath-provisioner=true)
  spawn kube-controller-manager "$KUBE_BIN_DIR/kube-controller-manager" \
    --kubeconfig "$SILO_ENV_DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$SILO_ENV_DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$SILO_ENV_DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$port" --port 0 --leader-elect=false \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cert-dir "$(make_temp_dir kcm-certs)" "${provisioner[@]}" --logtostderr=true --v=1
  wait_until kube-controller-manager "$SILO_ENV_DIR/logs/kube-controller-manager.log" 60 \
    curl -fsSk "https://127.0.0.1:$port/healthz"
}

start_postgres() {
  PG_PORT="$(free_port)"
  PG_PASSWORD="$(openssl rand -hex 24)"
  local bin; bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
  [[ -x "$bin/initdb" ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
  local dir; dir="$(make_temp_dir postgres)"
  local as_user=()
  if [[ $EUID -eq 0 ]]; then
    chown postgres: "$dir"
    as_user=(runuser -u postgres --)
  fi
  printf '%s\n' "$PG_PASSWORD" >"$dir/pwfile"
  [[ $EUID -eq 0 ]] && chown postgres: "$dir/pwfile"
  "${as_user[@]}" "$bin/initdb" -D "$dir/data" -U silo_admin --pwfile "$dir/pwfile" \
    --auth-host scram-sha-256 --auth-local peer -E UTF8 --locale C.UTF-8 \
    >"$SILO_ENV_DIR/logs/postgres-initdb.log" 2>&1 || die "initdb failed; see $SILO_ENV_DIR/logs/postgres-initdb.log"
  rm -f "$dir/pwfile"
  # Throwaway cluster: durability off, many connections for parallel tests.
  "${as_user[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 -c shared_buffers=256MB -c log_min_messages=warning" \
    >"$SILO_ENV_DIR/logs/postgres.log" 2>&1 || { cat "$dir/server.log" >>"$SILO_ENV_DIR/logs/postgres.log" 2>/dev/null; die "postgres did not start; see $SILO_ENV_DIR/logs/postgres.log"; }
  head -n1 "$dir/data/postmaster.pid" >"$SILO_ENV_DIR/postgres.pid"
  ln -sf "$dir/server.log" "$SILO_ENV_DIR/logs/postgres-server.log"
  wait_until postgres "$SILO_ENV_DIR/logs/postgres.log" 60 "$bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT"
}

start_nats() {
  NATS_PORT="$(free_port)"
  local monitor_port; monitor_port="$(free_port)"
  local store; store="$(make_temp_dir nats)"
  spawn nats nats-server -a 127.0.0.1 -p "$NATS_PORT" -m "$monitor_port" -js -sd "$store"
  wait_until nats "$SILO_ENV_DIR/logs/nats.log" 30 curl -fsS "http://127.0.0.1:$monitor_port/healthz"
}

write_env_file() {
  local mongodb_line="# SILO_MONGODB_URL: no mongod on PATH and none given; MongoDB tests are skipped"
  if [[ -n "${SILO_MONGODB_URL:-}" ]]; then
    mongodb_line="export SILO_MONGODB_URL='$SILO_MONGODB_URL'"
  elif command -v mongod >/dev/null 2>&1; then
    start_mongod
    mongodb_line="export SILO_MONGODB_URL='mongodb://127.0.0.1:$MONGO_PORT/?replicaSet=silo&directConnection=true'"
  fi
  local node_line="# SILO_NODE_IP: no node (start one with tests/env/up --node); tests that need pods are skipped"
  [[ -n "${NODE_IP:-}" ]] && node_line="export SILO_NODE_IP='$NODE_IP'"
  cat >"$SILO_ENV_DIR/env.sh" <<ENV
# Written by tests/env/up; source it to talk to the local environment.
export SILO_ENV_DIR='$SILO_ENV_DIR'
export KUBECONFIG='$SILO_ENV_DIR/kubeconfig'
export SILO_POSTGRES_ADMIN_URL='postgres://silo_admin:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres'
export SILO_NATS_URL='nats://127.0.0.1:$NATS_PORT'
$mongodb_line
export PATH="$TOOLS_BIN_DIR:$KUBE_BIN_DIR:\$PATH"
$node_line
ENV
  chmod 600 "$SILO_ENV_DIR/env.sh"
}

# Only when a mongod binary is on PATH: a single-node replica set (transactions need one).
start_mongod() {
  MONGO_PORT="$(free_port)"
  local data; data="$(make_temp_dir mongodb)"
  spawn mongodb mongod --bind_ip 127.0.0.1 --port "$MONGO_PORT" --dbpath "$data" --replSet silo
  wait_until mongodb "$SILO_ENV_DIR/logs/mongodb.log" 60 \
    mongosh --quiet --port "$MONGO_PORT" --eval 'try { rs.status().ok } catch (e) { rs.initiate({_id: "silo", members: [{_id: 0, host: "127.0.0.1:'"$MONGO_PORT"'"}]}).ok }'
}
