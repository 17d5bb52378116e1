# shellcheck shell=bash
# The booking system on a cluster: the operator installed from charts/silo, the example
# applied for this run, port-forwards to the services, probe pods, and the teardown.
# Sourced after common.sh, never executed. The caller sets:
#   NS               namespace of the booking system (the example's `booking`, rewritten)
#   OP_NS            namespace of the Helm release (the operator, its Lease)
#   RELEASE          Helm release name; the operator's objects are named <RELEASE>-operator
#   LEASE            the leader Lease's name, in OP_NS
#   SERVER_SELECTOR  key=value: the operator reconciles only DatabaseServers with this label
#                    (the example's shared server gets it), so it leaves other tests' alone
#   EXAMPLE_FILE     the example manifest, relative to the repository root
#   OPERATOR_REPLICAS
#   WORK             a scratch directory the caller removes
# and exports the images (tests/images/build's images.env names them): SILO_OPERATOR_IMAGE,
# SILO_<SERVICE>_IMAGE for each Service of the example (SILO_USER_SERVICE_IMAGE, ...);
# optional: SILO_NATS_IMAGE (else the example's nats image), SILO_POSTGRES_IMAGE_REPOSITORY
# (else the chart's `postgres`), SILO_POSTGRES_IMAGE (the probes' image with psql; else
# <postgres repository>:15).

CHART="$SILO_ROOT/charts/silo"
PROBE_LABEL=silo.dev/e2e-probe
SERVICE_LABEL=silo.dev/service
declare -A SERVICE_URL=() FORWARD_PID=()
SERVICES=()          # the example's Services, by name, once applied
APPLIED_AT=""        # $EPOCHREALTIME when the example was applied
CRDS_PREINSTALLED=false

# Reads the local environment's files when the caller's environment does not say otherwise:
# the kubeconfig of tests/env/up when KUBECONFIG is unset, images.env when the images are unset.
load_local_settings() {
  local env_file="$SILO_ROOT/target/silo-env/env.sh" images_file="$SILO_ROOT/target/silo-env/images.env"
  if [[ -z "${KUBECONFIG:-}" && -f "$env_file" ]]; then
    # shellcheck disable=SC1090
    source "$env_file"
  fi
  if [[ -z "${SILO_OPERATOR_IMAGE:-}" && -f "$images_file" ]]; then
    # shellcheck disable=SC1090
    source "$images_file"
  fi
}

# The variable naming a service's image: user-service -> SILO_USER_SERVICE_IMAGE (the names
# tests/images/build writes).
image_variable() { echo "SILO_$(tr 'a-z-' 'A-Z_' <<<"$1")_IMAGE"; }

probe_image() { echo "${SILO_POSTGRES_IMAGE:-${SILO_POSTGRES_IMAGE_REPOSITORY:-postgres}:15}"; }

operator_deployment() { echo "$RELEASE-operator"; }

# The Services the example declares (metadata.name of kind Service, group silo.dev).
example_services() {
  kubectl create --dry-run=client -o json -f "$SILO_ROOT/$EXAMPLE_FILE" \
    | jq -rs '[.[] | if .kind == "List" then .items[] else . end]
        | .[] | select(.kind == "Service" and (.apiVersion | startswith("silo.dev/"))) | .metadata.name'
}

# Checks before anything is created: tools, the cluster, the images.
preflight() {
  require_tools kubectl helm jq python3 || return 1
  local version
  version="$(kubectl version -o json 2>/dev/null | jq -r '.serverVersion.gitVersion // empty')"
  if [[ -z "$version" ]]; then
    say "the API server of ${KUBECONFIG:-~/.kube/config} does not answer"
    return 1
  fi
  say "cluster: $(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}') (Kubernetes $version), kubeconfig ${KUBECONFIG:-~/.kube/config}"
  local missing=() variable
  [[ -n "${SILO_OPERATOR_IMAGE:-}" ]] || missing+=(SILO_OPERATOR_IMAGE)
  for variable in SILO_USER_SERVICE_IMAGE SILO_BOOKING_SERVICE_IMAGE SILO_PAYMENT_SERVICE_IMAGE; do
    [[ -n "${!variable:-}" ]] || missing+=("$variable")
  done
  if ((${#missing[@]} > 0)); then
    say "images not named: ${missing[*]} (tests/images/build writes them to target/silo-env/images.env)"
    return 1
  fi
  say "operator image $SILO_OPERATOR_IMAGE; services $SILO_USER_SERVICE_IMAGE, $SILO_BOOKING_SERVICE_IMAGE, $SILO_PAYMENT_SERVICE_IMAGE"
  say "database servers ${SILO_POSTGRES_IMAGE_REPOSITORY:-postgres}:<version>; NATS ${SILO_NATS_IMAGE:-as in the example}; probes $(probe_image)"
}

# --- The operator --------------------------------------------------------------------------

# helm --set flags for an image reference: repository and tag (or digest).
image_flags() {
  local image="$1"
  if [[ "$image" == *@* ]]; then
    echo "--set image.repository=${image%@*} --set image.digest=${image#*@}"
  elif [[ "${image##*/}" == *:* ]]; then
    echo "--set image.repository=${image%:*} --set image.tag=${image##*:}"
  else
    echo "--set image.repository=$image"
  fi
}

# The helm install command of this run, one word per line (printed, then run).
helm_install_command() {
  local flags
  read -ra flags <<<"$(image_flags "$SILO_OPERATOR_IMAGE")"
  printf '%s\n' helm install "$RELEASE" "$CHART" -n "$OP_NS" --create-namespace "${flags[@]}" \
    --set "replicaCount=$OPERATOR_REPLICAS" --set "watchNamespace=$NS" \
    --set "serverSelector=$SERVER_SELECTOR" --set "leaderElection.leaseName=$LEASE"
  [[ -n "${SILO_POSTGRES_IMAGE_REPOSITORY:-}" ]] \
    && printf '%s\n' --set "databaseImages.postgresRepository=$SILO_POSTGRES_IMAGE_REPOSITORY"
  $CRDS_PREINSTALLED && echo --skip-crds
  return 0
}

operator_pods() {
  kubectl -n "$OP_NS" get pods -l "app.kubernetes.io/name=silo-operator,app.kubernetes.io/instance=$RELEASE" -o json \
    | jq -r '.items[] | select(.status.phase == "Running" and (.metadata.deletionTimestamp | not)) | .metadata.name'
}

lease_holder() { kubectl -n "$OP_NS" get lease "$LEASE" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }

lease_held_by_a_replica() {
  local holder; holder="$(lease_holder)"
  [[ -n "$holder" ]] && operator_pods | grep -qx -- "$holder"
}

# Installs the chart (its CRDs only if the cluster has none: other tests may share them),
# waits for the rollout and for a replica to hold the Lease.
install_operator() {
  if kubectl get crd databases.silo.dev databaseservers.silo.dev services.silo.dev >/dev/null 2>&1; then
    CRDS_PREINSTALLED=true
  fi
  local command=()
  mapfile -t command < <(helm_install_command)
  say "${command[*]}"
  if ! "${command[@]}" >"$WORK/helm-install.out" 2>&1; then
    indent <"$WORK/helm-install.out"
    return 1
  fi
  $CRDS_PREINSTALLED && say "the CRDs were already installed (--skip-crds; they are left in place)"
  # Before 1.21 namespaces carry no kubernetes.io/metadata.name label; the database servers'
  # NetworkPolicies admit the operator's namespace by it (the chart's NOTES say so).
  kubectl label namespace "$OP_NS" "kubernetes.io/metadata.name=$OP_NS" --overwrite >/dev/null || return 1
  if ! kubectl -n "$OP_NS" rollout status "deployment/$(operator_deployment)" --timeout=300s >"$WORK/rollout.out" 2>&1; then
    indent <"$WORK/rollout.out"
    kubectl -n "$OP_NS" describe pods -l "app.kubernetes.io/instance=$RELEASE" | tail -n 30 | indent
    return 1
  fi
  wait_for 60 "a replica holds Lease $OP_NS/$LEASE" lease_held_by_a_replica || return 1
  say "$(operator_pods | wc -l) operator replica(s) Ready; Lease $OP_NS/$LEASE held by $(lease_holder)"
}

# --- The example ---------------------------------------------------------------------------

# The example as one JSON List, rewritten for this run: namespace `booking` becomes $NS (and
# `.booking.svc` in URLs), each Service's image the one its variable names, the NATS image
# $SILO_NATS_IMAGE when set; a DatabaseServer (cluster-scoped) is renamed <NS>-<name> (unless
# $NS is booking), carries
# the label of SERVER_SELECTOR and runs in $NS, or in $OP_NS where the example says the
# operator's silo-system.
example_for_this_run() {
  local images='{}' name variable
  for name in $(example_services); do
    variable="$(image_variable "$name")"
    [[ -n "${!variable:-}" ]] && images="$(jq -c --arg n "$name" --arg i "${!variable}" '. + {($n): $i}' <<<"$images")"
  done
  kubectl create --dry-run=client -o json -f "$SILO_ROOT/$EXAMPLE_FILE" | jq -s \
    --arg ns "$NS" --arg op_ns "$OP_NS" --argjson images "$images" --arg nats "${SILO_NATS_IMAGE:-}" \
    --arg label_key "${SERVER_SELECTOR%%=*}" --arg label_value "${SERVER_SELECTOR#*=}" '
    [.[] | if .kind == "List" then .items[] else . end] as $objects
    | ($objects | map(select(.kind == "DatabaseServer") | .metadata.name)) as $servers
    | def server_name: if $ns != "booking" and (. as $n | $servers | index($n)) then "\($ns)-\(.)" else . end;
    {apiVersion: "v1", kind: "List", items: [$objects[]
      | walk(if type == "string" then gsub("\\.booking\\.svc(?<end>[:/]|$)"; ".\($ns).svc\(.end)") else . end)
      | if .kind == "Namespace" and .metadata.name == "booking" then
          .metadata.name = $ns
          | if .metadata.labels["kubernetes.io/metadata.name"] then .metadata.labels["kubernetes.io/metadata.name"] = $ns else . end
        else . end
      | if .metadata.namespace == "booking" then .metadata.namespace = $ns else . end
      | if .kind == "Service" and (.apiVersion | startswith("silo.dev/")) and $images[.metadata.name] then
          .spec.image = $images[.metadata.name] else . end
      | if .kind == "Deployment" and $nats != "" then
          .spec.template.spec.containers |= map(if (.image | startswith("nats:")) then .image = $nats else . end)
        else . end
      | if .kind == "DatabaseServer" then
          .metadata.name |= server_name
          | .metadata.labels[$label_key] = $label_value
          | if .spec.managed.namespace == "booking" then .spec.managed.namespace = $ns
            elif .spec.managed.namespace == "silo-system" then .spec.managed.namespace = $op_ns else . end
        else . end
      | if .spec.database.template.server.serverRef then .spec.database.template.server.serverRef |= server_name else . end
      | if .kind == "Database" and .spec.server.serverRef then .spec.server.serverRef |= server_name else . end]}'
}

# The example's objects as JSON, without what may differ between the dedicated and the
# shared-server example: the DatabaseServer, each Service's database server, the labels.
example_without_servers() {
  kubectl create --dry-run=client -o json -f "$SILO_ROOT/$1" | jq -s -S '[.[] | if .kind == "List" then .items[] else . end]
    | map(select(.kind != "DatabaseServer") | del(.spec.database.template.server) | del(.metadata.labels))'
}

# The shared-server example is the dedicated one but for its server (one file is not made from
# the other: each applies on its own with kubectl).
examples_agree() {
  local dedicated=examples/booking-system/booking-system.yaml
  [[ "$EXAMPLE_FILE" == "$dedicated" ]] && return 0
  if diff <(example_without_servers "$dedicated") <(example_without_servers "$EXAMPLE_FILE") >"$WORK/examples.diff"; then
    say "$EXAMPLE_FILE is $dedicated but for the database server"
    return 0
  fi
  say "$EXAMPLE_FILE and $dedicated differ beyond the database server (< dedicated, > $EXAMPLE_FILE):"
  indent <"$WORK/examples.diff"
  return 1
}

# Applies the example for this run and checks that nothing of it still names `booking`.
apply_example() {
  example_for_this_run >"$WORK/example.json" || return 1
  if [[ "$NS" != booking ]] && jq -e '[.. | strings | select(test("\\.booking\\.svc"))] + [.items[] | select(.metadata.namespace == "booking" or (.kind == "Namespace" and .metadata.name == "booking"))] | length > 0' \
    "$WORK/example.json" >/dev/null; then
    say "$EXAMPLE_FILE names namespace booking in a way this script does not rewrite"
    return 1
  fi
  mapfile -t SERVICES < <(jq -r '.items[] | select(.kind == "Service" and (.apiVersion | startswith("silo.dev/"))) | .metadata.name' "$WORK/example.json")
  APPLIED_AT="$EPOCHREALTIME"
  kubectl apply -f "$WORK/example.json" | indent
  [[ "${PIPESTATUS[0]}" == 0 ]]
}

service_conditions() {
  kubectl -n "$NS" get services.silo.dev -o json | jq -r '.items[] | .metadata.name as $n
    | (.status.conditions // [])[] | "\($n): \(.type)=\(.status) \(.reason // ""): \(.message // "")"'
}

# Waits until every Service of the example is Ready (its database, pods, policy, isolation).
wait_services_ready() {
  local timeout="${1:-600}" name
  for name in "${SERVICES[@]}"; do
    if ! kubectl -n "$NS" wait --for=condition=Ready "services.silo.dev/$name" --timeout="${timeout}s" >/dev/null 2>&1; then
      say "Service $name is not Ready after ${timeout} s:"
      service_conditions | indent
      kubectl -n "$NS" get pods -o wide | indent
      return 1
    fi
    say "$name Ready $(seconds_since "$APPLIED_AT") s after the example was applied"
  done
}

apply_and_wait() {
  apply_example || return 1
  wait_services_ready 600
}

# One line per Database of $NS: name, owner, server, server pod, seconds from creation to Ready.
database_table() {
  local databases
  databases="$(kubectl -n "$NS" get databases.silo.dev -o json)" || return 1
  jq -r '.items[] | [.metadata.name, .spec.owner, (.status.server // "?"),
      ((.metadata.creationTimestamp | fromdateiso8601) as $c
        | (.status.conditions // [] | map(select(.type == "Ready" and .status == "True"))[0].lastTransitionTime)
        | if . then (fromdateiso8601 - $c | tostring) else "not Ready" end)] | @tsv' <<<"$databases" \
  | while IFS=$'\t' read -r name owner server ready; do
      local pod
      if [[ "$server" == dedicated ]]; then
        pod="$NS/$name-dbserver-0"
      else
        pod="$(kubectl get databaseservers.silo.dev "$server" -o json 2>/dev/null \
          | jq -r '"\(.status.workloadNamespace // .spec.managed.namespace // "-")/silo-\(.metadata.name)-0"')"
      fi
      printf '%-22s %-16s %-30s %-40s %s\n' "$name" "$owner" "$server" "$pod" "$ready s"
    done
}

payment_decline_threshold() {
  local value
  value="$(kubectl -n "$NS" get deployment payment-service -o json 2>/dev/null \
    | jq -r '[.spec.template.spec.containers[0].env[]? | select(.name == "PAYMENT_DECLINE_ABOVE") | .value][0] // empty')"
  echo "${value:-10000}"   # services/payment's default (docs/services.md)
}

# --- Reaching the services -----------------------------------------------------------------
# Through `kubectl port-forward` to each ClusterIP Service: it works on every cluster (kind's
# ClusterIP names do not resolve on the host; this machine's do) and needs no client image in
# the cluster. It enters the pod's network namespace, so NetworkPolicies do not apply to it:
# the policies are checked separately, from probe pods.

forward_port() {
  sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9][0-9]*\) -> .*/\1/p' "$WORK/forward-$1.log" | head -n1
}

forward_start() {
  local service="$1" log="$WORK/forward-$1.log"
  : >"$log"
  kubectl -n "$NS" port-forward --address 127.0.0.1 "service/$service" :8080 >"$log" 2>&1 &
  FORWARD_PID[$service]=$!
  if ! wait_for 30 "kubectl port-forward to $service" forward_port_known "$service"; then
    indent <"$log"
    return 1
  fi
  SERVICE_URL[$service]="http://127.0.0.1:$(forward_port "$service")"
}

forward_port_known() { [[ -n "$(forward_port "$1")" ]]; }

forwards_stop() {
  local service
  for service in "${!FORWARD_PID[@]}"; do
    kill "${FORWARD_PID[$service]}" 2>/dev/null || true
    wait "${FORWARD_PID[$service]}" 2>/dev/null || true
    unset "FORWARD_PID[$service]"
  done
}

# (Re)starts one port-forward per Service: after pods are replaced the old ones point nowhere.
forwards_start() {
  forwards_stop
  local service
  for service in "${SERVICES[@]}"; do forward_start "$service" || return 1; done
  for service in "${SERVICES[@]}"; do say "$service: ${SERVICE_URL[$service]} (kubectl port-forward)"; done
}

# --- Probe pods ----------------------------------------------------------------------------
# A probe runs the PostgreSQL image (psql, bash) in $NS with every service's credentials
# Secret mounted under /creds/<service>/. A probe labelled silo.dev/service=<name> is, for
# NetworkPolicies, that service's pod; it never becomes Ready (its readiness probe fails), so
# it never receives the Service's traffic, and it has no pod-template-hash, so no ReplicaSet
# adopts it.

credentials_secret() {
  kubectl -n "$NS" get "services.silo.dev/$1" -o jsonpath='{.status.database.secret}'
}

# probe_create <pod name> <labels as a JSON object>
probe_create() {
  local name="$1" labels="$2" volumes='[]' mounts='[]' service secret
  for service in "${SERVICES[@]}"; do
    secret="$(credentials_secret "$service")"
    volumes="$(jq -c --arg s "$service" --arg secret "${secret:-$service-db}" '. + [{name: $s, secret: {secretName: $secret}}]' <<<"$volumes")"
    mounts="$(jq -c --arg s "$service" '. + [{name: $s, mountPath: "/creds/\($s)", readOnly: true}]' <<<"$mounts")"
  done
  jq -n --arg name "$name" --arg ns "$NS" --arg image "$(probe_image)" --arg probe_label "$PROBE_LABEL" \
    --argjson labels "$labels" --argjson volumes "$volumes" --argjson mounts "$mounts" '{
    apiVersion: "v1", kind: "Pod",
    metadata: {name: $name, namespace: $ns, labels: ($labels + {($probe_label): $name})},
    spec: {
      restartPolicy: "Never", terminationGracePeriodSeconds: 1, automountServiceAccountToken: false,
      enableServiceLinks: false,
      securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: {type: "RuntimeDefault"}},
      containers: [{
        name: "probe", image: $image, imagePullPolicy: "IfNotPresent",
        command: ["sleep", "infinity"], env: [{name: "HOME", value: "/tmp"}],
        readinessProbe: {exec: {command: ["false"]}, periodSeconds: 3600},
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: ["ALL"]}},
        volumeMounts: $mounts}],
      volumes: $volumes}}' | kubectl apply -f - >/dev/null
}

probe_running() {
  [[ "$(kubectl -n "$NS" get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null)" == Running ]]
}

probe_ip() { kubectl -n "$NS" get pod "$1" -o jsonpath='{.status.podIP}'; }

# probes_create: one probe per Service (labelled as it) and an unlabelled one; waits for them.
probes_create() {
  local service
  for service in "${SERVICES[@]}"; do
    probe_create "e2e-probe-$service" "$(jq -nc --arg k "$SERVICE_LABEL" --arg v "$service" '{($k): $v}')" || return 1
  done
  probe_create e2e-probe-plain '{}' || return 1
  for service in "${SERVICES[@]}" plain; do
    wait_for 180 "probe pod e2e-probe-$service Running" probe_running "e2e-probe-$service" || {
      kubectl -n "$NS" describe pod "e2e-probe-$service" | tail -n 15 | indent
      return 1
    }
  done
}

# probe_exec <pod> <bash script> [args...]: runs the script in the probe (stdin passed on).
probe_exec() {
  local pod="$1" script="$2"; shift 2
  kubectl -n "$NS" exec -i "$pod" -- bash -c "$script" probe "$@"
}

# --- Teardown ------------------------------------------------------------------------------

# Removes the finalizers of what is left of kind $1 in $NS when no operator can release them.
release_finalizers() {
  local kind="$1" object
  for object in $(kubectl -n "$NS" get "$kind" -o name 2>/dev/null); do
    say "no operator released $object: removing its finalizers"
    kubectl -n "$NS" patch "$object" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
  done
}

# Deletes everything of the run: the custom resources first, while the operator still runs
# (their finalizers drop the databases and roles), then the release and the namespaces. The
# CRDs stay (other tests may share them).
teardown_system() {
  forwards_stop
  local started="$EPOCHREALTIME"
  if kubectl get namespace "$NS" >/dev/null 2>&1; then
    kubectl -n "$NS" delete services.silo.dev --all --wait=true --timeout=180s >/dev/null 2>&1
    say "Services deleted ($(seconds_since "$started") s)"
    kubectl -n "$NS" delete databases.silo.dev --all --wait=true --timeout=180s >/dev/null 2>&1 \
      || release_finalizers databases.silo.dev
    say "Databases deleted: databases and roles dropped ($(seconds_since "$started") s)"
  fi
  if kubectl get databaseservers.silo.dev -l "$SERVER_SELECTOR" -o name 2>/dev/null | grep -q .; then
    kubectl delete databaseservers.silo.dev -l "$SERVER_SELECTOR" --wait=true --timeout=180s >/dev/null 2>&1 || {
      say "no operator released the DatabaseServers labelled $SERVER_SELECTOR: removing their finalizers"
      kubectl get databaseservers.silo.dev -l "$SERVER_SELECTOR" -o name \
        | xargs -r -I{} kubectl patch {} --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
    }
    say "DatabaseServers deleted ($(seconds_since "$started") s)"
  fi
  helm uninstall "$RELEASE" -n "$OP_NS" --wait --timeout 120s >/dev/null 2>&1
  say "helm uninstall $RELEASE ($(seconds_since "$started") s)"
  # The pods go before their namespaces: the namespace controller, finding pods still
  # terminating, waits their whole grace period (60 s for a database server) before it
  # looks again. Nothing of them is kept, so 5 s is grace enough (the NATS pod otherwise
  # takes its full 30 s and more).
  local namespace
  for namespace in "$NS" "$OP_NS"; do
    # Orphaned first, so that no controller replaces a pod deleted here.
    kubectl -n "$namespace" delete deployments,replicasets,statefulsets --all --cascade=orphan >/dev/null 2>&1
    kubectl -n "$namespace" delete pods --all --grace-period=5 --wait=false >/dev/null 2>&1
  done
  for namespace in "$NS" "$OP_NS"; do
    kubectl -n "$namespace" wait --for=delete pods --all --timeout=180s >/dev/null 2>&1
  done
  say "pods stopped ($(seconds_since "$started") s)"
  kubectl delete namespace "$NS" "$OP_NS" --ignore-not-found --wait=true --timeout=300s >/dev/null 2>&1
  kubectl delete clusterrole,clusterrolebinding -l "app.kubernetes.io/instance=$RELEASE" --ignore-not-found >/dev/null 2>&1
  say "namespaces $NS and $OP_NS deleted ($(seconds_since "$started") s)"
  return 0
}

# What of the run is still in the cluster, one object per line (nothing when clean).
leftovers() {
  kubectl get namespace "$NS" "$OP_NS" -o name 2>/dev/null
  kubectl get clusterrole,clusterrolebinding -l "app.kubernetes.io/instance=$RELEASE" -o name 2>/dev/null
  kubectl get databaseservers.silo.dev -l "$SERVER_SELECTOR" -o name 2>/dev/null
  kubectl get pv -o json 2>/dev/null | jq -r --arg a "$NS" --arg b "$OP_NS" \
    '.items[] | select(.spec.claimRef.namespace == $a or .spec.claimRef.namespace == $b) | "persistentvolume/" + .metadata.name'
  helm status "$RELEASE" -n "$OP_NS" >/dev/null 2>&1 && echo "helm release $OP_NS/$RELEASE"
  return 0
}
