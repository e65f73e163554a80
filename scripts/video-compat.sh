#!/usr/bin/env bash
# Kinesis Video Streams compatibility check of local-broker with real media: ffmpeg-made H.264 and
# H.264+AAC in through PutMedia (curl, chunked), out through boto3 GetMedia / GetClip and ffprobe
# over HLS (scripts/video_compat.py).
#
#   bash scripts/video-compat.sh
#
# Builds the release broker, starts it on a free loopback port, runs the suite, stops it on any
# exit, and ends with `N passed, M failed` alone on a line. Exit status is non-zero if any check
# failed. Installs Debian's ffmpeg (apt-get) when ffmpeg/ffprobe are missing, and boto3 into
# target/compat-venv. KINESIS_COMPAT_NO_BUILD=1 reuses the release binary already there.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=target/compat-venv
BROKER="${CARGO_TARGET_DIR:-target}/release/local-broker"

# ---- toolchain -------------------------------------------------------------------------------
if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
fi
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import boto3' 2>/dev/null; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check boto3
fi

# ---- broker ----------------------------------------------------------------------------------
# shellcheck source=lib/compat-broker.sh
source scripts/lib/compat-broker.sh
build_broker
start_broker
echo "local-broker answering at $ENDPOINT (pid $BROKER_PID)"

export AWS_ACCESS_KEY_ID=AKIDCOMPAT AWS_SECRET_ACCESS_KEY=compat-secret AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL

echo "== video: boto3 $("$VENV/bin/python" -c 'import boto3; print(boto3.__version__)'), $(ffmpeg -version | head -n 1)"
"$VENV/bin/python" scripts/video_compat.py --endpoint "$ENDPOINT"
