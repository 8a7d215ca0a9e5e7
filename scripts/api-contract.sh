#!/usr/bin/env bash
# Checks the running service against its own OpenAPI document with schemathesis (every
# check, positive and negative cases, stateful links), once on the memory store and once
# on MongoDB (the replica-set test server that scripts/with-test-mongo.sh started). Any
# failure fails the run.
#
#   scripts/with-test-mongo.sh scripts/api-contract.sh [target/debug/orgsvc]
#
# Installs schemathesis into .venv on first use. The seed is fixed so that CI runs the same
# cases every time (set ORGSVC_CONTRACT_SEED to explore others); the rate limits are off
# (they are tested on their own, and would turn most generated cases into 429s) and argon2
# is cheap, so the run takes a minute or two.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
version="4.32.5"
binary=${1:-"$root/target/debug/orgsvc"}
seed=${ORGSVC_CONTRACT_SEED:-20261126}
examples=${ORGSVC_CONTRACT_EXAMPLES:-100}

if [ ! -x "$venv/bin/st" ] || ! "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
    echo "installing schemathesis $version into $venv" >&2
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi
: "${ORGSVC_TEST_MONGODB_URI:?run under scripts/with-test-mongo.sh}"

work=$(mktemp -d "${TMPDIR:-/tmp}/orgsvc-contract.XXXXXX")
service=""
cleanup() {
    if [ -n "$service" ]; then
        kill "$service" 2>/dev/null || true
        wait "$service" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# request METHOD URL [JSON]: prints the response body, fails on a non-2xx status.
request() {
    python3 - "$@" <<'EOF'
import json, sys, urllib.request
method, url = sys.argv[1], sys.argv[2]
body = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=body, method=method, headers={"content-type": "application/json"})
print(urllib.request.urlopen(req, timeout=30).read().decode())
EOF
}

# check STORAGE: starts the service on STORAGE, signs up an organization, runs schemathesis
# with the organization's token, stops the service.
check() {
    local storage=$1 port base token
    port=$(free_port)
    base="http://127.0.0.1:$port"
    env -i PATH="$PATH" HOME="${HOME:-/tmp}" RUST_LOG=warn \
        ORGSVC_HTTP_ADDR="127.0.0.1:$port" ORGSVC_STORAGE="$storage" \
        ORGSVC_MONGODB_URI="$ORGSVC_TEST_MONGODB_URI" ORGSVC_MONGODB_DATABASE="contract_$(date +%s%N)" \
        ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE=0 ORGSVC_RATE_LIMIT_CREATE_PER_MINUTE=0 \
        ORGSVC_RATE_LIMIT_REFRESH_PER_MINUTE=0 ORGSVC_ARGON2_MEMORY_KIB=1024 ORGSVC_ARGON2_ITERATIONS=1 \
        "$binary" serve >"$work/$storage.log" 2>&1 &
    service=$!
    for _ in $(seq 1 100); do
        request GET "$base/health/ready" >/dev/null 2>&1 && break
        sleep 0.2
    done
    request POST "$base/org/create" \
        '{"organization_name": "Contract Test", "email": "contract@example.test", "password": "correct horse battery"}' \
        >/dev/null
    token=$(request POST "$base/admin/login" '{"email": "contract@example.test", "password": "correct horse battery"}' |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
    echo "schemathesis against the $storage store ($examples examples per operation, seed $seed)" >&2
    (cd "$work" && "$venv/bin/st" run "$base/openapi.json" --checks all --max-examples "$examples" \
        --seed "$seed" --request-timeout 60 --header "Authorization: Bearer $token" --no-color) || {
        echo "schemathesis found failures on the $storage store; service log:" >&2
        tail -n 50 "$work/$storage.log" >&2
        return 1
    }
    kill "$service"
    wait "$service" 2>/dev/null || true
    service=""
}

check memory
check mongodb
