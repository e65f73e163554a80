#!/usr/bin/env bash
# The broker's status page as a person sees it: headless Chromium renders http://<broker>/ and
# takes a screenshot, and the page it rendered must show the stream, its shard lineage, the
# consumer and the KCL lease table the script created.
#
#   bash scripts/status-page.sh            # screenshot in target/status-page.png
#
# Builds the release broker (STATUS_PAGE_NO_BUILD=1 reuses it), starts it on a free loopback port,
# creates a stream, splits a shard, registers a consumer and writes a lease with curl, then runs
# Debian's `chromium` (installed with apt-get if missing) with --headless --no-sandbox
# --disable-gpu --disable-background-networking. Ends with `N passed, M failed`; exits 0 with a
# SKIP line only if chromium is missing and cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
BROKER="${CARGO_TARGET_DIR:-target}/release/local-broker"
SHOT=target/status-page.png

# ---- chromium ----------------------------------------------------------------------------------
if ! command -v chromium >/dev/null; then
    echo "== installing chromium (Debian package)"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 || true
    fi
fi
if ! command -v chromium >/dev/null; then
    echo "SKIP status-page: chromium is not installed and apt-get could not install it"
    exit 0
fi

# ---- broker ------------------------------------------------------------------------------------
# shellcheck source=lib/compat-broker.sh
source scripts/lib/compat-broker.sh
KINESIS_COMPAT_NO_BUILD="${STATUS_PAGE_NO_BUILD:-${KINESIS_COMPAT_NO_BUILD:-0}}" build_broker
start_broker

call() { # call SERVICE_TARGET JSON
    local content_type=application/x-amz-json-1.1
    case "$1" in DynamoDB_*) content_type=application/x-amz-json-1.0 ;; esac
    curl -sS --fail-with-body --max-time 10 -X POST "$ENDPOINT/" \
        -H "X-Amz-Target: $1" -H "Content-Type: $content_type" -d "$2" >/dev/null
}
call Kinesis_20131202.CreateStream '{"StreamName":"page-orders","ShardCount":1}'
for i in 1 2 3; do
    call Kinesis_20131202.PutRecord "{\"StreamName\":\"page-orders\",\"PartitionKey\":\"k$i\",\"Data\":\"aGVsbG8=\"}"
done
call Kinesis_20131202.SplitShard '{"StreamName":"page-orders","ShardToSplit":"shardId-000000000000","NewStartingHashKey":"170141183460469231731687303715884105728"}'
ARN="arn:aws:kinesis:us-east-1:000000000000:stream/page-orders"
call Kinesis_20131202.RegisterStreamConsumer "{\"StreamARN\":\"$ARN\",\"ConsumerName\":\"page-reader\"}"
call DynamoDB_20120810.CreateTable '{"TableName":"page-app","BillingMode":"PAY_PER_REQUEST","AttributeDefinitions":[{"AttributeName":"leaseKey","AttributeType":"S"}],"KeySchema":[{"AttributeName":"leaseKey","KeyType":"HASH"}]}'
call DynamoDB_20120810.PutItem '{"TableName":"page-app","Item":{"leaseKey":{"S":"shardId-000000000001"},"leaseOwner":{"S":"page-worker-1"},"leaseCounter":{"N":"3"},"checkpoint":{"S":"TRIM_HORIZON"}}}'

# ---- chromium ----------------------------------------------------------------------------------
PASSED=0
FAILED=0
check() { # check NAME COMMAND...: passes if the command succeeds
    local name=$1
    shift
    if "$@"; then PASSED=$((PASSED + 1)); echo "PASS $name"; else FAILED=$((FAILED + 1)); echo "FAIL $name"; fi
}
is_png() { head -c 8 "$1" | od -An -tx1 | grep -q "89 50 4e 47"; }
chrome() {
    timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-dev-shm-usage --no-first-run --user-data-dir="$WORK/profile" "$@" 2>>"$WORK/chromium.err"
}
rm -f "$SHOT"
mkdir -p target
rc=0
chrome --window-size=1280,1000 --screenshot="$PWD/$SHOT" "$ENDPOINT/" >/dev/null || rc=$?
check "chromium takes a screenshot of $ENDPOINT/ (exit $rc)" [ "$rc" = 0 ]
size=$(stat -c %s "$SHOT" 2>/dev/null || echo 0)
check "screenshot is a real picture ($size bytes, $SHOT)" [ "$size" -gt 10000 ]
check "screenshot is a PNG" is_png "$SHOT"
chrome --dump-dom "$ENDPOINT/" >"$WORK/dom.html" || true
for text in "local-broker status" page-orders shardId-000000000002 page-reader page-app page-worker-1 "Lease tables (KCL)"; do
    check "rendered page shows '$text'" grep -q "$text" "$WORK/dom.html"
done
if [ "$FAILED" -gt 0 ]; then
    echo "chromium stderr (tail):"
    tail -n 20 "$WORK/chromium.err" || true
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
