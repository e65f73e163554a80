#!/usr/bin/env bash
# KPL aggregation compatibility of kcl::aggregation with the producer library people use from
# Python, aws-kinesis-agg (PyPI `aws_kinesis_agg`), in both directions:
#   1. aws-kinesis-agg aggregates, our deaggregate() unpacks (plus corrupt inputs that must pass
#      through unchanged);
#   2. our Aggregator packs, aws-kinesis-agg's deaggregator unpacks; where both split alike, the
#      aggregates must also be byte-identical.
#
#   bash scripts/kpl-compat.sh
#
# Files go to target/kpl-compat/; the Rust half is the test kcl::aggregation::tests::kpl_compat_files,
# which does nothing unless KPL_COMPAT_DIR is set. Ends with `N passed, M failed` alone on a line;
# exit status is non-zero if any check failed. Needs python3 (with venv) and cargo; installs
# aws_kinesis_agg into target/compat-venv.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=target/compat-venv
OUT="$PWD/target/kpl-compat"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import aws_kinesis_agg' 2>/dev/null; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check aws_kinesis_agg
fi
echo "== aws-kinesis-agg $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("aws_kinesis_agg"))')"

# Stale files from an earlier run must not be mistaken for this run's output.
rm -rf "$OUT"
mkdir -p "$OUT"
"$VENV/bin/python" scripts/kpl_compat.py generate --dir "$OUT"

# A failing Rust test is counted by the check step (its results file lists every mismatch, and a
# crash leaves it missing), so keep going to report.
KPL_COMPAT_DIR="$OUT" cargo test --quiet -p kcl --lib aggregation::tests::kpl_compat_files -- --exact \
    || echo "(the Rust half failed; details follow)"

"$VENV/bin/python" scripts/kpl_compat.py check --dir "$OUT"
