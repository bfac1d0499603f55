"""Helpers of the stream worker's integration tests.

- What the fixtures must give: every record's events decoded the simple way (gunzip if gzip magic, split
  lines, ``json.loads``) and run through one :class:`~clickstream.normalize.Normalizer`, with the eventId
  source the worker uses (shard and sequence number under KCL; the capture's own identity in replay).
  For the broken fixtures the outcomes are also checked against their ``*.expected.json``.
- How to run the worker the way it is deployed: the ``stream-worker`` console script with an environment
  that holds only what the SDK and the worker's settings read.
- Reading what it left behind: dead-letter JSON lines, Prometheus multiprocess files.
- Polling with a deadline (never a fixed sleep).
- moto server (S3, DynamoDB) as a subprocess of a test module; reading back a Kinesis stream.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import socket
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from clickstream.capture import CaptureRecord, read_capture
from clickstream.mapping import EventMapping
from clickstream.normalize import Normalizer, Source
from clickstream.outcomes import Drop, DropReason
from devstack.moto_server import run_moto_server
from stream_worker.multilang_driver import DriverRecord

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
REGION = "us-east-1"
DELIVER = "deliver"

#: Which expected-outcomes file belongs to which fixture capture.
EXPECTED_FILES: Mapping[str, str] = {
    "broken.jsonl": "broken.expected.json",
    "broken_kinesis.jsonl": "broken_kinesis.expected.json",
}


# --- polling ----------------------------------------------------------------------------------------


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
    max_interval: float = 0.2,
) -> T:
    """Poll ``condition`` until it returns something truthy and return that; TimeoutError naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        result = condition()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, max_interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


moto_server = run_moto_server
"""moto server alone on a free loopback port (:func:`devstack.moto_server.run_moto_server`)."""


def read_stream(kinesis: Any, stream: str, expected: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every record of every shard of a Kinesis ``stream`` (TRIM_HORIZON), with its ShardId, once ``expected``
    have been read."""
    iterators = {
        shard["ShardId"]: kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for shard in kinesis.list_shards(StreamName=stream)["Shards"]
    }
    records: list[dict[str, Any]] = []

    def all_read() -> bool:
        for shard_id, iterator in list(iterators.items()):
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            iterators[shard_id] = page["NextShardIterator"]
            records.extend({**r, "ShardId": shard_id} for r in page["Records"])
        return len(records) >= expected

    wait_for(all_read, timeout=timeout, what=f"{expected} records in {stream}", interval=0.05)
    return records


# --- running the worker -------------------------------------------------------------------------------


def stream_worker_command(*args: str) -> list[str]:
    """``stream-worker ARGS`` through the console script next to the interpreter running the tests:
    the command the KCL properties name (``executableName = stream-worker process``) and users type."""
    script = Path(sys.executable).with_name("stream-worker")
    if not script.is_file():
        found = shutil.which("stream-worker")
        if found is None:
            raise RuntimeError("the stream-worker console script is not installed (pip install -e .)")
        script = Path(found)
    return [str(script), *args]


def worker_env(
    *,
    emulator_url: str,
    tracking_id: str | None,
    dead_letter_url: str | Path | None,
    metrics_dir: Path | None = None,
    extra: Mapping[str, str] | None = None,
    settings: Mapping[str, object] | None = None,
) -> dict[str, str]:
    """The environment of a worker process: the SDK pointed at the emulator, dummy credentials, and
    ``settings`` as ``STREAM_WORKER_<NAME>`` variables. Nothing of the caller's AWS or worker setup leaks in.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "STREAM_WORKER_", "PROMETHEUS_MULTIPROC"))
    }
    env.update(
        {
            "AWS_ENDPOINT_URL_PERSONALIZE_EVENTS": emulator_url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if tracking_id is not None:
        env["STREAM_WORKER_TRACKING_ID"] = tracking_id
    if dead_letter_url is not None:
        env["STREAM_WORKER_DEAD_LETTER_URL"] = str(dead_letter_url)
    if metrics_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    for name, value in (settings or {}).items():
        env[f"STREAM_WORKER_{name.upper()}"] = str(value)
    if extra:
        env.update(extra)
    return env


# --- the records a test feeds, and what must become of them --------------------------------------------


@dataclass(frozen=True, slots=True)
class SourcedRecord:
    """A record as the worker numbers it (``key``: the tracker's sequence number) and where its
    deterministic eventIds come from (``stream_id``, ``sequence_number``)."""

    data: bytes
    key: str
    stream_id: str
    sequence_number: str
    arrival_time: float | None
    partition_key: str = "pk"
    line: int | None = None

    def to_driver(self) -> DriverRecord:
        millis = None if self.arrival_time is None else round(self.arrival_time * 1000)
        return DriverRecord(self.data, self.key, partition_key=self.partition_key, arrival_millis=millis)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What must become of one event (``position`` None: of a whole undecodable record)."""

    key: str
    position: int | None
    outcome: str
    event_id: str | None
    raw: bytes

    @property
    def dead_letter(self) -> bool:
        return self.outcome != DELIVER and DropReason(self.outcome).is_bad_input


@dataclass
class Expectation:
    """The outcome of every event of every record, in record order."""

    records: list[tuple[SourcedRecord, list[Outcome]]] = field(default_factory=list)

    @property
    def outcomes(self) -> Iterator[Outcome]:
        for _, outcomes in self.records:
            yield from outcomes

    @property
    def delivered_ids(self) -> list[str]:
        return [o.event_id for o in self.outcomes if o.outcome == DELIVER and o.event_id is not None]

    @property
    def dropped(self) -> Counter[str]:
        return Counter(o.outcome for o in self.outcomes if o.outcome != DELIVER and not o.dead_letter)

    @property
    def dead_letters(self) -> Counter[str]:
        return Counter(o.outcome for o in self.outcomes if o.dead_letter)

    @property
    def whole_record_dead_letters(self) -> int:
        return sum(1 for o in self.outcomes if o.dead_letter and o.position is None)

    @property
    def events_received(self) -> int:
        """Events decoded from records; an undecodable record counts as one (its one dead letter)."""
        return sum(1 for _ in self.outcomes)

    def dead_letter_entries(self) -> Counter[tuple[str, int | None, str, bytes]]:
        """(sequence number, position, reason, original bytes) of every dead letter."""
        return Counter((o.key, o.position, o.outcome, o.raw) for o in self.outcomes if o.dead_letter)

    def through(self, key: str | None) -> Expectation:
        """The records at and below sequence number ``key`` (every record for None: SHARD_END)."""
        if key is None:
            return self
        return Expectation([(r, o) for r, o in self.records if int(r.key) <= int(key)])

    def outcomes_by_line(self) -> dict[int, list[str]]:
        return {r.line: [o.outcome for o in outcomes] for r, outcomes in self.records if r.line is not None}


def _decoded(data: bytes) -> list[tuple[int, bytes, Any]] | str:
    """The events of a record: (position, raw line, parsed JSON or a DropReason value); or the
    reason the whole record is unreadable."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return DropReason.CORRUPT_GZIP.value
    events: list[tuple[int, bytes, Any]] = []
    for position, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            parsed: Any = json.loads(line)
        except UnicodeDecodeError:
            events.append((position, line, DropReason.INVALID_UTF8))
            continue
        except ValueError:
            events.append((position, line, DropReason.MALFORMED_JSON))
            continue
        if not isinstance(parsed, dict):
            events.append((position, line, DropReason.NOT_AN_OBJECT))
            continue
        events.append((position, line, parsed))
    return events


def expect(records: Iterable[SourcedRecord]) -> Expectation:
    """Run ``records`` through one Normalizer (as one shard's worker would) and note each outcome."""
    normalizer = Normalizer(EventMapping.default())
    expectation = Expectation()
    for record in records:
        decoded = _decoded(record.data)
        outcomes: list[Outcome] = []
        if isinstance(decoded, str):
            outcomes.append(Outcome(record.key, None, decoded, None, record.data))
        else:
            for position, raw, parsed in decoded:
                if isinstance(parsed, DropReason):
                    outcomes.append(Outcome(record.key, position, parsed.value, None, raw))
                    continue
                source = Source(record.stream_id, record.sequence_number, 0, position, record.arrival_time)
                result = normalizer.normalize(parsed, source)
                if isinstance(result, Drop):
                    outcomes.append(Outcome(record.key, position, result.reason.value, None, raw))
                else:
                    outcomes.append(Outcome(record.key, position, DELIVER, result.event_id, raw))
        expectation.records.append((record, outcomes))
    return expectation


def shard_records(
    captured: Iterable[CaptureRecord], shard_id: str, *, sequence: Callable[[int, CaptureRecord], str] | None = None
) -> list[SourcedRecord]:
    """Records as one shard's processor receives them: eventIds derive from ``shard_id`` and the
    record's sequence number (the capture's own, or ``sequence(index, record)``)."""
    out: list[SourcedRecord] = []
    for index, record in enumerate(captured):
        number = sequence(index, record) if sequence is not None else record.sequence_number
        assert number is not None, f"record on line {record.line} has no sequence number"
        arrival = None if record.arrival_time is None else round(record.arrival_time * 1000) / 1000.0
        out.append(SourcedRecord(record.data, number, shard_id, number, arrival, record.partition_key, record.line))
    return out


def replay_records(path: Path, now: float) -> list[SourcedRecord]:
    """Records as ``stream-worker replay`` numbers them: by line, eventIds from the capture's recorded
    shard and sequence number where it has them, else from ``replay:<file name>`` and the line."""
    stream_id = f"replay:{path.name}"
    out: list[SourcedRecord] = []
    for record in read_capture(path):
        assert record.line is not None
        if record.sequence_number:
            origin = (record.shard_id or stream_id, record.sequence_number)
        else:
            origin = (stream_id, str(record.line))
        arrival = record.arrival_time if record.arrival_time is not None else now
        out.append(
            SourcedRecord(
                record.data, str(record.line), origin[0], origin[1], arrival, record.partition_key, record.line
            )
        )
    return out


def check_expected_file(expectation: Expectation, capture: str) -> None:
    """The computed outcomes agree with the fixture's ``*.expected.json``, line by line."""
    expected_file = EXPECTED_FILES.get(capture)
    if expected_file is None:
        return
    stated = json.loads((FIXTURES / expected_file).read_text(encoding="utf-8"))
    by_line = expectation.outcomes_by_line()
    for entry in stated["lines"]:
        want = [] if entry["expected"] == ["skip"] else entry["expected"]
        got = by_line.get(entry["line"], [])
        assert got == want, f"{capture} line {entry['line']} ({entry['case']}): expected {want}, computed {got}"


def batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- reading what the worker left behind -----------------------------------------------------------------


def parse_dead_letter_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.strip()]


def read_local_dead_letters(folder: Path) -> list[dict[str, Any]]:
    """Every entry of every dead-letter file in ``folder``."""
    if not folder.is_dir():
        return []
    entries: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        entries += parse_dead_letter_lines(path.read_text(encoding="utf-8").splitlines())
    return entries


def dead_letter_entries(entries: Iterable[Mapping[str, Any]]) -> Counter[tuple[str, int | None, str, bytes]]:
    """(sequence number, position, reason, original bytes) of dead-letter entries."""
    return Counter(
        (str(e["sequenceNumber"]), e["position"], str(e["reason"]), base64.b64decode(e["data"])) for e in entries
    )


Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def read_multiprocess_metrics(directory: Path) -> Samples:
    """Aggregated samples of a ``PROMETHEUS_MULTIPROC_DIR``: name -> sorted label pairs -> value."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    samples: Samples = {}
    for metric in registry.collect():
        for sample in metric.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))
            by_labels = samples.setdefault(sample.name, {})
            by_labels[labels] = by_labels.get(labels, 0.0) + sample.value
    return samples


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """``name``'s non-zero values keyed by the value of ``label``."""
    out: dict[str, float] = {}
    for labels, value in samples.get(name, {}).items():
        if value:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + value
    return out


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-blank line of ``text`` as a JSON object; AssertionError naming the first that is not."""
    parsed: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line[:300]!r}") from None
        assert isinstance(value, dict), f"line {number} is not a JSON object: {line[:300]!r}"
        parsed.append(value)
    return parsed
