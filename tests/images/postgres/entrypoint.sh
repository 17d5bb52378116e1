#!/bin/bash
# Entrypoint of the local PostgreSQL image (localhost/silo/postgres:15), written for
# Silo's local environment. It honours the environment contract documented for the
# official `postgres` image, on which Silo's managed and dedicated servers rely:
#
#   POSTGRES_PASSWORD          the superuser's password; required to create a cluster
#   POSTGRES_USER              the superuser (default postgres)
#   POSTGRES_DB                a database created with the cluster (default $POSTGRES_USER)
#   PGDATA                     the data directory (default /var/lib/postgresql/data)
#   POSTGRES_INITDB_ARGS       extra initdb arguments, e.g. --auth-host=scram-sha-256
#   POSTGRES_HOST_AUTH_METHOD  pg_hba method for connections from anywhere (default scram-sha-256)
#   /docker-entrypoint-initdb.d/*.sql and *.sh, run once after the cluster is created
#
# A cluster is created only when PGDATA holds none; the server listens on all addresses.
# Started as root (the default), it prepares the data directory and runs on as the
# postgres user. SIGTERM and SIGINT both stop the server with a fast shutdown.
set -euo pipefail

export POSTGRES_USER="${POSTGRES_USER:-postgres}"
export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
POSTGRES_HOST_AUTH_METHOD="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

say() { printf 'postgres-entrypoint: %s\n' "$*" >&2; }

# Volumes arrive root-owned, and a hostPath volume ignores fsGroup: the local provisioner
# makes them 0750, which postgres cannot even enter. So the volume PGDATA lives in (its
# parent, when that is a mount point) becomes postgres's, and so does what PGDATA holds;
# only files not yet postgres's are changed, so a restart on a large cluster stays quick.
prepare_as_root() {
  local parent; parent="$(dirname "$PGDATA")"
  mkdir -p "$PGDATA" /var/run/postgresql
  if mountpoint -q "$parent"; then chown postgres:postgres "$parent"; fi
  chmod 0700 "$PGDATA"
  find "$PGDATA" ! -user postgres -exec chown postgres:postgres '{}' +
  chown postgres:postgres /var/run/postgresql
  chmod 3777 /var/run/postgresql
}

# initdb with the superuser and password from the environment; the password reaches it
# through a pipe, never a file or the command line.
create_cluster() {
  if [[ -z "${POSTGRES_PASSWORD:-}" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
    say "PGDATA ($PGDATA) holds no cluster and POSTGRES_PASSWORD is not set: refusing to create"
    say "a superuser without a password (set POSTGRES_HOST_AUTH_METHOD=trust to allow it)"
    exit 1
  fi
  local initdb_args=()
  read -r -a initdb_args <<<"${POSTGRES_INITDB_ARGS:-}"
  say "creating a cluster in $PGDATA for superuser $POSTGRES_USER"
  if [[ -n "${POSTGRES_PASSWORD:-}" ]]; then
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") -D "$PGDATA" "${initdb_args[@]}"
  else
    initdb --username="$POSTGRES_USER" -D "$PGDATA" "${initdb_args[@]}"
  fi
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf '\n# Any address, with a password (postgres-entrypoint)\nhost all all all %s\n' \
    "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
}

# POSTGRES_DB and the init scripts, through a server reachable on its Unix socket only,
# so no client can connect before the cluster is complete.
initialise_cluster() {
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start
  # The password too, in case POSTGRES_INITDB_ARGS asked for one on the socket.
  local psql=(env PGPASSWORD="${POSTGRES_PASSWORD:-}" psql -v ON_ERROR_STOP=1 --no-psqlrc
    --username "$POSTGRES_USER" --dbname postgres)
  if [[ "$POSTGRES_DB" != postgres ]]; then
    "${psql[@]}" -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";' >/dev/null
  fi
  local script
  for script in /docker-entrypoint-initdb.d/*; do
    case "$script" in
      *.sql) say "running $script"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$script" ;;
      *.sh) say "running $script"; bash "$script" ;;
      *) [[ -e "$script" ]] && say "ignoring $script" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
}

# The server as this script's child: postgres treats SIGTERM as a smart shutdown, which
# waits for every client to leave; a container runtime sends SIGTERM and then kills, so
# both SIGTERM and SIGINT become SIGINT, PostgreSQL's fast shutdown.
run_server() {
  "$@" &
  local server=$! status
  trap 'kill -INT "$server" 2>/dev/null || true' TERM INT
  trap 'kill -QUIT "$server" 2>/dev/null || true' QUIT
  # wait returns early when a trapped signal arrives: wait again until the server is gone.
  while true; do
    status=0
    wait "$server" || status=$?
    kill -0 "$server" 2>/dev/null || break
  done
  exit "$status"
}

main() {
  # Options alone (`-c work_mem=64MB`) are options for postgres.
  if [[ "${1:-}" == -* ]]; then set -- postgres "$@"; fi
  # Any other command (psql, bash) runs as given, without touching PGDATA.
  if [[ "${1:-}" != postgres ]]; then exec "$@"; fi
  if [[ "$(id -u)" == 0 ]]; then
    prepare_as_root
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- \
      env HOME=/var/lib/postgresql "$0" "$@"
  fi
  if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    create_cluster
    initialise_cluster
    say "cluster ready; starting the server"
  fi
  run_server "$@"
}

main "$@"
