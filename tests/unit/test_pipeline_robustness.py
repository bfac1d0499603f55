"""Backpressure that ends: a lost lease, a tiny high-water mark, huge GetRecords batches, big events.

The pipeline with a scripted client (and, where the processor's part matters, the RecordProcessor with
fakes for the KCL objects): process_records must return when nothing more can be delivered, and what
one shard holds in memory must stay bounded whatever one GetRecords call brings.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from stream_worker.pipeline import InputRecord, ShardPipeline
from stream_worker.processor import RecordProcessor
from stream_worker.settings import WorkerSettings
from tests.unit.fakes import ScriptedClient
from tests.unit.test_pipeline import MemoryDeadLetters, event, make_pipeline

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


def test_wait_for_capacity_ends_when_the_pipeline_is_abandoned_meanwhile(gate: threading.Event) -> None:
    pipeline, _ = make_pipeline(gated(gate), MemoryDeadLetters(), high_water=10)
    try:
        pipeline.accept([InputRecord(line(i, f"slow{i}"), str(i), 0, "pk", ARRIVAL) for i in range(1, 31)])
        assert pipeline.tracker.pending_units == 30
        waits: list[int] = []

        def on_wait() -> None:  # what the processor does when a checkpoint says the lease is gone
            waits.append(1)
            pipeline.abandon()

        result: list[float] = []
        waiter = threading.Thread(target=lambda: result.append(pipeline.wait_for_capacity(on_wait)), daemon=True)
        waiter.start()
        waiter.join(5)
        assert not waiter.is_alive(), "wait_for_capacity kept waiting for calls the stopped sender never ends"
        assert waits == [1]
        assert pipeline.stopped
        assert pipeline.tracker.pending_units == 30, "nothing was delivered: the wait ended on the stop"
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
