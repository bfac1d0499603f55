"""The main job on the local stack, for real: produce a capture into Kinesis, run the stream worker
under the KCL MultiLangDaemon until every record is done, stop it gracefully, and show what reached
Personalize. Expects the devstack environment (``eval "$(devstack env)"``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DEADLINE = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
        return str(response.read().decode())


def metric_sums(text: str) -> dict[str, float]:
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


def main() -> int:
    capture = Path(sys.argv[1])
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    worker = [str(bin_dir / "stream-worker")]

    print(f"== producing {capture} into stream {os.environ['STREAM_WORKER_STREAM_NAME']}", flush=True)
    produced = subprocess.run(
        [*worker, "produce", str(capture), "--summary-json", str(out / "produce.json"), "--no-progress"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    records = json.loads((out / "produce.json").read_text())["records"] if produced.returncode == 0 else 0
    print(f"   {records:,} records in the stream", flush=True)

    started = time.time()
    port = free_port()
    env = {
        **os.environ,
        "STREAM_WORKER_METRICS_ADDRESS": "127.0.0.1",
        "STREAM_WORKER_METRICS_PORT": str(port),
        "STREAM_WORKER_DEAD_LETTER_URL": str(out / "dead-letters"),
        "STREAM_WORKER_RUN_DIR": str(out / "run"),
        "STREAM_WORKER_APPLICATION_NAME": f"demo-{int(time.time())}",
        "STREAM_WORKER_IDLE_TIME_BETWEEN_READS_MILLIS": "250",
        "STREAM_WORKER_FAILOVER_TIME_MILLIS": "2000",
        "STREAM_WORKER_SHARD_SYNC_INTERVAL_MILLIS": "2000",
        "STREAM_WORKER_CHECKPOINT_INTERVAL_SECONDS": "1",
    }
    print("== running the stream worker under the KCL MultiLangDaemon (the first lease takes up to 30 s)", flush=True)
    with (out / "worker.log").open("wb") as log:
        process = subprocess.Popen([*worker, "run"], env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    sums: dict[str, float] = {}
    try:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if process.poll() is not None:
                print(f"the worker exited early with status {process.returncode}; see {out / 'worker.log'}")
                return 1
            try:
                sums = metric_sums(get(f"http://127.0.0.1:{port}/metrics"))
            except OSError:
                sums = {}
            done = (
                sums.get("stream_worker_records_total", 0) >= records
                and sums.get("stream_worker_in_flight_events", 1) == 0
            )
            if done:
                break
            time.sleep(0.5)
        else:
            print(f"not every record was done within {DEADLINE:.0f} s; see {out / 'worker.log'}")
            return 1
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            status = process.wait(60)
            print(f"== worker stopped gracefully (SIGTERM), exit status {status}")

    base = os.environ["AWS_ENDPOINT_URL_PERSONALIZE_EVENTS"].rstrip("/")
    tracker = os.environ["STREAM_WORKER_TRACKING_ID"]
    received = json.loads(
        get(f"{base}/_emulator/events?trackingId={tracker}&since={started}&format=compact&fields=eventId&limit=1000000")
    )
    ids = [row[0] for row in received["rows"]]
    print(f"records processed        {sums.get('stream_worker_records_total', 0):>8,.0f}")
    print(f"events decoded           {sums.get('stream_worker_events_received_total', 0):>8,.0f}")
    print(f"events delivered         {sums.get('stream_worker_events_delivered_total', 0):>8,.0f}")
    print(f"events dropped by design {sums.get('stream_worker_events_dropped_total', 0):>8,.0f}")
    print(f"dead letters             {sums.get('stream_worker_dead_letters_total', 0):>8,.0f}")
    print(f"Personalize (emulator) received {len(ids):,} events for {tracker} in this run, {len(set(ids)):,} distinct")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
