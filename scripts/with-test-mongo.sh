#!/usr/bin/env bash
# Runs a command with SecantusDB test servers (MongoDB wire protocol on WiredTiger): one
# that reports a replica set (transactions work), one started with --standalone, and a
# second replica set standing in for a second cluster, and one that requires
# authentication (SCRAM), with a root user whose password is made up for this run.
# Installs SecantusDB into .venv on first use, starts both on free ports with throwaway
# storage, exports their URIs and stops them afterwards, whatever the command's outcome.
#
#   ORGSVC_TEST_MONGODB_URI             the replica-set server
#   ORGSVC_TEST_MONGODB_STANDALONE_URI  the standalone server
#   ORGSVC_TEST_MONGODB_SECOND_URI      the second cluster's server
#   ORGSVC_TEST_MONGODB_AUTH_URI        the server with --auth, as its root user
#   ORGSVC_TEST_MONGODB_PID             the replica-set server's process id
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
version="0.7.0b3"

if [ ! -x "$venv/bin/secantusd-py" ]; then
    echo "installing SecantusDB $version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "SecantusDB==$version"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/orgsvc-mongo.XXXXXX")
# Servers are started inside command substitutions (subshells), so their pids are kept in
# files rather than in a variable.
cleanup() {
    local pidfile pid
    for pidfile in "$work"/*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME [FLAGS...]: starts a server and prints its port once it accepts connections;
# on the port in $PORT if set (a restart), else on a free one.
start() {
    local name=$1; shift
    local attempt port pid
    for attempt in 1 2 3; do
        port=${PORT:-$(free_port)}
        "$venv/bin/secantusd-py" --host 127.0.0.1 --port "$port" --storage-path "$work/$name" \
            --log-level WARNING "$@" >"$work/$name.log" 2>&1 &
        pid=$!
        echo "$pid" >"$work/$name.pid"
        for _ in $(seq 1 150); do
            if python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
                echo "$port"
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill "$pid" 2>/dev/null || true
        echo "SecantusDB ($name) did not start on port $port (attempt $attempt):" >&2
        tail -n 20 "$work/$name.log" >&2 || true
    done
    return 1
}

# stop NAME: stops a server and waits until it has exited (its storage is locked until then).
stop() {
    local pid
    pid=$(cat "$work/$1.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

# A real mongod sizes its oplog in bytes (5% of the disk by default); the test server caps
# it at 100,000 entries, which the copy of a 100,000-document tenant move (make bench)
# fills on its own, pruning the move's change stream position.
oplog=(--oplog-max-entries 2000000)
replica_port=$(start replica "${oplog[@]}")
standalone_port=$(start standalone --standalone)
second_port=$(start second "${oplog[@]}")
# The authenticating server: a root user is created while it runs without --auth, as
# SecantusDB's --help says, then it restarts with --auth on the same port and storage.
auth_password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
auth_port=$(start auth)
"$venv/bin/python" - "$auth_port" "$auth_password" <<'PY'
import sys
from pymongo import MongoClient
client = MongoClient(f"mongodb://127.0.0.1:{sys.argv[1]}/?directConnection=true", serverSelectionTimeoutMS=10000)
client.admin.command("createUser", "root", pwd=sys.argv[2], roles=[{"role": "root", "db": "admin"}])
PY
stop auth
auth_port=$(PORT=$auth_port start auth --auth)
export ORGSVC_TEST_MONGODB_URI="mongodb://127.0.0.1:$replica_port/?directConnection=true"
export ORGSVC_TEST_MONGODB_STANDALONE_URI="mongodb://127.0.0.1:$standalone_port/?directConnection=true"
export ORGSVC_TEST_MONGODB_SECOND_URI="mongodb://127.0.0.1:$second_port/?directConnection=true"
export ORGSVC_TEST_MONGODB_AUTH_URI="mongodb://root:$auth_password@127.0.0.1:$auth_port/?directConnection=true&authSource=admin"
export ORGSVC_TEST_SECANTUSD="$venv/bin/secantusd-py"
# The benchmark reads the replica-set server's CPU time from /proc to show what the database
# took from the cores it shares with the service.
ORGSVC_TEST_MONGODB_PID=$(cat "$work/replica.pid")
export ORGSVC_TEST_MONGODB_PID
echo "SecantusDB test servers: replica set on $replica_port, standalone on $standalone_port," \
    "second cluster on $second_port, with --auth on $auth_port" >&2

"$@"
