"""``stream-worker produce`` against the local stack's Kinesis, through the edge.

Each test creates its own stream; the records are read back with GetRecords from every shard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickstream.capture import read_capture
from stream_worker.produce import produce
from tests.integration.support import read_stream

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
AwsClient = Callable[..., Any]


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def create_stream(kinesis: Any, shards: int) -> str:
    name = f"produce-{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=name, ShardCount=shards)

    def active() -> bool:
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        return bool(summary["StreamStatus"] == "ACTIVE")

    wait_until(active, timeout=30, what=f"stream {name} to be ACTIVE")
    return name


def test_the_cli_puts_a_kinesis_capture_once_per_record_with_its_partition_keys(
    aws_client: AwsClient, devstack_env: dict[str, str], tmp_path: Path
) -> None:
    kinesis = aws_client("kinesis")
    stream = create_stream(kinesis, shards=2)
    capture = FIXTURES / "kinesis_capture.jsonl"
    summary_file = tmp_path / "summary.json"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STREAM_WORKER_")}, **devstack_env}
    result = subprocess.run(
        [
            *(sys.executable, "-m", "stream_worker.cli", "produce", str(capture)),
            *("--stream", stream, "--summary-json", str(summary_file), "--no-progress"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(summary_file.read_text())
    assert summary == json.loads(result.stdout)

    expected = list(read_capture(capture))
    assert summary["stream"] == stream
    assert summary["records"] == summary["put"] == len(expected)
    assert summary["failed"] == 0

    stored = read_stream(kinesis, stream, len(expected))
    assert Counter((r["Data"], r["PartitionKey"]) for r in stored) == Counter(
        (r.data, r.partition_key) for r in expected
    )
    assert len(stored) == len(expected)  # every record once
    # A partition key always lands on one shard, and the summary names what landed where.
    shard_of: dict[str, set[str]] = {}
    for r in stored:
        shard_of.setdefault(r["PartitionKey"], set()).add(r["ShardId"])
    assert all(len(shards) == 1 for shards in shard_of.values())
    by_shard = Counter(r["ShardId"] for r in stored)
    assert {k: v["records"] for k, v in summary["shards"].items()} == dict(by_shard)
    for shard_id, counts in summary["shards"].items():
        last = max(int(r["SequenceNumber"]) for r in stored if r["ShardId"] == shard_id)
        assert int(counts["last_sequence_number"]) == last


def test_a_gzip_json_lines_capture_goes_in_keyed_by_player_else_session(aws_client: AwsClient) -> None:
    kinesis = aws_client("kinesis")
    stream = create_stream(kinesis, shards=2)
    capture = FIXTURES / "clean.jsonl.gz"
    summary = produce(capture, stream, client=kinesis, rate=5000, progress=False)
    expected = list(read_capture(capture))
    assert summary.put == len(expected)
    assert summary.failed_records == 0

    stored = read_stream(kinesis, stream, len(expected))
    assert sorted((r["Data"], r["PartitionKey"]) for r in stored) == sorted((r.data, r.partition_key) for r in expected)
    for r in stored:
        event = json.loads(r["Data"])
        assert r["PartitionKey"] == (
            event.get("player_id") or event.get("playerId") or event.get("session_id") or event.get("sessionId")
        )


def test_an_unknown_stream_is_a_configuration_error(devstack_env: dict[str, str]) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STREAM_WORKER_")}, **devstack_env}
    result = subprocess.run(
        [sys.executable, "-m", "stream_worker.cli", "produce", str(FIXTURES / "clean.jsonl"), "--stream", "no-such"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "ResourceNotFoundException" in result.stderr
