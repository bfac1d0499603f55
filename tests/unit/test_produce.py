"""``stream-worker produce``: PutRecords batching, retries of failed entries, pacing, the summary."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from clickstream.capture import CaptureRecord, read_capture
from stream_worker.errors import FatalConfigurationError, RetryableError
from stream_worker.produce import (
    MAX_BYTES_PER_CALL,
    MAX_RECORD_BYTES,
    MAX_RECORDS_PER_CALL,
    Pacer,
    ProduceSummary,
    PutRecordsSender,
    batches,
    entry_size,
    paced_batches,
    produce,
)
from stream_worker.retry import Backoff
from tests.unit.fakes import FakeClock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: Decides the ErrorCode of one entry: (call number, entry) -> None (accepted) or a code.
EntryFate = Callable[[int, dict[str, Any]], str | None]


def call_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "boom"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutRecords")


class FakeKinesis:
    """PutRecords on a two-shard stream; ``fate`` fails entries, ``raise_on`` fails whole calls."""

    def __init__(self, fate: EntryFate | None = None, raise_on: dict[int, Exception] | None = None) -> None:
        self.fate = fate
        self.raise_on = raise_on or {}
        self.calls: list[list[dict[str, Any]]] = []
        self.stored: list[tuple[bytes, str, str]] = []
        self._sequence = 49_000_000_000_000_000_000

    def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        assert len(Records) <= MAX_RECORDS_PER_CALL
        assert sum(len(r["Data"]) + len(r["PartitionKey"].encode()) for r in Records) <= MAX_BYTES_PER_CALL
        self.calls.append(Records)
        number = len(self.calls)
        if number in self.raise_on:
            raise self.raise_on[number]
        answers: list[dict[str, Any]] = []
        for entry in Records:
            code = self.fate(number, entry) if self.fate else None
            if code:
                answers.append({"ErrorCode": code, "ErrorMessage": f"{code} for this entry"})
                continue
            shard = int(hashlib.md5(entry["PartitionKey"].encode()).hexdigest(), 16) % 2
            self._sequence += 1
            self.stored.append((entry["Data"], entry["PartitionKey"], f"shardId-00000000000{shard}"))
            answers.append({"ShardId": f"shardId-00000000000{shard}", "SequenceNumber": str(self._sequence)})
        return {"FailedRecordCount": sum(1 for a in answers if "ErrorCode" in a), "Records": answers}


def record(i: int, size: int = 40, key: str | None = None) -> CaptureRecord:
    return CaptureRecord(data=(f"{i:08d}".encode() * size)[:size], partition_key=key or f"p-{i % 7}", line=i)


def sender(client: FakeKinesis, sleeps: list[float] | None = None, **options: Any) -> PutRecordsSender:
    naps = sleeps if sleeps is not None else []
    return PutRecordsSender(
        client,
        "clickstream",
        ProduceSummary(stream="clickstream"),
        backoff=Backoff(base=0.1, cap=2.0, rng=random.Random(3)),
        sleep=naps.append,
        **options,
    )


# -- batching -------------------------------------------------------------------------------------


def test_batches_hold_at_most_500_records() -> None:
    sizes = [len(b) for b in batches(record(i) for i in range(1234))]
    assert sizes == [500, 500, 234]


def test_batches_hold_at_most_5_mib() -> None:
    big = [record(i, size=1_000_000) for i in range(12)]
    cut = list(batches(big))
    assert [len(b) for b in cut] == [5, 5, 2]
    assert all(sum(entry_size(r) for r in b) <= MAX_BYTES_PER_CALL for b in cut)
    assert [r.line for b in cut for r in b] == list(range(12))


def test_the_partition_key_counts_toward_the_size_in_utf8_bytes() -> None:
    assert entry_size(CaptureRecord(data=b"abc", partition_key="spieler-ü")) == 3 + len("spieler-ü".encode())
    exact = MAX_BYTES_PER_CALL // 2 - len(b"k")
    pair = [CaptureRecord(b"x" * exact, "k"), CaptureRecord(b"y" * exact, "k")]
    assert [len(b) for b in batches(pair)] == [2]
    pair.append(CaptureRecord(b"z", "k"))
    assert [len(b) for b in batches(pair)] == [2, 1]


def test_an_empty_capture_makes_no_batch() -> None:
    assert list(batches([])) == []


# -- sending and retrying -------------------------------------------------------------------------


def test_failed_entries_alone_are_retried_until_they_land() -> None:
    unlucky = {3, 4, 250}

    def fate(call: int, entry: dict[str, Any]) -> str | None:
        line = int(entry["Data"][:8])
        if call == 1 and line in unlucky:
            return "ProvisionedThroughputExceededException"
        if call == 2 and line == 250:
            return "InternalFailure"
        return None

    client = FakeKinesis(fate)
    naps: list[float] = []
    put = sender(client, naps)
    records = [record(i) for i in range(300)]
    put.put(records)
    assert [len(c) for c in client.calls] == [300, 3, 1]
    assert [int(e["Data"][:8]) for e in client.calls[1]] == [3, 4, 250]
    assert Counter(data for data, _, _ in client.stored) == Counter(r.data for r in records)
    summary = put.summary
    assert (summary.records, summary.put, summary.failed_records) == (300, 300, 0)
    assert summary.entry_retries == 4
    assert summary.calls == 3
    assert len(naps) == 2
    assert 0 <= naps[0] <= 0.1
    assert 0 <= naps[1] <= 0.2
    assert sum(s["records"] for s in summary.shards.values()) == 300


def test_partition_keys_and_data_go_as_captured() -> None:
    client = FakeKinesis()
    put = sender(client)
    records = list(read_capture(FIXTURES / "kinesis_capture.jsonl"))
    for batch in batches(records):
        put.put(batch)
    assert [(d, k) for d, k, _ in client.stored] == [(r.data, r.partition_key) for r in records]


def test_an_entry_error_that_will_not_pass_is_counted_not_retried() -> None:
    client = FakeKinesis(lambda call, entry: "KMSAccessDeniedException" if entry["PartitionKey"] == "p-1" else None)
    put = sender(client)
    put.put([record(i) for i in range(14)])
    assert len(client.calls) == 1
    assert put.summary.failed == {"KMSAccessDeniedException": 2}
    assert put.summary.put == 12


def test_an_entry_gives_up_after_max_attempts() -> None:
    client = FakeKinesis(lambda call, entry: "ProvisionedThroughputExceededException")
    naps: list[float] = []
    put = sender(client, naps, max_attempts=4)
    put.put([record(1), record(2)])
    assert len(client.calls) == 4
    assert put.summary.failed == {"ProvisionedThroughputExceededException": 2}
    assert put.summary.put == 0
    assert len(naps) == 3


@pytest.mark.parametrize(
    "error",
    [
        call_error("ProvisionedThroughputExceededException", 400),
        call_error("LimitExceededException", 400),
        call_error("ServiceUnavailable", 503),
        call_error("SomethingNew", 500),
        call_error("TooManyRequests", 429),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    ],
)
def test_a_whole_call_that_fails_transiently_is_made_again(error: Exception) -> None:
    client = FakeKinesis(raise_on={1: error, 2: error})
    naps: list[float] = []
    put = sender(client, naps)
    put.put([record(i) for i in range(10)])
    assert len(client.calls) == 3
    assert client.calls[0] == client.calls[2]
    assert put.summary.put == 10
    assert put.summary.call_retries == 2
    assert len(naps) == 2


@pytest.mark.parametrize(
    ("code", "status"),
    [("ResourceNotFoundException", 400), ("AccessDeniedException", 400), ("ValidationException", 400)],
)
def test_a_call_that_can_never_pass_stops_the_producer(code: str, status: int) -> None:
    client = FakeKinesis(raise_on={1: call_error(code, status)})
    with pytest.raises(FatalConfigurationError, match=code):
        sender(client).put([record(1)])


def test_a_call_still_failing_after_max_attempts_raises_retryable() -> None:
    client = FakeKinesis(raise_on=dict.fromkeys(range(1, 10), call_error("InternalFailure", 500)))
    with pytest.raises(RetryableError, match="3 attempts"):
        sender(client, max_attempts=3).put([record(1)])


def test_a_record_over_the_1_mib_limit_is_counted_and_not_sent() -> None:
    client = FakeKinesis()
    put = sender(client)
    oversize = CaptureRecord(b"x" * (MAX_RECORD_BYTES - 1), "key")
    put.put([record(1), oversize, record(2)])
    assert len(client.calls[0]) == 2
    assert put.summary.failed == {"too_large": 1}
    assert put.summary.put == 2


# -- pacing ---------------------------------------------------------------------------------------


class SleepingClock(FakeClock):
    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.advance(seconds)


def test_pacing_spreads_records_and_batches_what_is_due() -> None:
    clock = SleepingClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    start = clock.now
    sent: list[tuple[float, int]] = []
    for batch in paced_batches((record(i) for i in range(25)), pacer):
        sent.append((clock.now - start, len(batch)))
        clock.advance(0.25)  # each call takes a while: the records due meanwhile go together
    assert sum(n for _, n in sent) == 25
    assert max(n for _, n in sent) <= 4
    assert clock.now - start == pytest.approx(24 / 10.0 + 0.25, abs=0.3)


def test_no_rate_means_full_batches_and_no_sleep() -> None:
    clock = SleepingClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    assert [len(b) for b in paced_batches((record(i) for i in range(1001)), pacer)] == [500, 500, 1]
    assert clock.now == 1000.0


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Pacer(0)


# -- the whole command ----------------------------------------------------------------------------


@pytest.mark.parametrize("capture", ["clean.jsonl", "clean.jsonl.gz", "kinesis_capture.jsonl"])
def test_produce_puts_every_record_of_a_capture(capture: str) -> None:
    client = FakeKinesis()
    summary = produce(FIXTURES / capture, "clickstream", client=client, progress=False)
    expected = list(read_capture(FIXTURES / capture))
    assert [(d, k) for d, k, _ in client.stored] == [(r.data, r.partition_key) for r in expected]
    body = summary.to_json()
    assert body["records"] == body["put"] == len(expected)
    assert body["failed"] == 0
    assert body["put_records_calls"] == -(-len(expected) // MAX_RECORDS_PER_CALL)
    assert sum(s["records"] for s in body["shards"].values()) == len(expected)
    json.dumps(body)


def test_jsonl_partition_keys_are_the_player_else_the_session() -> None:
    client = FakeKinesis()
    produce(FIXTURES / "clean.jsonl", "clickstream", client=client, progress=False)
    for data, key, _ in client.stored:
        event = json.loads(data)
        player = event.get("player_id") or event.get("playerId")
        session = event.get("session_id") or event.get("sessionId")
        assert key == (player or session)


def test_the_cli_refuses_a_missing_file_and_a_bad_rate(tmp_path: Path) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "stream_worker.cli", "produce", str(tmp_path / "nope.jsonl"), "--stream", "s"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2
    assert "not a readable file" in missing.stderr
    rate = subprocess.run(
        [sys.executable, "-m", "stream_worker.cli", "produce", str(FIXTURES / "clean.jsonl"), "--rate", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rate.returncode == 2
    assert "--rate" in rate.stderr
