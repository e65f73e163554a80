#!/usr/bin/env bash
# local-broker against the other local Kinesis servers, in one run, on this machine:
#
#   bash scripts/bench-peers.sh [extra kinesis-bench flags, e.g. --duration-secs 10]
#
# Installs kinesalite 3 and kinesis-mock (npm package `kinesis-local`) into target/peers from the
# npm registry, builds the release broker and kinesis-bench, then starts each server in turn on
# 127.0.0.1 only (the peers are wrapped: both bind every interface by default) and runs the same
# native workload against it: PutRecords throughput, PutRecord latency, verified read-back, server
# CPU per record and peak RSS from /proc/<pid>, startup (spawn → first successful ListStreams) and
# idle RSS. Prints the table of ratios ours/peer and writes JSON to target/bench-peers.json.
# Takes about two minutes; not part of .ci/run. Needs cargo, node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
PEERS=target/peers
JSON="$TARGET/bench-peers.json"

for tool in node npm cargo; do
    if ! command -v "$tool" >/dev/null; then
        echo "bench-peers: needs $tool (Node.js: apt-get install nodejs npm)" >&2
        exit 1
    fi
done
mkdir -p "$PEERS"
if [ ! -f "$PEERS/node_modules/kinesalite/package.json" ] ||
    [ ! -f "$PEERS/node_modules/kinesis-local/package.json" ]; then
    echo "== npm install kinesalite@3 kinesis-local@0.6 into $PEERS"
    npm install --prefix "$PEERS" --no-audit --no-fund --loglevel=error kinesalite@3 kinesis-local@0.6
fi

echo "== cargo build --release -p local-broker -p bench"
cargo build --release -p local-broker -p bench

echo "== kinesis-bench: local-broker, kinesalite, kinesis-mock (one at a time)"
"$TARGET/release/kinesis-bench" \
    --spawn-binary "$TARGET/release/local-broker" \
    --compare kinesalite,kinesis-mock \
    --peers-dir "$PEERS" \
    --json "$JSON" \
    "$@"
