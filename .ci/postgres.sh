#!/usr/bin/env bash
# A real PostgreSQL on loopback for the scale-out tests (LangGraph's PostgresSaver).
#
# Idempotent: installs Debian's `postgresql` package only when no server is installed,
# creates / starts a cluster only when none is online, creates the test role and database
# only when missing. Prints the DSN the tests read from TIERFLOW_TEST_PG_DSN.
#
#   .ci/postgres.sh              # then: export TIERFLOW_TEST_PG_DSN=<the printed DSN>
#
# Settings (environment): TIERFLOW_PG_ROLE, TIERFLOW_PG_PASSWORD, TIERFLOW_PG_DB.
# Debian's default cluster listens on localhost only and accepts passwords over TCP
# (scram-sha-256), which is what the DSN uses. Postgres refuses to run as root, so every
# server-side command runs as the `postgres` user.
set -euo pipefail

# Only the DSN goes to stdout (the Makefile captures it): everything the server tools
# print (apt, pg_ctlcluster's "Removed stale pid file.", createdb) goes to stderr.
# The server daemon must not inherit fd 3, or the caller's $(...) waits for it forever:
# every command below runs with fd 3 closed.
exec 3>&1 1>&2

ROLE="${TIERFLOW_PG_ROLE:-tierflow}"
PASSWORD="${TIERFLOW_PG_PASSWORD:-tierflow}"
DB="${TIERFLOW_PG_DB:-tierflow_test}"

log() { printf '[postgres.sh] %s\n' "$*" >&2; }

# The names go into SQL statements (DDL takes no parameters): allow plain identifiers only.
for value in "$ROLE" "$DB" "$PASSWORD"; do
    [[ "$value" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { log "invalid role/database/password '$value': use letters, digits and _"; exit 1; }
done

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@" 3>&-
    elif command -v sudo >/dev/null 2>&1; then sudo "$@" 3>&-
    else log "need root (or sudo) to run: $*"; exit 1
    fi
}

as_postgres() {
    # cd / : the postgres user may not be allowed into the caller's directory.
    if [ "$(id -un)" = postgres ]; then (cd / && "$@" 3>&-)
    else (cd / && as_root runuser -u postgres -- "$@")
    fi
}

server_installed() {
    command -v pg_lsclusters >/dev/null 2>&1 && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

if ! server_installed; then
    log "installing PostgreSQL from Debian's packages"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
fi

# Newest installed major version (the one `postgresql` depends on).
VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"

if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v' | grep -q .; then
    log "creating cluster $VERSION/main"
    as_root pg_createcluster "$VERSION" main
fi

read -r CLUSTER PORT STATUS < <(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v {print $2, $3, $4; exit}')
if [ "$STATUS" != online ]; then
    # A server killed without shutdown (a machine snapshot, kill -9) leaves its socket lock
    # behind, and the next start refuses to run. The lock's first line is the owner's PID.
    lock="/var/run/postgresql/.s.PGSQL.$PORT.lock"
    if [ -f "$lock" ] && ! kill -0 "$(head -n 1 "$lock")" 2>/dev/null; then
        log "removing stale socket lock $lock"
        as_root rm -f "$lock" "/var/run/postgresql/.s.PGSQL.$PORT"
    fi
    log "starting cluster $VERSION/$CLUSTER on port $PORT"
    as_root pg_ctlcluster "$VERSION" "$CLUSTER" start
fi

for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "$PORT"; then break; fi
    sleep 1
done
pg_isready -h 127.0.0.1 -p "$PORT" >/dev/null || { log "PostgreSQL did not become ready on 127.0.0.1:$PORT"; exit 1; }

psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres "$@"; }

if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    log "creating role $ROLE"
    psql_admin -c "CREATE ROLE \"$ROLE\" LOGIN PASSWORD '$PASSWORD'"
fi
if [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    log "creating database $DB"
    as_postgres createdb -p "$PORT" -O "$ROLE" "$DB"
fi

echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB" >&3
