# Sourced by the compatibility scripts: builds the release broker and runs it for one script.
#
#   BROKER=...; source scripts/lib/compat-broker.sh; build_broker; start_broker [BROKER FLAGS...]
#
# start_broker sets WORK (a scratch directory), BROKER_PID and ENDPOINT (a loopback URL), and
# installs traps that stop the broker, every process in EXTRA_PIDS (other servers a script
# starts afterwards) and remove WORK on any exit.
# KINESIS_COMPAT_NO_BUILD=1 reuses an existing release binary (e.g. one CI already built).

build_broker() {
    if [ "${KINESIS_COMPAT_NO_BUILD:-0}" != 1 ]; then
        cargo build --release -p local-broker
    fi
    if [ ! -x "$BROKER" ]; then
        echo "$BROKER is missing: build it with cargo build --release -p local-broker" >&2
        exit 1
    fi
}

EXTRA_PIDS=()

cleanup() {
    for pid in "${BROKER_PID:-}" "${EXTRA_PIDS[@]}"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}

start_broker() {
    WORK=$(mktemp -d)
    BROKER_PID=""
    trap cleanup EXIT
    # Without these, an interrupted run would skip the EXIT trap and leave the broker running.
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # Port 0: the broker binds a free port and prints the URL, so there is no pick-then-bind race.
    RUST_LOG=warn "$BROKER" --host 127.0.0.1 --port 0 "$@" >"$WORK/broker.out" 2>"$WORK/broker.err" &
    BROKER_PID=$!
    ENDPOINT=""
    for _ in $(seq 1 100); do
        ENDPOINT=$(sed -n 's/^local-broker listening on //p' "$WORK/broker.out" | head -n 1)
        [ -n "$ENDPOINT" ] && break
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            echo "local-broker exited before listening:" >&2
            cat "$WORK/broker.out" "$WORK/broker.err" >&2
            exit 1
        fi
        sleep 0.1
    done
    if [ -z "$ENDPOINT" ]; then
        echo "local-broker printed no endpoint within 10 s" >&2
        exit 1
    fi
    case "$ENDPOINT" in
        http://127.0.0.1:*) ;;
        *) echo "unexpected endpoint '$ENDPOINT' (only loopback is allowed)" >&2; exit 1 ;;
    esac
}
