"""The whole shard pipeline with a scripted client: no event lost or invented, checkpoints honest."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from clickstream.mapping import EventMapping
from clickstream.normalize import Normalizer
from stream_worker.batcher import Batch, PendingEvent, SessionBatcher
from stream_worker.dead_letter import DeadLetter, DeadLetterStore, Written
from stream_worker.errors import FatalConfigurationError
from stream_worker.limiter import AdaptiveLimiter
from stream_worker.metrics import Telemetry, WorkerMetrics
from stream_worker.pipeline import InputRecord, ShardPipeline
from stream_worker.retry import Backoff
from stream_worker.sender import PutEventsSender
from tests.unit.fakes import ScriptedClient, client_error


class MemoryDeadLetters(DeadLetterStore):
    def __init__(self) -> None:
        self.entries: list[DeadLetter] = []
        self._lock = threading.Lock()

    def write(self, entry: DeadLetter, on_written: Written) -> None:
        with self._lock:
            self.entries.append(entry)
        on_written()

    def flush(self) -> None:
        pass

    def close(self, timeout: float = 10.0) -> None:
        pass


def make_pipeline(
    client: ScriptedClient,
    dead_letters: DeadLetterStore,
    *,
    high_water: int = 1000,
    high_water_bytes: int = 64 * 1024 * 1024,
) -> tuple[ShardPipeline, list[FatalConfigurationError]]:
    fatal: list[FatalConfigurationError] = []
    telemetry = Telemetry(WorkerMetrics(CollectorRegistry()), "shard-0")

    def sender(
        batches: SessionBatcher,
        delivered: Callable[[Batch], None],
        rejected: Callable[[PendingEvent, str], None],
        on_fatal: Callable[[FatalConfigurationError], None],
    ) -> PutEventsSender:
        return PutEventsSender(
            client,  # type: ignore[arg-type]
            "tracker-1",
            batches,
            limiter=AdaptiveLimiter(2, 8),
            backoff=Backoff(0.001, 0.005, random.Random(1)),
            telemetry=telemetry,
            on_delivered=delivered,
            on_rejected=rejected,
            on_fatal=on_fatal,
            max_workers=8,
        )

    pipeline = ShardPipeline(
        "shard-0",
        Normalizer(EventMapping.default()),
        sender,
        dead_letters,
        telemetry,
        linger=0.02,
        high_water=high_water,
        high_water_bytes=high_water_bytes,
        on_fatal=fatal.append,
    )
    return pipeline, fatal


def event(i: int, session: str, kind: str = "game_launch", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"ev-{i}",
        "event_type": kind,
        "player_id": f"p-{session}",
        "session_id": session,
        "game_id": f"g-{i % 7}",
        "timestamp": 1_790_000_000 + i,
        **extra,
    }


# What can be in a record: a valid event, a non-interaction, bad input of several kinds,
# or an event Personalize itself rejects (the scripted client refuses platform "REJECT").
KINDS = ["valid", "valid", "valid", "heartbeat", "malformed", "no_session", "rejected"]


def build_record(i: int, kinds: list[str]) -> tuple[bytes, list[str]]:
    lines: list[bytes] = []
    expected: list[str] = []
    for j, kind in enumerate(kinds):
        n = i * 10 + j
        session = f"s{n % 5}"
        if kind == "valid":
            lines.append(json.dumps(event(n, session)).encode())
            expected.append(f"deliver:ev-{n}")
        elif kind == "heartbeat":
            lines.append(json.dumps(event(n, session, "heartbeat")).encode())
            expected.append("drop")
        elif kind == "malformed":
            lines.append(b'{"event_type": "game_launch", ')
            expected.append("dead")
        elif kind == "no_session":
            body = event(n, session)
            del body["session_id"]
            lines.append(json.dumps(body).encode())
            expected.append("dead")
        else:
            lines.append(json.dumps(event(n, session, platform="REJECT")).encode())
            expected.append(f"reject:ev-{n}")
    return b"\n".join(lines), expected


def scripted(failure_rate: float, seed: int) -> ScriptedClient:
    rng = random.Random(seed)
    lock = threading.Lock()

    def behaviour(request: dict[str, Any], number: int) -> None:
        if any("REJECT" in (e.get("properties") or "") for e in request["eventList"]):
            raise client_error("InvalidInputException", 400, "properties.platform REJECT")
        with lock:
            roll = rng.random()
        if roll < failure_rate / 4:
            raise client_error("ThrottlingException", 400)
        if roll < failure_rate:
            raise client_error("InternalFailure", 500)

    return ScriptedClient(behaviour)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4), min_size=1, max_size=40),
    failure_rate=st.sampled_from([0.0, 0.2, 0.5]),
    seed=st.integers(0, 1000),
)
def test_every_valid_event_exactly_once_and_every_bad_one_dead_lettered(
    records: list[list[str]], failure_rate: float, seed: int
) -> None:
    client = scripted(failure_rate, seed)
    dead = MemoryDeadLetters()
    pipeline, fatal = make_pipeline(client, dead)
    expected: list[str] = []
    inputs = []
    for i, kinds in enumerate(records):
        data, outcome = build_record(i, kinds)
        expected.extend(outcome)
        inputs.append(InputRecord(data, str(1000 + i), 0, "pk", 1_790_000_100.0))
    try:
        pipeline.accept(inputs[: len(inputs) // 2])
        pipeline.accept(inputs[len(inputs) // 2 :])
        assert pipeline.drain(timeout=30)
    finally:
        pipeline.close()
    assert not fatal
    delivered = Counter(client.accepted_ids)
    want = Counter(x.split(":", 1)[1] for x in expected if x.startswith("deliver:"))
    assert delivered == want, "every valid event exactly once, nothing invented"
    rejected = sorted(json.loads(e.event)["eventId"] for e in dead.entries if e.reason == "rejected" and e.event)
    assert rejected == sorted(x.split(":", 1)[1] for x in expected if x.startswith("reject:"))
    other_dead = [e for e in dead.entries if e.reason != "rejected"]
    assert len(other_dead) == expected.count("dead")
    assert pipeline.tracker.safe_position is not None
    assert pipeline.tracker.safe_position.sequence == 1000 + len(records) - 1
    assert pipeline.tracker.all_done()


def test_checkpoint_waits_for_a_slow_record_and_backpressure_blocks() -> None:
    gate = threading.Event()

    def slow(request: dict[str, Any], number: int) -> None:
        if request["sessionId"] == "slow":
            gate.wait(10)

    client = ScriptedClient(slow)
    pipeline, _ = make_pipeline(client, MemoryDeadLetters(), high_water=20)
    try:
        first = InputRecord(json.dumps(event(1, "slow")).encode(), "1", 0, "pk", 1_790_000_100.0)
        rest = [
            InputRecord(json.dumps(event(i, f"fast{i}")).encode(), str(i), 0, "pk", 1_790_000_100.0)
            for i in range(2, 12)
        ]
        pipeline.accept([first, *rest])
        deadline = threading.Event()
        while len(client.accepted_ids) < 10 and not deadline.wait(0.01):
            pass
        assert len(client.accepted_ids) == 10
        assert pipeline.tracker.safe_position is None, "record 1 is still in flight"
        # 30 more events in flight over a high-water mark of 20 -> accept (then the wait) blocks
        more = [
            InputRecord(json.dumps(event(i, "slow")).encode(), str(i), 0, "pk", 1_790_000_100.0) for i in range(12, 42)
        ]
        waited: list[float] = []

        def produce() -> None:
            started = time.monotonic()
            pipeline.accept(more)
            pipeline.wait_for_capacity()
            waited.append(time.monotonic() - started)

        waiter = threading.Thread(target=produce)
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive(), "backpressure holds process_records while over the mark"
        gate.set()
        waiter.join(10)
        assert waited and waited[0] > 0.2
        assert pipeline.drain(timeout=10)
        assert pipeline.tracker.safe_position is not None and pipeline.tracker.safe_position.sequence == 41
    finally:
        gate.set()
        pipeline.close()


def test_fatal_error_reported_and_nothing_checkpointed() -> None:
    client = ScriptedClient(lambda r, n: (_ for _ in ()).throw(client_error("ResourceNotFoundException", 404)))
    pipeline, fatal = make_pipeline(client, MemoryDeadLetters())
    try:
        pipeline.accept([InputRecord(json.dumps(event(1, "s")).encode(), "1", 0, "pk", 1_790_000_100.0)])
        assert not pipeline.drain(timeout=5)
        assert fatal and "ResourceNotFoundException" in str(fatal[0])
        assert pipeline.tracker.safe_position is None
    finally:
        pipeline.close()


def test_logout_sends_the_session_at_once() -> None:
    client = ScriptedClient()
    pipeline, _ = make_pipeline(client, MemoryDeadLetters())
    pipeline._batcher._normal_linger = pipeline._batcher._linger = 60.0  # nothing would leave by time
    try:
        pipeline.accept([InputRecord(json.dumps(event(1, "s1")).encode(), "1", 0, "pk", 1_790_000_100.0)])
        logout = {**event(2, "s1", "logout")}
        pipeline.accept([InputRecord(json.dumps(logout).encode(), "2", 0, "pk", 1_790_000_100.0)])
        stop = threading.Event()
        for _ in range(500):
            if client.accepted_ids:
                break
            stop.wait(0.01)
        assert client.accepted_ids == ["ev-1"]
    finally:
        pipeline.close()
