"""Backpressure that ends: a lost lease, a tiny high-water mark, huge GetRecords batches, big events.

The pipeline with a scripted client (and, where the processor's part matters, the RecordProcessor with
fakes for the KCL objects): process_records must return when nothing more can be delivered, and what
one shard holds in memory must stay bounded whatever one GetRecords call brings.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_worker.errors import FatalConfigurationError
from stream_worker.pipeline import InputRecord, ShardPipeline
from stream_worker.processor import RecordProcessor
from stream_worker.settings import WorkerSettings, load_settings
from tests.unit.fakes import ScriptedClient
from tests.unit.test_pipeline import KINDS, MemoryDeadLetters, build_record, event, make_pipeline, scripted

ARRIVAL = 1_790_000_100.0


class Exited(BaseException):
    """What the fake ``exit_process`` raises instead of ending the test run."""


def no_exit(status: int) -> NoReturn:
    raise Exited(status)


class CheckpointError(Exception):
    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


class FakeCheckpointer:
    """amazon_kclpy's checkpointer: answers every checkpoint with ``error`` (None: success)."""

    def __init__(self, error: str | None = None) -> None:
        self.error = error
        self.calls: list[str | None] = []

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None:
        self.calls.append(sequence_number)
        if self.error is not None:
            raise CheckpointError(self.error)


class FakeRecord:
    """amazon_kclpy's Record, as far as ``to_input_record`` reads it."""

    def __init__(self, data: bytes, sequence: int) -> None:
        self.binary_data = data
        self.sequence_number = str(sequence)
        self.partition_key = "pk"
        self._fields = {"subSequenceNumber": 0, "approximateArrivalTimestamp": int(ARRIVAL * 1000)}

    def get(self, name: str) -> Any:
        return self._fields[name]


class RecordsInput:
    def __init__(self, records: list[FakeRecord], checkpointer: FakeCheckpointer, behind: int | None = 0) -> None:
        self.records = records
        self.checkpointer = checkpointer
        self.millis_behind_latest = behind


class InitializeInput:
    shard_id = "shard-0"
    sequence_number = "TRIM_HORIZON"


def line(i: int, session: str) -> bytes:
    return json.dumps(event(i, session)).encode()


def start_processor(client: ScriptedClient, *, high_water: int) -> tuple[RecordProcessor, ShardPipeline]:
    built: list[ShardPipeline] = []

    def factory(shard_id: str) -> ShardPipeline:
        pipeline, _ = make_pipeline(client, MemoryDeadLetters(), high_water=high_water)
        built.append(pipeline)
        return pipeline

    settings = WorkerSettings(tracking_id="tracker-1", checkpoint_interval_seconds=0)
    processor = RecordProcessor(settings, pipeline_factory=factory, exit_process=no_exit)
    processor.initialize(InitializeInput())
    return processor, built[0]


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Calls for sessions other than "fast" wait on it (opened when the test ends)."""
    opened = threading.Event()
    yield opened
    opened.set()


def gated(gate: threading.Event) -> ScriptedClient:
    def behaviour(request: dict[str, Any], number: int) -> None:
        if request["sessionId"] != "fast":
            gate.wait(30)

    return ScriptedClient(behaviour)


# --- F2: a lease lost during backpressure ---------------------------------------------------------------


def test_the_wait_for_capacity_ends_when_the_pipeline_is_abandoned_meanwhile(gate: threading.Event) -> None:
    pipeline, _ = make_pipeline(gated(gate), MemoryDeadLetters(), high_water=10)
    waits: list[int] = []

    def on_wait() -> None:  # what the processor does when a checkpoint says the lease is gone
        waits.append(1)
        pipeline.abandon()

    def produce() -> None:
        pipeline.accept([InputRecord(line(i, f"slow{i}"), str(i), 0, "pk", ARRIVAL) for i in range(1, 31)], on_wait)
        pipeline.wait_for_capacity(on_wait)

    try:
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        producer.join(5)
        assert not producer.is_alive(), "the wait went on for calls that the stopped sender never ends"
        assert waits == [1]
        assert pipeline.stopped
        assert pipeline.tracker.pending_units == 11, "accept stopped at its first wait; nothing was delivered"
        assert pipeline.tracker.safe_position is None
    finally:
        gate.set()
        pipeline.close()


def test_process_records_returns_when_the_lease_is_lost_while_it_waits_for_capacity(gate: threading.Event) -> None:
    processor, pipeline = start_processor(gated(gate), high_water=10)
    try:
        # Record 1 is delivered at once (so there is something to checkpoint); the 29 others wait on
        # the gate, far over the mark of 10: process_records blocks and checkpoints meanwhile.
        records = [FakeRecord(line(1, "fast"), 1)] + [FakeRecord(line(i, f"slow{i}"), i) for i in range(2, 31)]
        checkpointer = FakeCheckpointer("ShutdownException")  # another worker took the lease
        worker = threading.Thread(
            target=processor.process_records, args=(RecordsInput(records, checkpointer),), daemon=True
        )
        started = time.monotonic()
        worker.start()
        worker.join(10)
        assert not worker.is_alive(), (
            f"process_records still blocked {time.monotonic() - started:.0f}s after the lease was lost "
            f"(checkpoints asked: {checkpointer.calls})"
        )
        assert checkpointer.calls == ["1"], "one checkpoint, refused; none after the lease was lost"
        assert pipeline.sender.stopped
        assert pipeline.tracker.safe_position is not None and pipeline.tracker.safe_position.sequence == 1
        # The daemon follows with lease_lost (which waits for the calls still running to end).
        gate.set()
        processor.lease_lost(object())
    finally:
        gate.set()
        pipeline.close()


# --- F7: a high-water mark at or near its minimum ---------------------------------------------------------


@pytest.mark.parametrize("high_water", [10, 11, 12, 13, 20])
def test_a_small_high_water_mark_does_not_wait_a_linger_for_an_instant_personalize(high_water: int) -> None:
    # The batcher may hold max(10, 2/3 of the mark) events before it lets groups go early; with a mark
    # of 10-13 that is more than the three quarters the wait resumes at: the wait must not depend on
    # their linger (20 s in a backlog, 60 s here).
    client = ScriptedClient()
    pipeline, _ = make_pipeline(client, MemoryDeadLetters(), high_water=high_water)
    pipeline._batcher._normal_linger = pipeline._batcher._linger = 60.0
    records = [InputRecord(line(i, f"s{i}"), str(i), 0, "pk", None) for i in range(1, high_water + 2)]
    waited: list[float] = []

    def produce() -> None:
        pipeline.accept(records)
        waited.append(pipeline.wait_for_capacity())

    try:
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        producer.join(5)
        assert not producer.is_alive(), "process_records waited for a linger while Personalize answers at once"
        assert waited and waited[0] < 2
        assert pipeline.tracker.pending_units <= high_water * 3 // 4
        assert pipeline.drain(timeout=5)
        assert sorted(client.accepted_ids) == sorted(f"ev-{i}" for i in range(1, high_water + 2))
    finally:
        pipeline.close()


# --- F4: one call bringing far more than the mark ---------------------------------------------------------


def test_one_record_of_many_events_waits_for_capacity_in_its_middle() -> None:
    # One record may hold thousands of events (and one GetRecords call 10,000 records): the mark must hold
    # within accept, between two events of the same record, not only after the whole call.
    high_water = 50
    in_flight: list[int] = []

    def slow(request: dict[str, Any], number: int) -> None:
        time.sleep(0.002)

    client = ScriptedClient(slow)
    pipeline, _ = make_pipeline(client, MemoryDeadLetters(), high_water=high_water)
    body = b"\n".join(line(i, f"s{i % 40}") for i in range(2000))
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.001):
            in_flight.append(pipeline.tracker.pending_units)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        sampler.start()
        pipeline.accept([InputRecord(body, "7", 0, "pk", None)])
        stop.set()
        sampler.join(5)
        assert in_flight, "the sampler saw nothing"
        assert max(in_flight) <= high_water + 1, f"{max(in_flight)} units in flight with a mark of {high_water}"
        assert pipeline.drain(timeout=30)
        assert sorted(client.accepted_ids) == sorted(f"ev-{i}" for i in range(2000))
        assert pipeline.tracker.safe_position is not None and pipeline.tracker.safe_position.sequence == 7
    finally:
        stop.set()
        pipeline.close()


def test_while_accept_waits_the_records_it_finished_can_be_checkpointed(gate: threading.Event) -> None:
    # Record 1 is delivered at once, the others wait on the gate: the wait in the middle of the call
    # comes after record 1 is finished, which must then be sealed (a checkpoint may pass it), while
    # the record in progress and those after it stay unsealed.
    pipeline, _ = make_pipeline(gated(gate), MemoryDeadLetters(), high_water=10)
    seen: list[int | None] = []

    def on_wait() -> None:
        safe = pipeline.tracker.safe_position
        seen.append(None if safe is None else safe.sequence)
        if safe is not None:
            gate.set()  # the test has seen what it wanted: let the rest go

    records = [InputRecord(line(1, "fast"), "1", 0, "pk", ARRIVAL)] + [
        InputRecord(line(i, f"slow{i}"), str(i), 0, "pk", ARRIVAL) for i in range(2, 31)
    ]
    try:
        producer = threading.Thread(target=lambda: pipeline.accept(records, on_wait), daemon=True)
        producer.start()
        producer.join(20)
        assert not producer.is_alive()
        assert seen, "accept never waited for capacity"
        assert seen[0] == 1, f"while accept waited, the checkpoint did not reach the finished record 1: {seen}"
        assert pipeline.drain(timeout=10)
        assert pipeline.tracker.safe_position is not None and pipeline.tracker.safe_position.sequence == 30
    finally:
        gate.set()
        pipeline.close()


def test_accept_stops_at_its_next_wait_once_nothing_can_be_delivered(gate: threading.Event) -> None:
    # The sender is stopped (a lost lease) while accept waits: the rest of the call is not processed
    # (its events could never be sent, and would pile up without bound), and none of it is sealed.
    pipeline, _ = make_pipeline(gated(gate), MemoryDeadLetters(), high_water=10)
    records = [InputRecord(line(i, f"s{i}"), str(i), 0, "pk", ARRIVAL) for i in range(1, 101)]
    try:
        producer = threading.Thread(target=lambda: pipeline.accept(records, pipeline.abandon), daemon=True)
        producer.start()
        producer.join(10)
        assert not producer.is_alive()
        assert pipeline.tracker.pending_units == 11
        assert pipeline.tracker.unfinished_records == 100, "no record of the call is done, nothing checkpointable"
        gate.set()
        assert not pipeline.drain(timeout=1)
        assert pipeline.tracker.safe_position is None
    finally:
        gate.set()
        pipeline.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(st.lists(st.sampled_from(KINDS), min_size=1, max_size=10), min_size=1, max_size=30),
    failure_rate=st.sampled_from([0.0, 0.3]),
    high_water=st.integers(10, 16),
    high_water_bytes=st.sampled_from([64 * 1024 * 1024, 1500]),
    seed=st.integers(0, 1000),
)
def test_with_waits_inside_accept_every_event_is_delivered_once_and_checkpoints_stay_honest(
    records: list[list[str]], failure_rate: float, high_water: int, high_water_bytes: int, seed: int
) -> None:
    client = scripted(failure_rate, seed)
    dead = MemoryDeadLetters()
    pipeline, fatal = make_pipeline(client, dead, high_water=high_water, high_water_bytes=high_water_bytes)
    expected: list[str] = []
    inputs = []
    for i, kinds in enumerate(records):
        data, outcome = build_record(i, kinds)
        expected.extend(outcome)
        inputs.append(InputRecord(data, str(1000 + i), 0, "pk", ARRIVAL))
    per_record = [build_record(i, kinds)[1] for i, kinds in enumerate(records)]
    violations: list[str] = []
    peaks: list[int] = []

    def audit() -> None:
        """A checkpoint taken now (at the safe position) passes only delivered or dead-lettered events."""
        peaks.append(pipeline.tracker.pending_units)
        safe = pipeline.tracker.safe_position
        if safe is None:
            return
        delivered = set(client.accepted_ids)
        for i in range(safe.sequence - 1000 + 1):
            for outcome in per_record[i]:
                if outcome.startswith("deliver:") and outcome.split(":", 1)[1] not in delivered:
                    violations.append(f"safe position {safe.sequence} passes undelivered {outcome}")

    try:
        pipeline.accept(inputs, audit)
        pipeline.wait_for_capacity(audit)
        assert pipeline.drain(timeout=30)
    finally:
        pipeline.close()
    assert not fatal
    assert not violations, violations[:3]
    assert not peaks or max(peaks) <= high_water + 1
    assert Counter(client.accepted_ids) == Counter(x.split(":", 1)[1] for x in expected if x.startswith("deliver:"))
    assert len(dead.entries) == sum(1 for x in expected if x == "dead" or x.startswith("reject:"))
    assert pipeline.tracker.all_done()
    assert pipeline.bytes_in_flight == 0, "every byte counted in was counted out (delivered, rejected, dead-lettered)"


class SlowDeadLetters(MemoryDeadLetters):
    """Dead letters that stay unwritten (their bytes held) until ``written`` is set and flush runs."""

    def __init__(self, written: threading.Event) -> None:
        super().__init__()
        self.written = written
        self.waiting: list[Any] = []

    def write(self, entry: Any, on_written: Any) -> None:
        with self._lock:
            self.entries.append(entry)
            self.waiting.append(on_written)

    def flush(self) -> None:
        if self.written.is_set():
            with self._lock:
                waiting, self.waiting = self.waiting, []
            for done in waiting:
                done()


def test_undecodable_records_count_against_the_mark_too() -> None:
    # Each of them is a dead letter holding the whole record until the store has written it.
    written = threading.Event()

    dead = SlowDeadLetters(written)
    pipeline, _ = make_pipeline(ScriptedClient(), dead, high_water=10)
    records = [InputRecord(b"\x1f\x8bnot gzip at all", str(i), 0, "pk", ARRIVAL) for i in range(1, 41)]
    try:
        producer = threading.Thread(target=lambda: pipeline.accept(records), daemon=True)
        producer.start()
        producer.join(0.5)
        assert producer.is_alive(), "40 dead letters in flight over a mark of 10, and accept did not wait"
        assert len(dead.entries) == 11
        written.set()
        while producer.is_alive():
            dead.flush()
            producer.join(0.05)
        dead.flush()
        assert len(dead.entries) == 40
        assert pipeline.tracker.safe_position is not None and pipeline.tracker.safe_position.sequence == 40
    finally:
        written.set()
        pipeline.close()


# --- F6: bytes, not only events ----------------------------------------------------------------------------


def big_line(i: int, session: str, size: int) -> bytes:
    """A valid event with a large field the mapping ignores (it reaches Personalize as a small event)."""
    return json.dumps(event(i, session, debug_dump="x" * size)).encode()


def test_backpressure_counts_the_bytes_held_for_events_not_yet_delivered(gate: threading.Event) -> None:
    # 40 events of 100 KB each are only 40 units, far below a mark of 10,000; but every one keeps its
    # line until it is delivered (it may have to be dead-lettered): the bytes must bound what is held.
    mark = 1024 * 1024
    pipeline, _ = make_pipeline(gated(gate), MemoryDeadLetters(), high_water=10_000, high_water_bytes=mark)
    records = [InputRecord(big_line(i, f"s{i}", 100_000), str(i), 0, "pk", ARRIVAL) for i in range(1, 41)]
    one = len(records[0].data)
    try:
        producer = threading.Thread(target=lambda: pipeline.accept(records), daemon=True)
        producer.start()
        producer.join(0.5)
        assert producer.is_alive(), "accept held 4 MB of lines over a mark of 1 MiB without waiting"
        held = pipeline.bytes_in_flight
        assert mark < held <= mark + one, f"{held} bytes in flight with a mark of {mark}"
        assert pipeline.tracker.pending_units == held // one
        gate.set()
        producer.join(10)
        assert not producer.is_alive()
        assert pipeline.drain(timeout=10)
        assert pipeline.bytes_in_flight == 0
        assert pipeline.tracker.safe_position is not None and pipeline.tracker.safe_position.sequence == 40
    finally:
        gate.set()
        pipeline.close()


def test_the_bytes_of_dead_letters_not_yet_written_count_too() -> None:
    written = threading.Event()

    dead = SlowDeadLetters(written)
    mark = 1024 * 1024
    pipeline, _ = make_pipeline(ScriptedClient(), dead, high_water=10_000, high_water_bytes=mark)
    # Lines of 200 KB that are not JSON: each is a dead letter holding its line until it is written.
    records = [InputRecord(b"{" + b"x" * 200_000, str(i), 0, "pk", ARRIVAL) for i in range(1, 21)]
    try:
        producer = threading.Thread(target=lambda: pipeline.accept(records), daemon=True)
        producer.start()
        producer.join(0.5)
        assert producer.is_alive(), "4 MB of unwritten dead letters over a mark of 1 MiB, and accept did not wait"
        assert len(dead.entries) == 6
        assert mark < pipeline.bytes_in_flight <= mark + 200_001
        written.set()
        while producer.is_alive():
            dead.flush()
            producer.join(0.05)
        dead.flush()
        assert len(dead.entries) == 20
        assert pipeline.bytes_in_flight == 0
    finally:
        written.set()
        pipeline.close()


def test_a_small_byte_mark_does_not_wait_a_linger_for_an_instant_personalize() -> None:
    # The bytes held in open groups must go at once while accept waits, as the events do.
    client = ScriptedClient()
    pipeline, _ = make_pipeline(client, MemoryDeadLetters(), high_water=10_000, high_water_bytes=1024 * 1024)
    pipeline._batcher._normal_linger = pipeline._batcher._linger = 60.0
    records = [InputRecord(big_line(i, f"s{i}", 300_000), str(i), 0, "pk", None) for i in range(1, 13)]
    try:
        producer = threading.Thread(target=lambda: pipeline.accept(records), daemon=True)
        started = time.monotonic()
        producer.start()
        producer.join(5)
        assert not producer.is_alive()
        assert time.monotonic() - started < 3
        assert pipeline.drain(timeout=5)
        assert sorted(client.accepted_ids) == sorted(f"ev-{i}" for i in range(1, 13))
    finally:
        pipeline.close()


def test_the_byte_mark_is_a_setting_with_a_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().high_water_bytes == 64 * 1024 * 1024
    monkeypatch.setenv("STREAM_WORKER_HIGH_WATER_BYTES", str(256 * 1024 * 1024))
    assert WorkerSettings().high_water_bytes == 256 * 1024 * 1024
    with pytest.raises(FatalConfigurationError, match="STREAM_WORKER_HIGH_WATER_BYTES"):
        load_settings(high_water_bytes=1000)
