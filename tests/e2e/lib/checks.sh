# shellcheck shell=bash disable=SC2034 # its variables are read by the files that source it
# The end-to-end checks of the booking system on a cluster, shared by tests/e2e/run and
# tests/run-demo. Sourced after common.sh and system.sh, never executed. Each check_* function
# prints what it saw, may leave a one-line CHECK_DETAIL (and CHECK_STATUS=N/A), and returns
# non-zero when what it checks does not hold.

NETWORK_POLICY_ENFORCED=""    # true/false once check_network_policy_enforcement ran
REQUIRE_NETWORK_POLICY=false  # a cluster that does not enforce NetworkPolicies fails the run
ROTATED_SERVICE="booking-service"

# --- The saga through the HTTP APIs --------------------------------------------------------

# run_saga <report file> [saga.py options...]: drives the saga through the port-forwards.
run_saga() {
  local report="$1"; shift
  python3 "$E2E_LIB/saga.py" --user "${SERVICE_URL[user-service]}" \
    --booking "${SERVICE_URL[booking-service]}" --payment "${SERVICE_URL[payment-service]}" \
    --decline-above "$(payment_decline_threshold)" "$@" >"$report"
}

# The saga of one user: a booking that is paid (CONFIRMED), one above the decline threshold
# (CANCELLED), then an email change. The three rows read the one report.
check_saga_confirmed() {
  run_saga "$WORK/saga.json" --run-id "e2e$RUN_ID" --users 1 --bookings-per-user 2 --decline-every 2
  jq -e '.bookings' "$WORK/saga.json" >/dev/null 2>&1 || return 1
  local booking
  booking="$(jq -c '[.bookings[] | select(.expected == "CONFIRMED")][0]' "$WORK/saga.json")"
  CHECK_DETAIL="booking $(jq -r .id <<<"$booking"): $(jq -r .status <<<"$booking") after $(jq -r '.latencySeconds // "-"' <<<"$booking") s"
  [[ "$(jq -r .status <<<"$booking")" == CONFIRMED ]]
}

check_saga_declined() {
  local booking
  booking="$(jq -c '[.bookings[]? | select(.expected == "CANCELLED")][0] // empty' "$WORK/saga.json")"
  [[ -n "$booking" ]] || { say "no declined booking was made (see the saga above)"; return 1; }
  CHECK_DETAIL="amount $(jq -r .amount <<<"$booking") > PAYMENT_DECLINE_ABOVE $(jq -r .declineAbove "$WORK/saga.json"): $(jq -r .status <<<"$booking") after $(jq -r '.latencySeconds // "-"' <<<"$booking") s ($(jq -r '.reason // "no reason"' <<<"$booking"))"
  [[ "$(jq -r .status <<<"$booking")" == CANCELLED ]]
}

check_email_change() {
  local email
  email="$(jq -c '.email // empty' "$WORK/saga.json")"
  [[ -n "$email" ]] || { say "the email was not changed (the saga failed before)"; return 1; }
  say "GET /api/bookings/{id} userEmail and GET /api/payments?bookingId= userEmail, before: $(jq -c .before <<<"$email")"
  if [[ "$(jq -r .reached <<<"$email")" == true ]]; then
    CHECK_DETAIL="$(jq -r '"\(.new): booking-service after \(.bookingSeconds) s, payment-service after \(.paymentSeconds) s"' <<<"$email")"
    return 0
  fi
  CHECK_DETAIL="stale copies: $(jq -c .stale <<<"$email")"
  return 1
}

# --- Isolation, live: every login against every database -----------------------------------

# Tries the credentials of each service (username, password) against the database of the
# probe's service (host, port, database), from that probe: the network admits it there, so
# only PostgreSQL (authentication, CONNECT privilege) decides. One line per login:
# <service>\t<exit status>\t<psql's answer>.
# shellcheck disable=SC2016 # expanded by the probe's bash
LOGIN_MATRIX_SCRIPT='
target="$1"; shift
for login in "$@"; do
  if [[ "$(cat "/creds/$target/uri")" != postgres* ]]; then printf "%s\t-\tnot PostgreSQL\n" "$login"; continue; fi
  answer="$(PGPASSWORD="$(cat "/creds/$login/password")" PGCONNECT_TIMEOUT=5 psql -X -w -A -t \
    -h "$(cat "/creds/$target/host")" -p "$(cat "/creds/$target/port")" \
    -U "$(cat "/creds/$login/username")" -d "$(cat "/creds/$target/database")" \
    -c "select current_user" 2>&1)"
  printf "%s\t%s\t%s\n" "$login" "$?" "$(tr "\n" " " <<<"$answer")"
done'

# The short reason of a refused login, from psql's message.
refusal() {
  case "$1" in
    *"password authentication failed"*) echo "refused: password authentication failed" ;;
    *"no pg_hba.conf entry"*) echo "refused: no pg_hba.conf entry" ;;
    *"permission denied for database"*|*"not have CONNECT privilege"*) echo "refused: no CONNECT privilege" ;;
    *"does not exist"*) echo "refused: $(grep -o '\(role\|database\) "[^"]*" does not exist' <<<"$1" | head -n1)" ;;
    *"timeout expired"*|*"Connection timed out"*) echo "refused: no connection (network)" ;;
    *) echo "refused: $(cut -c1-60 <<<"$1")" ;;
  esac
}

# Prints the matrix (logins down, databases across) and fails unless each login opens its
# own database only. MATRIX_CELLS keeps "login<TAB>database<TAB>verdict" lines for the demo.
MATRIX_CELLS=()
check_login_matrix() {
  local target login code answer verdict ok=0
  MATRIX_CELLS=()
  for target in "${SERVICES[@]}"; do
    while IFS=$'\t' read -r login code answer; do
      if [[ "$code" == - ]]; then verdict="not checked ($answer)"
      elif [[ "$code" == 0 ]]; then verdict=accepted
      else verdict="$(refusal "$answer")"
      fi
      MATRIX_CELLS+=("$login"$'\t'"$target"$'\t'"$verdict")
      if [[ "$login" == "$target" && "$verdict" != accepted ]] \
        || [[ "$login" != "$target" && "$verdict" != refused* ]]; then
        ok=1
      fi
    done < <(probe_exec "e2e-probe-$target" "$LOGIN_MATRIX_SCRIPT" "$target" "${SERVICES[@]}" </dev/null)
  done
  print_login_matrix
  local accepted refused
  accepted="$(printf '%s\n' "${MATRIX_CELLS[@]}" | awk -F'\t' '$1 == $2 && $3 == "accepted"' | wc -l)"
  refused="$(printf '%s\n' "${MATRIX_CELLS[@]}" | awk -F'\t' '$1 != $2 && $3 ~ /^refused/' | wc -l)"
  CHECK_DETAIL="$accepted/${#SERVICES[@]} own logins accepted, $refused/$(( ${#SERVICES[@]} * (${#SERVICES[@]} - 1) )) cross-service logins refused"
  return $ok
}

# The matrix of MATRIX_CELLS: "accepted"/"refused" per cell, then the reasons of the refusals.
print_login_matrix() {
  local login target line verdict
  printf '    %-22s' 'login \ database of'
  for target in "${SERVICES[@]}"; do printf '%-18s' "$target"; done
  printf '\n'
  for login in "${SERVICES[@]}"; do
    printf '    %-22s' "$login"
    for target in "${SERVICES[@]}"; do
      verdict="not run"
      for line in "${MATRIX_CELLS[@]}"; do
        [[ "$line" == "$login"$'\t'"$target"$'\t'* ]] && verdict="${line##*$'\t'}"
      done
      printf '%-18s' "${verdict%%:*}"
    done
    printf '\n'
  done
  printf '%s\n' "${MATRIX_CELLS[@]}" | awk -F'\t' '$3 ~ /^refused: /' | cut -f3 | sort | uniq -c \
    | sed 's/^ *\([0-9]*\) refused: \(.*\)/    refusals: \2 (\1)/'
}

# --- The access matrix (NetworkPolicies, as evaluated by the operator) ----------------------

# The silo-operator binary for `access`: $SILO_OPERATOR_BIN, else the newest build of this
# checkout, else one on PATH.
operator_binary() {
  if [[ -n "${SILO_OPERATOR_BIN:-}" ]]; then echo "$SILO_OPERATOR_BIN"; return; fi
  local candidate newest=""
  for candidate in "$SILO_ROOT/target/release/silo-operator" "$SILO_ROOT/target/debug/silo-operator"; do
    [[ -x "$candidate" ]] || continue
    if [[ -z "$newest" || "$candidate" -nt "$newest" ]]; then newest="$candidate"; fi
  done
  [[ -n "$newest" ]] && { echo "$newest"; return; }
  command -v silo-operator
}

access_command() {
  local binary; binary="$(operator_binary)" || return 1
  printf '%s\n' "$binary" access --namespace "$NS" --operator-namespace "$OP_NS"
}

# Prints `silo-operator access` for the namespace; fails unless every database is reachable
# (as the policies say) by its owner and the operator only, or, on a shared server, by the
# owners of the server's databases only.
check_access_matrix() {
  local command=()
  mapfile -t command < <(access_command)
  if ((${#command[@]} == 0)); then
    say "no silo-operator binary: set SILO_OPERATOR_BIN or cargo build -p silo-operator"
    return 1
  fi
  say "${command[*]#"$SILO_ROOT/"}"
  "${command[@]}" >"$WORK/access.txt" 2>&1 || { indent <"$WORK/access.txt"; return 1; }
  indent <"$WORK/access.txt"
  "${command[@]}" --output json >"$WORK/access.json" || return 1
  local owners
  owners="$(printf '%s\n' "${SERVICES[@]}" | jq -R --arg ns "$NS" '"\($ns)/\(.)"' | jq -sc .)"
  jq -r --arg ns "$NS" --argjson owners "$owners" '.services[] | .name as $name | .database
    | [(.callers.allowed // []) | .[] | select(endswith("(operator)") | not)] as $allowed
    | if .placement == "dedicated" then
        if $allowed == ["\($ns)/\($name)"] and .isolated then empty
        else "WRONG: \($name)-db (dedicated) is reachable from \($allowed), isolated \(.isolated)" end
      elif .placement == "shared" then
        if ($allowed - $owners) == [] and .reason == "SharedServer" then empty
        else "WRONG: \($name)-db (shared) is reachable from \($allowed - $owners) beyond the owners, reason \(.reason)" end
      else "WRONG: \($name)-db placement \(.placement)" end' "$WORK/access.json" >"$WORK/access-wrong.txt" || return 1
  if [[ -s "$WORK/access-wrong.txt" ]]; then indent <"$WORK/access-wrong.txt"; return 1; fi
  CHECK_DETAIL="$(jq -r '[.services[] | "\(.name): \(.database.placement), \(.database.reason)"] | join("; ")' "$WORK/access.json")"
}

# --- NetworkPolicy enforcement -------------------------------------------------------------

# shellcheck disable=SC2016 # expanded by the probe's bash
TCP_SCRIPT='timeout 4 bash -c ": <>/dev/tcp/$1/$2" 2>/dev/null'

# probe_connects <probe pod> <host> <port>: whether the probe opens a TCP connection.
probe_connects() { probe_exec "$1" "$TCP_SCRIPT" "$2" "$3" </dev/null; }
probe_refused() { ! probe_connects "$@"; }

# An address with a listener no policy of the example fences: the broker's pod (its
# Service's first endpoint), else the API server's ClusterIP.
unfenced_target() {
  local broker_service
  broker_service="$(kubectl -n "$NS" get services.silo.dev -o json \
    | jq -r --arg ns "$NS" '[.items[].spec.broker.url // empty | capture("://(?<s>[^.:/]+)\\.\($ns)\\.svc")][0].s // empty')"
  if [[ -n "$broker_service" ]]; then
    kubectl -n "$NS" get endpoints "$broker_service" -o json \
      | jq -r '.subsets[0] | "\(.addresses[0].ip) \(.ports[0].port)"' && return
  fi
  echo "$(kubectl -n default get service kubernetes -o jsonpath='{.spec.clusterIP}') 443"
}

# Detects whether the network plugin enforces NetworkPolicies: the unlabelled probe opens a
# connection to an unfenced pod, then a deny-all policy selects the probe, and the same
# connection must fail within NETWORK_POLICY_SETTLE_SECONDS (enforcers apply policies
# asynchronously).
check_network_policy_enforcement() {
  local probe=e2e-probe-plain target host port settle="${NETWORK_POLICY_SETTLE_SECONDS:-20}"
  target="$(unfenced_target)"; read -r host port <<<"$target"
  if ! probe_connects "$probe" "$host" "$port"; then
    say "the probe cannot open $host:$port even before any policy selects it: nothing to compare"
    return 1
  fi
  say "before: $probe opens TCP $host:$port (the broker's pod; no policy selects it)"
  kubectl apply -f - >/dev/null <<EOF || return 1
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: e2e-deny-all, namespace: $NS}
spec:
  podSelector: {matchLabels: {$PROBE_LABEL: $probe}}
  policyTypes: [Ingress, Egress]
EOF
  local started="$EPOCHREALTIME"
  if wait_for "$settle" "" probe_refused "$probe" "$host" "$port"; then
    NETWORK_POLICY_ENFORCED=true
    say "after the deny-all policy e2e-deny-all selected it: refused within $(seconds_since "$started") s"
    CHECK_DETAIL="enforced: a deny-all policy cut the probe off within $(seconds_since "$started") s"
    return 0
  fi
  NETWORK_POLICY_ENFORCED=false
  say "after the deny-all policy e2e-deny-all selected it: still opens TCP $host:$port after $settle s"
  CHECK_DETAIL="not enforced by this cluster's network plugin (a pod selected by a deny-all policy still connects)"
  $REQUIRE_NETWORK_POLICY && return 1
  CHECK_STATUS=N/A
}

# Where NetworkPolicies are enforced: a pod labelled as booking-service cannot open TCP to
# user-service's database server, a pod labelled as user-service can. On a shared server the
# other owners reach it by design: there a pod of no service (unlabelled, under no policy)
# is the one that must not.
check_database_fenced() {
  local owner=user-service other=booking-service host port placement
  placement="$(kubectl -n "$NS" get "databases.silo.dev/$(kubectl -n "$NS" get "services.silo.dev/$owner" -o jsonpath='{.status.database.name}')" -o jsonpath='{.status.server}')"
  if [[ "$placement" != dedicated ]]; then
    other=outsider
    probe_create e2e-probe-outsider '{}' || return 1
    wait_for 120 "probe pod e2e-probe-outsider Running" probe_running e2e-probe-outsider || return 1
  fi
  host="$(kubectl -n "$NS" exec "e2e-probe-$owner" -- cat "/creds/$owner/host")" || return 1
  port="$(kubectl -n "$NS" exec "e2e-probe-$owner" -- cat "/creds/$owner/port")" || return 1
  local own=refused foreign=refused
  probe_connects "e2e-probe-$owner" "$host" "$port" && own=opens
  probe_connects "e2e-probe-$other" "$host" "$port" && foreign=opens
  say "$owner's database server ($placement) $host:$port: a pod labelled $SERVICE_LABEL=$owner $own it; $(
    [[ "$other" == outsider ]] && echo "an unlabelled pod" || echo "one labelled $SERVICE_LABEL=$other") $foreign it"
  if [[ "$NETWORK_POLICY_ENFORCED" != true ]]; then
    CHECK_DETAIL="not enforced by this cluster's network plugin: the $other pod $foreign TCP to $owner's database server (the policies deny it: see the access matrix)"
    $REQUIRE_NETWORK_POLICY && return 1
    CHECK_STATUS=N/A
    return 0
  fi
  CHECK_DETAIL="$other's pod: $foreign; $owner's pod: $own"
  [[ "$own" == opens && "$foreign" == refused ]]
}

# --- Rotation ------------------------------------------------------------------------------

rotation_annotation() {
  kubectl -n "$NS" get deployment "$1" -o jsonpath='{.spec.template.metadata.annotations.silo\.dev/credentials-rotation}'
}

service_pods() {
  kubectl -n "$NS" get pods -l "$SERVICE_LABEL=$1,!$PROBE_LABEL" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'
}

# shellcheck disable=SC2016 # expanded by the probe's bash
OLD_PASSWORD_SCRIPT='read -r PGPASSWORD; export PGPASSWORD; PGCONNECT_TIMEOUT=5 psql -X -w -A -t \
  -h "$(cat "/creds/$1/host")" -p "$(cat "/creds/$1/port")" -U "$2" -d "$(cat "/creds/$1/database")" \
  -c "select 1" 2>&1'

rotation_changed() { [[ "$(rotation_annotation "$1")" != "$2" ]]; }

# old_pods_gone <service> <pod names, one a line>: none of them exists any more.
old_pods_gone() {
  [[ -z "$(comm -12 <(sort <<<"$2") <(service_pods "$1" | sort))" ]]
}

# Rotates ROTATED_SERVICE's credentials (silo.dev/rotate on its Database): its Deployment rolls
# every pod onto the new password, the Service is Ready again and the old password is refused.
check_rotation() {
  local service="$ROTATED_SERVICE" database secret
  database="$(kubectl -n "$NS" get "services.silo.dev/$service" -o jsonpath='{.status.database.name}')"
  secret="$(credentials_secret "$service")"
  local username old_password before old_pods
  username="$(kubectl -n "$NS" get secret "$secret" -o jsonpath='{.data.username}' | base64 -d)"
  old_password="$(kubectl -n "$NS" get secret "$secret" -o jsonpath='{.data.password}' | base64 -d)"
  before="$(rotation_annotation "$service")"
  old_pods="$(service_pods "$service" | sort)"
  local started="$EPOCHREALTIME"
  kubectl -n "$NS" annotate "databases.silo.dev/$database" "silo.dev/rotate=e2e-$RUN_ID-$SECONDS" --overwrite >/dev/null || return 1
  wait_for 120 "the pod template of $service takes the new rotation" rotation_changed "$service" "$before" || return 1
  say "Database $database rotated; the pod template of $service changed $(seconds_since "$started") s after the annotation"
  kubectl -n "$NS" rollout status "deployment/$service" --timeout=300s >/dev/null || return 1
  kubectl -n "$NS" wait --for=condition=Ready "services.silo.dev/$service" --timeout=300s >/dev/null || return 1
  wait_for 120 "the old pods of $service are gone" old_pods_gone "$service" "$old_pods" || return 1
  local new_pods ok=0
  new_pods="$(service_pods "$service" | sort)"
  say "pods before: $(tr '\n' ' ' <<<"$old_pods")"
  say "pods after:  $(tr '\n' ' ' <<<"$new_pods")(rolled and Ready $(seconds_since "$started") s after the annotation)"
  local new_password
  new_password="$(kubectl -n "$NS" get secret "$secret" -o jsonpath='{.data.password}' | base64 -d)"
  if [[ -n "$new_password" && "$new_password" != "$old_password" ]]; then
    say "ok: Secret $secret holds a new password"
  else
    say "WRONG: Secret $secret still holds the old password"; ok=1
  fi
  local answer
  if answer="$(probe_exec "e2e-probe-$service" "$OLD_PASSWORD_SCRIPT" "$service" "$username" <<<"$old_password" 2>/dev/null)"; then
    say "WRONG: the old password still logs in"; ok=1
  else
    say "ok: the old password is $(refusal "$answer")"
  fi
  CHECK_DETAIL="$(wc -l <<<"$old_pods") pod(s) of $service rolled onto the new password in $(seconds_since "$started") s; old password refused"
  return $ok
}

check_saga_after_rotation() {
  forwards_start || return 1
  run_saga "$WORK/saga-after-rotation.json" --run-id "e2e${RUN_ID}r" --users 1 --bookings-per-user 1 \
    --decline-every 0 --no-email-change || return 1
  CHECK_DETAIL="$(jq -r '.bookings[0] | "booking \(.id): \(.status) after \(.latencySeconds) s"' "$WORK/saga-after-rotation.json")"
}

# --- The leader killed mid-provisioning ----------------------------------------------------

FAILOVER_DATABASE=e2e-failover

lease_taken_from() { local holder; holder="$(lease_holder)"; [[ -n "$holder" && "$holder" != "$1" ]]; }

# The objects named after Database $1 that hold its server: StatefulSets and volume claims.
server_objects() { kubectl -n "$NS" get "$2" -o name | grep -c -- "/\(data-\)\?$1-dbserver"; }
one_server_and_volume() { [[ "$(server_objects "$1" statefulsets)" == 1 && "$(server_objects "$1" pvc)" == 1 ]]; }
no_server_or_volume() { [[ "$(server_objects "$1" statefulsets)" == 0 && "$(server_objects "$1" pvc)" == 0 ]]; }

# shellcheck disable=SC2016 # expanded in the server's container
SERVER_INVENTORY_SCRIPT='read -r PGPASSWORD; export PGPASSWORD; psql -X -w -A -t -h 127.0.0.1 -U "$1" -d postgres -c "
  select '"'"'database '"'"' || datname from pg_database where not datistemplate and datname <> '"'"'postgres'"'"'
  union all select '"'"'role '"'"' || rolname from pg_roles where rolname !~ '"'"'^pg_'"'"' and rolname <> current_user
  order by 1"'

# Applies a Database on a dedicated server, kills the leading operator replica (no graceful
# stop: its Lease is not released) as soon as it has started provisioning, and checks that the
# other replica takes the Lease and the Database becomes Ready with exactly one server, one
# volume, one database and one role; then deletes it and checks that its volume goes too.
check_failover() {
  local db="$FAILOVER_DATABASE" leader
  leader="$(lease_holder)"
  local replicas; replicas="$(operator_pods | tr '\n' ' ')"
  [[ "$(wc -w <<<"$replicas")" -ge 2 ]] || { say "needs two operator replicas, has: $replicas"; return 1; }
  kubectl apply -f - >/dev/null <<EOF || return 1
apiVersion: silo.dev/v1alpha1
kind: Database
metadata: {name: $db, namespace: $NS}
spec:
  engine: postgres
  owner: $db
  server: {dedicated: {version: "15", storage: {size: 64Mi}}}
  deletionPolicy: Delete
EOF
  local applied="$EPOCHREALTIME"
  wait_for 60 "the leader starts provisioning (StatefulSet $db-dbserver)" \
    kubectl -n "$NS" get statefulset "$db-dbserver" || return 1
  say "leader $leader created StatefulSet $db-dbserver $(seconds_since "$applied") s after the apply; killing it (grace period 0)"
  local killed="$EPOCHREALTIME"
  kubectl -n "$OP_NS" delete pod "$leader" --grace-period=0 --force >/dev/null 2>&1 || return 1
  wait_for 90 "another replica holds the Lease" lease_taken_from "$leader" || return 1
  local holder takeover
  holder="$(lease_holder)" takeover="$(seconds_since "$killed")"
  say "$holder took the Lease $takeover s after the kill (lease duration 15 s)"
  if ! kubectl -n "$NS" wait --for=condition=Ready "databases.silo.dev/$db" --timeout=300s >/dev/null 2>&1; then
    kubectl -n "$NS" get "databases.silo.dev/$db" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' | indent
    return 1
  fi
  local ready_after; ready_after="$(seconds_since "$applied")"
  say "Database $db Ready $ready_after s after the apply"
  local ok=0 status
  status="$(kubectl -n "$NS" get "databases.silo.dev/$db" -o json)"
  if [[ " $replicas " == *" $holder "* ]]; then
    say "ok: the standby replica $holder took over"
  else
    say "note: $holder (a replacement pod) took the Lease before the standby did"
  fi
  holds "one StatefulSet and one volume claim for it" one_server_and_volume "$db" || ok=1
  local admin_secret="$db-dbserver-admin" admin_user admin_password inventory expected
  admin_user="$(kubectl -n "$NS" get secret "$admin_secret" -o jsonpath='{.data.username}' | base64 -d)"
  admin_password="$(kubectl -n "$NS" get secret "$admin_secret" -o jsonpath='{.data.password}' | base64 -d)"
  inventory="$(kubectl -n "$NS" exec -i "$db-dbserver-0" -- bash -c "$SERVER_INVENTORY_SCRIPT" server "$admin_user" <<<"$admin_password")" \
    || { say "WRONG: cannot list the server's databases and roles: $inventory"; ok=1; }
  expected="$(jq -r '"database \(.status.databaseName)\nrole \(.status.roleName)"' <<<"$status" | sort)"
  if [[ "$inventory" == "$expected" ]]; then
    say "ok: on the server exactly: $(tr '\n' ';' <<<"$inventory" | sed 's/;$//; s/;/, /g') (no orphan role or database)"
  else
    say "WRONG: the server holds [$(tr '\n' ' ' <<<"$inventory")], expected [$(tr '\n' ' ' <<<"$expected")]"; ok=1
  fi
  local deleted="$EPOCHREALTIME"
  kubectl -n "$NS" delete "databases.silo.dev/$db" --wait=true --timeout=180s >/dev/null || ok=1
  say "Database $db deleted (its finalizer released) in $(seconds_since "$deleted") s"
  if wait_for 120 "" no_server_or_volume "$db"; then
    say "ok: its server and volume claim are gone $(seconds_since "$deleted") s after the delete"
  else
    say "WRONG: its server or volume is left: $(kubectl -n "$NS" get statefulsets,pvc -o name | grep "$db-" | tr '\n' ' ')"; ok=1
  fi
  local how="the killed leader released it on SIGTERM"
  awk -v t="$takeover" 'BEGIN { exit !(t >= 15) }' && how="the Lease expired"
  CHECK_DETAIL="$holder took the Lease $takeover s after the kill ($how); Ready $ready_after s after the apply"
  ((ok == 0)) && CHECK_DETAIL+="; no orphan"
  return $ok
}
