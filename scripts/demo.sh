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

started=0
if ! "$BIN/devstack" status --state-dir "$STATE" >/dev/null 2>&1; then
  "$BIN/devstack" up --state-dir "$STATE" --edge-port 0
  started=1
fi
cleanup() { if [ "$started" = 1 ]; then "$BIN/devstack" down --state-dir "$STATE" >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT
eval "$("$BIN/devstack" env --state-dir "$STATE")"

"$BIN/python" scripts/demo.py "$CAPTURE" "$OUT"
echo "worker log: $OUT/worker.log, dead letters: $OUT/dead-letters/"
