"""PutEventsSender: retries what is transient, bisects what is invalid, stops on what is fatal."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from prometheus_client import CollectorRegistry

from clickstream.outcomes import PersonalizeEvent
from stream_worker.batcher import Batch, PendingEvent, RecordContext, SessionBatcher
from stream_worker.errors import FatalConfigurationError
from stream_worker.limiter import AdaptiveLimiter
from stream_worker.metrics import Telemetry, WorkerMetrics
from stream_worker.retry import Backoff
from stream_worker.sender import PutEventsSender, Verdict, classify
from stream_worker.tracker import RecordHandle, SequencePosition
from tests.unit.fakes import ScriptedClient, client_error


def batch(n: int, bad: set[int] | None = None) -> Batch:
    context = RecordContext(RecordHandle(SequencePosition(1)), "shard-0", "1", 0, "pk", None)
    items = []
    for i in range(n):
        event_type = "BAD" if bad and i in bad else "click"
        event = PersonalizeEvent(f"e{i}", event_type, "s1", 1.7e9, user_id="p1", item_id="g")
        items.append(PendingEvent(event, context, i, b"{}"))
    return items


class Harness:
    def __init__(self, client: ScriptedClient, limiter: AdaptiveLimiter | None = None) -> None:
        self.delivered: list[str] = []
        self.rejected: list[tuple[str, str]] = []
        self.fatal: list[FatalConfigurationError] = []
        self.done = threading.Event()
        self.telemetry = Telemetry(WorkerMetrics(CollectorRegistry()), "shard-0")
        self.limiter = limiter or AdaptiveLimiter(2, 8)
        self.batches = SessionBatcher(0.001, time.monotonic)
        self.sender = PutEventsSender(
            client,  # type: ignore[arg-type]
            "tracker-1",
            self.batches,
            limiter=self.limiter,
            backoff=Backoff(0.001, 0.01, random.Random(7)),
            telemetry=self.telemetry,
            on_delivered=lambda b: self._add(self.delivered, [p.event.event_id for p in b]),
            on_rejected=lambda p, m: self._add(self.rejected, [(p.event.event_id, m)]),
            on_fatal=lambda e: (self.fatal.append(e), self.done.set()),
            max_workers=4,
        )
        self._lock = threading.Lock()

    def submit(self, batch: Batch) -> None:
        for item in batch:
            self.batches.add(item)

    def _add(self, target: list[Any], items: list[Any]) -> None:
        with self._lock:
            target.extend(items)

    def run(self, batches: list[Batch], expect: int) -> None:
        for b in batches:
            self.submit(b)
        deadline = 10.0
        while deadline > 0 and len(self.delivered) + len(self.rejected) < expect and not self.fatal:
            self.done.wait(0.01)
            deadline -= 0.01
        self.sender.close()


def test_request_shape_is_one_user_and_session() -> None:
    client = ScriptedClient()
    harness = Harness(client)
    harness.run([batch(3)], expect=3)
    request = client.calls[0]
    assert request["trackingId"] == "tracker-1"
    assert request["sessionId"] == "s1" and request["userId"] == "p1"
    assert [e["eventId"] for e in request["eventList"]] == ["e0", "e1", "e2"]
    assert harness.telemetry.tally()["calls"] == {"ok": 1}


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 400), ("ServiceUnavailable", 503), ("InternalFailure", 500), ("Whatever", 429)],
)
def test_transient_errors_are_retried_until_success(code: str, status: int) -> None:
    def flaky(request: dict[str, Any], number: int) -> None:
        if number <= 3:
            raise client_error(code, status)

    client = ScriptedClient(flaky)
    harness = Harness(client)
    harness.run([batch(2)], expect=2)
    assert harness.delivered == ["e0", "e1"]
    assert harness.telemetry.tally()["retries"] == 3
    assert len(client.calls) == 4


def test_connection_errors_are_retried() -> None:
    def flaky(request: dict[str, Any], number: int) -> None:
        if number == 1:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    harness = Harness(ScriptedClient(flaky))
    harness.run([batch(1)], expect=1)
    assert harness.delivered == ["e0"]


def test_invalid_batch_is_bisected_down_to_the_bad_event() -> None:
    def validate(request: dict[str, Any], number: int) -> None:
        if any(e["eventType"] == "BAD" for e in request["eventList"]):
            raise client_error("InvalidInputException", 400, "eventType BAD")

    client = ScriptedClient(validate)
    harness = Harness(client)
    harness.run([batch(10, bad={3, 8})], expect=10)
    assert sorted(harness.delivered) == sorted(f"e{i}" for i in range(10) if i not in {3, 8})
    assert sorted(r[0] for r in harness.rejected) == ["e3", "e8"]
    assert all("eventType BAD" in r[1] for r in harness.rejected)
    # bisection costs O(k log n) calls, not n
    assert len(client.calls) <= 1 + 2 * 2 * 4


@pytest.mark.parametrize("code", ["ResourceNotFoundException", "AccessDeniedException", "UnrecognizedClientException"])
def test_fatal_errors_stop_without_retry(code: str) -> None:
    client = ScriptedClient(lambda r, n: (_ for _ in ()).throw(client_error(code, 404 if "NotFound" in code else 403)))
    harness = Harness(client)
    harness.run([batch(2), batch(2)], expect=4)
    assert len(harness.fatal) == 1
    assert code in str(harness.fatal[0])
    assert harness.delivered == [] and harness.rejected == []
    assert len(client.calls) <= 2, "no retries after a fatal error"
    assert harness.sender.stopped


def test_stop_ends_retries_and_abandons() -> None:
    client = ScriptedClient(lambda r, n: (_ for _ in ()).throw(client_error("ServiceUnavailable", 503)))
    harness = Harness(client)
    harness.submit(batch(1))
    while len(client.calls) < 3:
        harness.done.wait(0.005)
    harness.sender.close()
    calls = len(client.calls)
    assert harness.delivered == [] and harness.rejected == [] and harness.fatal == []
    harness.done.wait(0.05)
    assert len(client.calls) == calls


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (client_error("ThrottlingException"), Verdict.THROTTLED),
        (client_error("InvalidInputException"), Verdict.INVALID),
        (client_error("ResourceNotFoundException", 404), Verdict.FATAL),
        (client_error("AccessDeniedException", 403), Verdict.FATAL),
        (client_error("Anything", 502), Verdict.RETRY),
        (client_error("ExpiredTokenException", 400), Verdict.RETRY),
        (RuntimeError("bug"), Verdict.FATAL),
    ],
)
def test_classify(error: BaseException, verdict: Verdict) -> None:
    assert classify(error)[0] is verdict
