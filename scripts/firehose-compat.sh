#!/usr/bin/env bash
# Firehose compatibility check of local-broker: boto3 drives the Firehose API
# (scripts/firehose_compat.py) and the broker delivers into an independent S3 implementation,
# moto_server (PyPI `moto[server]`), through --s3-endpoint.
#
#   bash scripts/firehose-compat.sh
#
# Builds the release broker, starts moto_server and the broker on loopback, runs the suite, stops
# both on any exit, and ends with `N passed, M failed` alone on a line. Exit status is non-zero if
# any check failed. Needs python3 (with venv) and cargo; installs boto3 + moto[server] into
# target/compat-venv. KINESIS_COMPAT_NO_BUILD=1 skips the cargo build; FIREHOSE_COMPAT_BROKER=PATH
# runs another broker binary (e.g. a debug build).
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=target/compat-venv
BROKER="${FIREHOSE_COMPAT_BROKER:-${CARGO_TARGET_DIR:-target}/release/local-broker}"

# ---- toolchain -------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import boto3, moto.server, flask' 2>/dev/null; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check boto3 'moto[server]'
fi
# shellcheck source=lib/compat-broker.sh
source scripts/lib/compat-broker.sh
build_broker

# Dummy credentials, and no user config that could change region or endpoints.
export AWS_ACCESS_KEY_ID=AKIDCOMPAT AWS_SECRET_ACCESS_KEY=compat-secret AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL

# moto_server takes a port; ask the kernel for a free one (it is re-bound at once).
MOTO_PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
S3_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
# The broker only dials S3 when it delivers, so it may start first (and own the exit traps).
start_broker --s3-endpoint "$S3_ENDPOINT"
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.out" 2>&1 &
EXTRA_PIDS+=($!)

# Both must answer before the suite starts (bounded: 20 s).
"$VENV/bin/python" - "$S3_ENDPOINT" <<'PY'
import sys, time, urllib.request
deadline = time.monotonic() + 20
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2):
            break
    except OSError as err:
        if getattr(err, "code", None):
            break  # an HTTP error status still means moto is up
    if time.monotonic() > deadline:
        sys.exit(f"moto_server at {sys.argv[1]} did not answer within 20 s")
    time.sleep(0.2)
PY
echo "local-broker at $ENDPOINT, moto_server S3 at $S3_ENDPOINT"

# ---- suite -------------------------------------------------------------------------------------
PASSED=0
FAILED=0
"$VENV/bin/python" scripts/firehose_compat.py --endpoint "$ENDPOINT" --s3-endpoint "$S3_ENDPOINT" \
    --counts-file "$WORK/counts.json" || true
if [ -s "$WORK/counts.json" ]; then
    read -r PASSED FAILED < <("$VENV/bin/python" -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["passed"], c["failed"])' "$WORK/counts.json")
else
    echo "FAIL firehose suite: it crashed before reporting its counts"
    FAILED=1
fi
if [ "$FAILED" -ne 0 ]; then
    echo "--- broker stderr"; tail -n 40 "$WORK/broker.err" || true
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
