#!/usr/bin/env bash
# Differential test of the broker's DynamoDB service against dynalite.
#
#   bash scripts/dynamodb-differential.sh [--verbose]
#
# Idempotent: creates target/compat-venv (boto3) and target/dynalite (dynalite@4) when missing,
# builds target/release/local-broker, starts both servers on free 127.0.0.1 ports, runs
# scripts/dynamodb-differential.py against them, and stops them again. Exits non-zero on an
# unexpected difference. Deliberate differences are listed in the Python script.
set -euo pipefail

cd "$(dirname "$0")/.."
venv=target/compat-venv
dynalite=target/dynalite/node_modules/dynalite/cli.js
logs=target/dynamodb-differential
mkdir -p "$logs"

if ! "$venv/bin/python" -c 'import boto3' 2>/dev/null; then
    echo "== setting up $venv (boto3)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check boto3
fi
if [ ! -f "$dynalite" ]; then
    echo "== installing dynalite@4 into target/dynalite"
    npm install --prefix target/dynalite --no-audit --no-fund --silent dynalite@4
fi
echo "== building the broker (release)"
cargo build --release --quiet -p local-broker

free_port() {
    "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
reference_port=$(free_port)
broker_port=$(free_port)

pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

# dynalite listens on every interface unless told otherwise; keep it on loopback.
node "$dynalite" --host 127.0.0.1 --port "$reference_port" \
    --createTableMs 0 --deleteTableMs 0 --updateTableMs 0 >"$logs/dynalite.log" 2>&1 &
pids+=($!)
"${CARGO_TARGET_DIR:-target}/release/local-broker" --host 127.0.0.1 --port "$broker_port" >"$logs/broker.log" 2>&1 &
pids+=($!)

wait_for() {
    local port=$1 name=$2
    for _ in $(seq 1 100); do
        if "$venv/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "$name did not start on port $port; see $logs/" >&2
    return 1
}
wait_for "$reference_port" dynalite
wait_for "$broker_port" local-broker

echo "== replaying the scenario (dynalite :$reference_port, broker :$broker_port)"
"$venv/bin/python" scripts/dynamodb-differential.py \
    --reference "http://127.0.0.1:$reference_port" \
    --broker "http://127.0.0.1:$broker_port" "$@"
