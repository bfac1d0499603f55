"""``stream-worker replay``: push a captured clickstream file through the same pipeline.

Used for backfills, for tests, and to check a capture before pointing production at it. The
records go through exactly the steps a shard's records go through under KCL; the summary counts
what happened to them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from clickstream.capture import CaptureRecord, read_capture
from stream_worker.assembly import build_pipeline
from stream_worker.errors import FatalConfigurationError
from stream_worker.metrics import WorkerMetrics
from stream_worker.pipeline import InputRecord, ShardPipeline
from stream_worker.settings import WorkerSettings

if TYPE_CHECKING:
    from mypy_boto3_personalize_events import PersonalizeEventsClient

log = logging.getLogger(__name__)

#: Records handed to the pipeline at a time (what one KCL GetRecords batch would be).
CHUNK = 500


@dataclass(frozen=True)
class Pacing:
    """At most ``rate`` records/s; or ``speed`` times the recorded pace (arrival times)."""

    rate: float | None = None
    speed: float | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and self.rate <= 0:
            raise ValueError("--rate must be positive")
        if self.speed is not None and self.speed <= 0:
            raise ValueError("--speed must be positive")


class _Pacer:
    def __init__(self, pacing: Pacing) -> None:
        self.pacing = pacing
        self.started = time.monotonic()
        self.first_arrival: float | None = None
        self.count = 0

    def wait(self, record: CaptureRecord) -> None:
        self.count += 1
        due = None
        if self.pacing.rate is not None:
            due = self.started + (self.count - 1) / self.pacing.rate
        if self.pacing.speed is not None and record.arrival_time is not None:
            if self.first_arrival is None:
                self.first_arrival = record.arrival_time
            offset = (record.arrival_time - self.first_arrival) / self.pacing.speed
            due = max(due or 0.0, self.started + offset)
        if due is not None:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def to_input_records(records: Iterable[CaptureRecord], stream_id: str, now: float) -> Iterator[InputRecord]:
    """Number records by line for the tracker; keep their recorded identity for eventIds."""
    for index, record in enumerate(records, start=1):
        line = record.line or index
        origin = (
            (record.shard_id or stream_id, record.sequence_number) if record.sequence_number else (stream_id, str(line))
        )
        yield InputRecord(
            data=record.data,
            sequence_number=str(line),
            partition_key=record.partition_key,
            arrival_time=record.arrival_time if record.arrival_time is not None else now,
            origin=origin,
        )


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]replay[/]"),
        BarColumn(),
        TextColumn("{task.completed:,} records"),
        TextColumn("{task.fields[sent]:,} events sent"),
        TimeElapsedColumn(),
        transient=False,
    )


def replay(
    path: Path,
    settings: WorkerSettings,
    *,
    pacing: Pacing | None = None,
    progress: bool | None = None,
    client: PersonalizeEventsClient | None = None,
    drain_timeout: float | None = None,
) -> dict[str, Any]:
    """Replay ``path``; returns the summary. Raises FatalConfigurationError on a fatal error."""
    stream_id = f"replay:{path.name}"
    fatal: list[FatalConfigurationError] = []
    pipeline: ShardPipeline = build_pipeline(
        settings, stream_id, WorkerMetrics(CollectorRegistry()), fatal.append, client=client
    )
    pacer = _Pacer(pacing or Pacing())
    # Unpaced, a capture is one big backlog: batch for throughput, not latency.
    pipeline.set_backlog(pacer.pacing.rate is None and pacer.pacing.speed is None)
    show = sys.stderr.isatty() if progress is None else progress
    bar = _progress(show)
    started = time.monotonic()
    records = to_input_records(_paced(read_capture(path), pacer), stream_id, time.time())
    task = None
    try:
        if bar is not None:
            bar.start()
            task = bar.add_task("replay", total=None, sent=0)
        while chunk := list(islice(records, CHUNK)):
            pipeline.accept(chunk)
            pipeline.wait_for_capacity()
            if bar is not None and task is not None:
                sent = pipeline.telemetry.tally().get("events_sent", 0)
                bar.update(task, advance=len(chunk), sent=sent)
            if fatal:
                break
        drained = False if fatal else pipeline.drain(timeout=drain_timeout)
        if bar is not None and task is not None:
            bar.update(task, sent=pipeline.telemetry.tally().get("events_sent", 0))
    finally:
        if bar is not None:
            bar.stop()
        pipeline.abandon()
        pipeline.close()
    if fatal:
        raise fatal[0]
    return summarize(pipeline, drained, time.monotonic() - started)


def _paced(records: Iterable[CaptureRecord], pacer: _Pacer) -> Iterator[CaptureRecord]:
    pacing = pacer.pacing
    if pacing.rate is None and pacing.speed is None:
        yield from records
        return
    for record in records:
        pacer.wait(record)
        yield record


def summarize(pipeline: ShardPipeline, drained: bool, elapsed: float) -> dict[str, Any]:
    """The replay's counts in a stable shape (see README, "Replay")."""
    tally = pipeline.telemetry.tally()
    calls: dict[str, int] = tally.get("calls", {})
    safe = pipeline.tracker.safe_position
    sent = int(tally.get("events_sent", 0))
    return {
        "records": int(tally.get("records", 0)),
        "events_received": int(tally.get("events_received", 0)),
        "events_sent": sent,
        "put_events_calls": int(calls.get("ok", 0)),
        "calls_by_outcome": calls,
        "dropped": tally.get("dropped", {}),
        "dead_letters": tally.get("dead_letters", {}),
        "retries": int(tally.get("retries", 0)),
        "throttles": int(tally.get("throttles", 0)),
        "drained": drained,
        "unfinished_records": pipeline.tracker.unfinished_records,
        "last_done_line": None if safe is None else safe.sequence,
        "elapsed_seconds": round(elapsed, 3),
        "events_per_second": round(sent / elapsed, 1) if elapsed > 0 else None,
    }


def write_summary(summary: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
