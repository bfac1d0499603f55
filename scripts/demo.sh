#!/usr/bin/env bash
# The main job on the local stack: start devstack (kinesis-mock, moto, the Personalize emulator,
# the edge), push a shipped clickstream capture through the stream worker's pipeline, and show
# what reached Personalize. Stops the stack it started when done.
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

echo "== replaying $CAPTURE through the stream worker pipeline"
"$BIN/stream-worker" replay "$CAPTURE" --dead-letter-url "$OUT/dead-letters" --summary-json "$OUT/summary.json" >/dev/null
"$BIN/python" - "$OUT/summary.json" <<'PY'
import json, os, sys, urllib.request
summary = json.load(open(sys.argv[1]))
base = os.environ["AWS_ENDPOINT_URL_PERSONALIZE_EVENTS"].rstrip("/")
tracker = os.environ["STREAM_WORKER_TRACKING_ID"]
with urllib.request.urlopen(f"{base}/_emulator/stats", timeout=10) as response:
    stats = json.load(response)
print(f"records read          {summary['records']:>8,}")
print(f"events decoded        {summary['events_received']:>8,}")
print(f"events delivered      {summary['events_sent']:>8,}  in {summary['put_events_calls']:,} PutEvents calls")
for reason, n in sorted(summary["dropped"].items()):
    print(f"  dropped  {reason:<20} {n:>6,}")
for reason, n in sorted(summary["dead_letters"].items()):
    print(f"  dead-lettered {reason:<15} {n:>6,}")
received = stats.get("eventsByTracker", {}).get(tracker, 0)
print(f"Personalize (emulator) received {received:,} events for tracker {tracker}, "
      f"{stats.get('distinctEventIds', 0):,} distinct eventIds")
PY
echo "summary: $OUT/summary.json, dead letters: $OUT/dead-letters/"
