#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL server: a cluster made by initdb in a temporary
# directory, listening on a free loopback port, stopped and removed when the command ends
# (however it ends). As root, the server runs as the `postgres` user (it refuses root).
# The command finds it in EPHEMERA_TEST_POSTGRES (a URL without password) and
# EPHEMERA_TEST_POSTGRES_PASSWORD; each test makes its own database on it.
set -euo pipefail

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [[ -z "$bindir" || ! -x "$bindir/initdb" ]]; then
    echo "with-postgres: Debian's postgresql package is missing (scripts/setup-peers.sh installs it)" >&2
    exit 1
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/ephemera-pg.XXXXXX")
as=()
if [[ $(id -u) -eq 0 ]]; then
    chown postgres "$dir"
    as=(runuser -u postgres --)
fi
stop() {
    "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
printf '%s\n' "$password" >"$dir/pw"
[[ ${#as[@]} -eq 0 ]] || chown postgres "$dir/pw"

"${as[@]}" "$bindir/initdb" -D "$dir/data" -U ephemera --pwfile="$dir/pw" \
    --auth=scram-sha-256 --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    exit 1
}
# fsync off: a throwaway server whose durability no test measures (a crash of the server
# process, which the tests do cause, loses nothing the kernel already has); many connections,
# since every test's stores keep pools. Benches that report figures set
# EPHEMERA_TEST_POSTGRES_FSYNC=on, so PostgreSQL's commits are as durable as SQLite's.
fsync=${EPHEMERA_TEST_POSTGRES_FSYNC:-off}
[[ $fsync == on || $fsync == off ]] || { echo "with-postgres: EPHEMERA_TEST_POSTGRES_FSYNC is on or off" >&2; exit 2; }
"${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=600 -c fsync=$fsync -c shared_buffers=128MB" \
    >/dev/null || {
    cat "$dir/server.log" >&2
    exit 1
}

export EPHEMERA_TEST_POSTGRES="postgres://ephemera@127.0.0.1:$port/postgres"
export EPHEMERA_TEST_POSTGRES_PASSWORD="$password"
echo "with-postgres: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (fsync $fsync)" >&2
set +e
"$@"
rc=$?
set -e
exit "$rc"
