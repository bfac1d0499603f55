"""Prometheus metrics of the stream worker, and the tallies that replay summaries are made of.

Every shard child of the KCL daemon is its own process: metrics are multiprocess-safe when
``PROMETHEUS_MULTIPROC_DIR`` is set (the supervisor sets it and aggregates on ``/metrics``).
Gauges declare how they aggregate across processes. :class:`Telemetry` is the only writer: each
method updates the metric and the in-process tally together, so the two can never disagree.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

CallOutcome = Literal["ok", "throttled", "retryable_error", "invalid_input", "fatal"]
CheckpointOutcome = Literal["ok", "throttled", "lease_lost", "error"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0)


class WorkerMetrics:
    """The metric families. Pass a fresh registry in tests; production uses the default one."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> PromCounter:
            return PromCounter(name, doc, labels, registry=registry)

        # Records handed to the processor by KCL (or replay).
        self.records = counter("stream_worker_records_total", "Kinesis records received")
        # Raw events decoded from records (a record may hold several).
        self.events_in = counter("stream_worker_events_received_total", "Raw clickstream events decoded")
        # Events acknowledged by Personalize.
        self.events_delivered = counter(
            "stream_worker_events_delivered_total", "Events acknowledged by Personalize PutEvents"
        )
        # Not delivered by design (not an interaction, collapsed, duplicate, unknown type).
        self.events_dropped = counter(
            "stream_worker_events_dropped_total", "Events dropped by design, by reason", ("reason",)
        )
        # Bad input written to the dead-letter store (counted once the write succeeded).
        self.dead_letters = counter(
            "stream_worker_dead_letters_total", "Entries written to the dead-letter store", ("reason",)
        )
        self.calls = counter("stream_worker_put_events_calls_total", "PutEvents calls by outcome", ("outcome",))
        self.throttles = counter("stream_worker_throttles_total", "PutEvents calls throttled")
        self.retries = counter("stream_worker_retries_total", "PutEvents calls retried after a failure")
        self.checkpoints = counter("stream_worker_checkpoints_total", "Checkpoint attempts by outcome", ("outcome",))
        self.backpressure = counter(
            "stream_worker_backpressure_wait_seconds_total",
            "Time process_records waited for in-flight events to drain",
        )
        self.fatal = counter("stream_worker_fatal_errors_total", "Fatal configuration errors by code", ("code",))
        self.call_seconds = Histogram(
            "stream_worker_put_events_duration_seconds",
            "PutEvents call latency",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.call_events = Histogram(
            "stream_worker_put_events_batch_events",
            "Events per PutEvents call",
            buckets=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
            registry=registry,
        )
        self.delay = Histogram(
            "stream_worker_delivery_delay_seconds",
            "Delay from event time or record arrival to acknowledgement",
            ("since",),
            buckets=_DELAY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "stream_worker_in_flight_events",
            "Events and dead letters accepted but not yet done",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.in_flight_bytes = Gauge(
            "stream_worker_in_flight_bytes",
            "Raw bytes of the events and dead letters accepted but not yet done (held in memory)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.concurrency_limit = Gauge(
            "stream_worker_concurrency_limit",
            "Current adaptive limit of concurrent PutEvents calls",
            ("shard",),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.rate_limit = Gauge(
            "stream_worker_rate_limit_calls_per_second",
            "Current adaptive PutEvents rate limit (0 = not limited)",
            ("shard",),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.behind_latest = Gauge(
            "stream_worker_behind_latest_seconds",
            "How far the shard's reader is behind the tip of the stream (KCL millisBehindLatest)",
            ("shard",),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.last_checkpoint = Gauge(
            "stream_worker_last_checkpoint_timestamp_seconds",
            "Unix time of the shard's last successful checkpoint",
            ("shard",),
            registry=registry,
            multiprocess_mode="livemax",
        )
        # The supervisor's /readyz: a shard inside process_records for too long is stuck.
        self.processing_since = Gauge(
            "stream_worker_process_records_since_timestamp_seconds",
            "Unix time the shard's current process_records call began; 0 between calls",
            ("shard",),
            registry=registry,
            multiprocess_mode="livemax",
        )


_default: WorkerMetrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> WorkerMetrics:
    """The process-wide metrics on the default registry (created once)."""
    global _default  # noqa: PLW0603
    with _default_lock:
        if _default is None:
            _default = WorkerMetrics()
        return _default


class Telemetry:
    """Counts everything that happens to events, in Prometheus and in a summary tally."""

    def __init__(self, metrics: WorkerMetrics, shard: str) -> None:
        self.metrics = metrics
        self.shard = shard
        self._lock = threading.Lock()
        self._tally: Counter[str] = Counter()

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._tally[key] += n

    def records_received(self, n: int) -> None:
        self.metrics.records.inc(n)
        self._count("records", n)

    def events_received(self, n: int) -> None:
        self.metrics.events_in.inc(n)
        self._count("events_received", n)

    def dropped(self, reason: str, n: int = 1) -> None:
        self.metrics.events_dropped.labels(reason).inc(n)
        self._count(f"dropped.{reason}", n)

    def dead_lettered(self, reason: str, n: int = 1) -> None:
        self.metrics.dead_letters.labels(reason).inc(n)
        self._count(f"dead_letters.{reason}", n)

    def call(self, outcome: CallOutcome, seconds: float, events: int) -> None:
        self.metrics.calls.labels(outcome).inc()
        self.metrics.call_seconds.observe(seconds)
        self._count(f"calls.{outcome}")
        if outcome == "ok":
            self.metrics.call_events.observe(events)
            self.metrics.events_delivered.inc(events)
            self._count("events_sent", events)
        elif outcome == "throttled":
            self.metrics.throttles.inc()
            self._count("throttles")

    def retried(self) -> None:
        self.metrics.retries.inc()
        self._count("retries")

    def delivered_delay(self, since_event: float, since_arrival: float | None) -> None:
        self.metrics.delay.labels("event_time").observe(max(0.0, since_event))
        if since_arrival is not None:
            self.metrics.delay.labels("arrival").observe(max(0.0, since_arrival))

    def checkpoint(self, outcome: CheckpointOutcome, at: float | None = None) -> None:
        self.metrics.checkpoints.labels(outcome).inc()
        self._count(f"checkpoints.{outcome}")
        if outcome == "ok" and at is not None:
            self.metrics.last_checkpoint.labels(self.shard).set(at)

    def backpressure_wait(self, seconds: float) -> None:
        self.metrics.backpressure.inc(seconds)

    def fatal(self, code: str) -> None:
        self.metrics.fatal.labels(code).inc()
        self._count(f"fatal.{code}")

    def in_flight_set(self, units: int, raw_bytes: int = 0) -> None:
        self.metrics.in_flight.set(units)
        self.metrics.in_flight_bytes.set(raw_bytes)

    def limits(self, concurrency: float, rate: float | None) -> None:
        self.metrics.concurrency_limit.labels(self.shard).set(concurrency)
        self.metrics.rate_limit.labels(self.shard).set(rate or 0.0)

    def processing_records(self, since: float | None) -> None:
        """``since``: when the current process_records call began; None when it returned."""
        self.metrics.processing_since.labels(self.shard).set(since or 0.0)

    def behind_latest(self, millis: float) -> None:
        self.metrics.behind_latest.labels(self.shard).set(millis / 1000.0)

    def tally(self) -> dict[str, Any]:
        """A snapshot of the counts, nested by kind: {"calls": {"ok": 3}, "records": 10, ...}."""
        with self._lock:
            flat = dict(self._tally)
        nested: dict[str, Any] = {}
        for key, value in sorted(flat.items()):
            if "." in key:
                group, name = key.split(".", 1)
                nested.setdefault(group, {})[name] = value
            else:
                nested[key] = value
        return nested
