#!/usr/bin/env bash
# Kinesis compatibility check of local-broker through the clients people actually use:
# boto3 (scripts/kinesis_compat.py) and the AWS CLI v1 (PyPI `awscli`).
#
#   bash scripts/kinesis-compat.sh
#
# Builds the release broker, starts it on a free loopback port, runs both suites against it, stops
# it on any exit, and ends with `N passed, M failed` alone on a line. Exit status is non-zero if any
# check failed. Needs python3 (with venv) and cargo; installs boto3 + awscli into target/compat-venv.
# KINESIS_COMPAT_NO_BUILD=1 skips the cargo build and uses the release binary already there.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=target/compat-venv
BROKER="${CARGO_TARGET_DIR:-target}/release/local-broker"

# ---- toolchain -------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import boto3, cbor2' 2>/dev/null || [ ! -x "$VENV/bin/aws" ]; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check boto3 awscli cbor2
fi

# ---- broker ----------------------------------------------------------------------------------
# shellcheck source=lib/compat-broker.sh
source scripts/lib/compat-broker.sh
build_broker
start_broker

# Wait until it answers a real request (bounded: 10 s).
"$VENV/bin/python" - "$ENDPOINT" <<'EOF'
import sys, time, urllib.request
url = sys.argv[1]
deadline = time.monotonic() + 10
while True:
    req = urllib.request.Request(url, data=b"{}", method="POST", headers={
        "X-Amz-Target": "Kinesis_20131202.ListStreams",
        "Content-Type": "application/x-amz-json-1.1"})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            if resp.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"broker at {url} did not answer ListStreams within 10 s")
    time.sleep(0.1)
EOF
echo "local-broker answering at $ENDPOINT (pid $BROKER_PID)"

# Dummy credentials, and no user config that could change region, output or endpoints.
export AWS_ACCESS_KEY_ID=AKIDCOMPAT AWS_SECRET_ACCESS_KEY=compat-secret AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
export AWS_PAGER="" AWS_RETRY_MODE=standard AWS_MAX_ATTEMPTS=1
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_KINESIS

# ---- boto3 -------------------------------------------------------------------------------------
PASSED=0
FAILED=0
echo "== boto3 ($("$VENV/bin/python" -c 'import boto3; print(boto3.__version__)'))"
"$VENV/bin/python" scripts/kinesis_compat.py --endpoint "$ENDPOINT" --counts-file "$WORK/counts.json" || true
if [ -s "$WORK/counts.json" ]; then
    read -r BP BF < <("$VENV/bin/python" -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["passed"], c["failed"])' "$WORK/counts.json")
    PASSED=$((PASSED + BP))
    FAILED=$((FAILED + BF))
else
    echo "FAIL boto3 suite: it crashed before reporting its counts"
    FAILED=$((FAILED + 1))
fi

# ---- AWS CLI -----------------------------------------------------------------------------------
echo "== $("$VENV/bin/aws" --version 2>&1)"
kcli() {
    "$VENV/bin/aws" --endpoint-url "$ENDPOINT" --region us-east-1 kinesis "$@"
}
pass() {
    PASSED=$((PASSED + 1))
    echo "PASS cli: $1"
}
fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL cli: $1: $2"
}
# expect NAME EXPECTED-OUTPUT COMMAND...: the command succeeds and prints exactly EXPECTED-OUTPUT.
expect() {
    local name=$1 expected=$2 out rc=0
    shift 2
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then
        fail "$name" "exit $rc: $out"
    elif [ "$out" != "$expected" ]; then
        fail "$name" "expected '$expected', got '$out'"
    else
        pass "$name"
    fi
}
# expect_error NAME CODE COMMAND...: the command fails and names the AWS error CODE.
expect_error() {
    local name=$1 code=$2 out rc=0
    shift 2
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ] && grep -q "($code)" <<<"$out"; then
        pass "$name"
    else
        fail "$name" "expected $code, got exit $rc: $out"
    fi
}
# run NAME COMMAND...: the command succeeds (its output is kept in $OUT).
OUT=""
run() {
    local name=$1 rc=0
    shift
    OUT=$("$@" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then
        fail "$name" "exit $rc: $OUT"
        return 1
    fi
    pass "$name"
}

S="cli-$$-$RANDOM"
OD="$S-ondemand"
b64() { printf '%s' "$1" | base64 | tr -d '\n'; }

run "create-stream" kcli create-stream --stream-name "$S" --shard-count 2 || true
run "wait stream-exists" kcli wait stream-exists --stream-name "$S" || true
run "create-stream ON_DEMAND" kcli create-stream --stream-name "$OD" --stream-mode-details StreamMode=ON_DEMAND || true
kcli wait stream-exists --stream-name "$OD" >/dev/null 2>&1 || true
expect "describe-stream-summary" "ACTIVE	2	PROVISIONED" \
    kcli describe-stream-summary --stream-name "$S" \
    --query 'StreamDescriptionSummary.[StreamStatus,OpenShardCount,StreamModeDetails.StreamMode]' --output text
expect "describe-stream-summary ON_DEMAND" "4	ON_DEMAND" \
    kcli describe-stream-summary --stream-name "$OD" \
    --query 'StreamDescriptionSummary.[OpenShardCount,StreamModeDetails.StreamMode]' --output text
expect "describe-stream shards" "shardId-000000000000	shardId-000000000001" \
    kcli describe-stream --stream-name "$S" --query 'StreamDescription.Shards[].ShardId' --output text
# Text output applies --query page by page: each of the two streams shows up on its own page.
expect "list-streams (auto-paginated, page size 1)" "$S
$OD" kcli list-streams --page-size 1 --query "StreamNames[?@=='$S' || @=='$OD']" --output text
expect "list-shards" "2" kcli list-shards --stream-name "$S" --query 'length(Shards)' --output text

# AWS CLI v1 sends --data as raw text (v2 would expect base64).
expect "put-record --explicit-hash-key 0 -> shard 0" "shardId-000000000000" \
    kcli put-record --stream-name "$S" --partition-key pk-1 --data "hello cli" --explicit-hash-key 0 \
    --query ShardId --output text
SEQ=$(kcli put-record --stream-name "$S" --partition-key pk-2 --data "second record" --explicit-hash-key 1 \
    --query SequenceNumber --output text 2>&1) || true
expect "put-records" "0" \
    kcli put-records --stream-name "$S" \
    --records Data=third,PartitionKey=pk-3,ExplicitHashKey=2 Data=fourth,PartitionKey=pk-4,ExplicitHashKey=3 \
    --query FailedRecordCount --output text
IT=$(kcli get-shard-iterator --stream-name "$S" --shard-id shardId-000000000000 \
    --shard-iterator-type TRIM_HORIZON --query ShardIterator --output text 2>&1) || true
expect "get-records TRIM_HORIZON reads all four, in order, byte-exact" \
    "pk-1	pk-2	pk-3	pk-4
$(b64 'hello cli')	$(b64 'second record')	$(b64 third)	$(b64 fourth)" \
    kcli get-records --shard-iterator "$IT" --query '[Records[].PartitionKey, Records[].Data]' --output text
IT=$(kcli get-shard-iterator --stream-name "$S" --shard-id shardId-000000000000 \
    --shard-iterator-type AFTER_SEQUENCE_NUMBER --starting-sequence-number "$SEQ" \
    --query ShardIterator --output text 2>&1) || true
expect "get-records AFTER_SEQUENCE_NUMBER" "pk-3	pk-4" \
    kcli get-records --shard-iterator "$IT" --query 'Records[].PartitionKey' --output text
IT=$(kcli get-shard-iterator --stream-name "$S" --shard-id shardId-000000000000 \
    --shard-iterator-type AT_SEQUENCE_NUMBER --starting-sequence-number "$SEQ" \
    --query ShardIterator --output text 2>&1) || true
expect "get-records AT_SEQUENCE_NUMBER" "pk-2	pk-3	pk-4" \
    kcli get-records --shard-iterator "$IT" --query 'Records[].PartitionKey' --output text
IT=$(kcli get-shard-iterator --stream-name "$S" --shard-id shardId-000000000000 \
    --shard-iterator-type AT_TIMESTAMP --timestamp "$(date -u -d '1 hour ago' +%s)" \
    --query ShardIterator --output text 2>&1) || true
expect "get-records AT_TIMESTAMP" "4" \
    kcli get-records --shard-iterator "$IT" --query 'length(Records)' --output text
IT=$(kcli get-shard-iterator --stream-name "$S" --shard-id shardId-000000000000 \
    --shard-iterator-type LATEST --query ShardIterator --output text 2>&1) || true
expect "get-records LATEST" "0" kcli get-records --shard-iterator "$IT" --query 'length(Records)' --output text

expect "update-shard-count 2 -> 4" "2	4" \
    kcli update-shard-count --stream-name "$S" --target-shard-count 4 --scaling-type UNIFORM_SCALING \
    --query '[CurrentShardCount,TargetShardCount]' --output text
expect "list-shards --shard-filter AT_LATEST" "4" \
    kcli list-shards --stream-name "$S" --shard-filter Type=AT_LATEST --query 'length(Shards)' --output text
OPEN0=$(kcli list-shards --stream-name "$S" --shard-filter Type=AT_LATEST --query 'Shards[0].ShardId' --output text 2>&1) || true
run "split-shard" kcli split-shard --stream-name "$S" --shard-to-split "$OPEN0" \
    --new-starting-hash-key 1000 || true
expect "split children name their parent" "$OPEN0	$OPEN0" \
    kcli list-shards --stream-name "$S" --shard-filter Type=AT_LATEST \
    --query "Shards[?ParentShardId=='$OPEN0'].ParentShardId" --output text

run "add-tags-to-stream" kcli add-tags-to-stream --stream-name "$S" --tags env=cli,team=data || true
expect "list-tags-for-stream" "env	cli
team	data" kcli list-tags-for-stream --stream-name "$S" --query 'Tags[].[Key,Value]' --output text
run "increase-stream-retention-period" kcli increase-stream-retention-period --stream-name "$S" \
    --retention-period-hours 48 || true
run "start-stream-encryption" kcli start-stream-encryption --stream-name "$S" --encryption-type KMS \
    --key-id alias/aws/kinesis || true
expect "describe-stream-summary after retention + encryption" "48	KMS" \
    kcli describe-stream-summary --stream-name "$S" \
    --query 'StreamDescriptionSummary.[RetentionPeriodHours,EncryptionType]' --output text
expect "enable-enhanced-monitoring" "IncomingBytes" \
    kcli enable-enhanced-monitoring --stream-name "$S" --shard-level-metrics IncomingBytes \
    --query DesiredShardLevelMetrics --output text
expect "describe-limits" "True" \
    kcli describe-limits --query 'ShardLimit > `0` && OnDemandStreamCount >= `1`' --output text
expect "describe-account-settings" "True" \
    kcli describe-account-settings --query 'MinimumThroughputBillingCommitment.Status != null' --output text

expect_error "describe-stream unknown -> ResourceNotFoundException" ResourceNotFoundException \
    kcli describe-stream --stream-name "$S-missing"
expect_error "create-stream duplicate -> ResourceInUseException" ResourceInUseException \
    kcli create-stream --stream-name "$S" --shard-count 1
expect_error "create-stream bad name -> ValidationException" ValidationException \
    kcli create-stream --stream-name "bad name!" --shard-count 1
expect_error "get-shard-iterator bad sequence number -> InvalidArgumentException" InvalidArgumentException \
    kcli get-shard-iterator --stream-name "$S" --shard-id shardId-000000000000 \
    --shard-iterator-type AT_SEQUENCE_NUMBER --starting-sequence-number 12345
expect_error "get-records garbage iterator -> InvalidArgumentException" InvalidArgumentException \
    kcli get-records --shard-iterator not-an-iterator

run "delete-stream" kcli delete-stream --stream-name "$S" || true
run "wait stream-not-exists" kcli wait stream-not-exists --stream-name "$S" || true
run "delete-stream ON_DEMAND" kcli delete-stream --stream-name "$OD" || true

# ---- HTTP/2: cleartext with prior knowledge, and over TLS by ALPN --------------------------------
h2_call() { # $1: url, rest: curl flags
    local url=$1
    shift
    curl -s "$@" -X POST "$url/" -H 'X-Amz-Target: Kinesis_20131202.ListStreams' \
        -H 'Content-Type: application/x-amz-json-1.1' -d '{}' -o /dev/null -w '%{http_version} %{http_code}'
}
if command -v curl >/dev/null 2>&1; then
    got=$(h2_call "$ENDPOINT" --http2-prior-knowledge || true)
    if [ "$got" = "2 200" ]; then pass "curl --http2-prior-knowledge (h2c)"; else fail "curl --http2-prior-knowledge (h2c)" "got '$got'"; fi
    RUST_LOG=warn "$BROKER" --host 127.0.0.1 --port 0 --tls --tls-cert-out "$WORK/tls.pem" >"$WORK/tls.out" 2>"$WORK/tls.err" &
    TLS_PID=$!
    TLS_ENDPOINT=""
    for _ in $(seq 1 100); do
        TLS_ENDPOINT=$(sed -n 's/^local-broker listening on //p' "$WORK/tls.out" | head -n 1)
        [ -n "$TLS_ENDPOINT" ] && break
        sleep 0.1
    done
    TLS_LOCAL=${TLS_ENDPOINT/127.0.0.1/localhost}
    got=$(h2_call "$TLS_LOCAL" --http2 --cacert "$WORK/tls.pem" || true)
    if [ "$got" = "2 200" ]; then pass "curl --http2 over TLS (ALPN h2)"; else fail "curl --http2 over TLS (ALPN h2)" "got '$got' from '$TLS_ENDPOINT'"; fi
    got=$(h2_call "$TLS_LOCAL" --http1.1 --cacert "$WORK/tls.pem" || true)
    if [ "$got" = "1.1 200" ]; then pass "curl --http1.1 over TLS"; else fail "curl --http1.1 over TLS" "got '$got'"; fi
    kill "$TLS_PID" 2>/dev/null || true
    wait "$TLS_PID" 2>/dev/null || true
else
    fail "curl available for the HTTP/2 checks" "curl is not installed"
fi

# ---- the broker itself --------------------------------------------------------------------------
if kill -0 "$BROKER_PID" 2>/dev/null; then
    pass "broker still running after both suites"
else
    fail "broker still running after both suites" "it exited; stderr: $(tail -n 20 "$WORK/broker.err")"
fi
if grep -q "ERROR" "$WORK/broker.out" "$WORK/broker.err"; then
    fail "broker logged no errors" "$(grep -h ERROR "$WORK/broker.out" "$WORK/broker.err" | head -n 5)"
else
    pass "broker logged no errors"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
