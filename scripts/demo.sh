#!/usr/bin/env bash
# The main job on the local stack: start devstack (kinesis-mock, moto, the Personalize emulator,
# the edge), produce a shipped clickstream capture into the Kinesis stream, run the stream worker
# under the real KCL daemon until every record is done, and show what reached Personalize.
# Stops the stack it started when done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=.venv/bin
STATE="${DEVSTACK_STATE_DIR:-.devstack}"
CAPTURE="${1:-tests/fixtures/kinesis_capture.jsonl}"
OUT="${DEMO_OUT:-out/demo}"
mkdir -p "$OUT"

# shellcheck source=devstack-session.sh source-path=SCRIPTDIR
source scripts/devstack-session.sh

"$BIN/python" scripts/demo.py "$CAPTURE" "$OUT"
echo "worker log: $OUT/worker.log, dead letters: $OUT/dead-letters/"
