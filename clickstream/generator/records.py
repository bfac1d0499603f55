"""Events -> Kinesis records, as producers put them: one event, or several joined by newlines
(Kinesis Agent aggregation), optionally gzip-compressed."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from clickstream.capture import CaptureRecord, event_partition_key, fallback_partition_key
from clickstream.raw import parse_timestamp

#: Kinesis shard ids look like this.
SHARD_ID_FORMAT: Final = "shardId-{:012d}"
_HASH_SPACE: Final = 1 << 128
_DAY_MS: Final = 86_400_000


def event_bytes(event: Mapping[str, Any]) -> bytes:
    """One event as a compact JSON line (no newline), the way apps send it."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_millis(event: Mapping[str, Any]) -> int | None:
    """An event's timestamp as epoch ms, or None when it has none or it cannot be read."""
    value = event.get("timestamp", event.get("Timestamp"))
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        seconds = parse_timestamp(value)
    except (ValueError, OverflowError):
        return None
    return None if seconds is None else round(seconds * 1000)


def shard_of(partition_key: str, shard_count: int) -> str:
    """The shard a partition key lands on when ``shard_count`` shards split the hash range evenly."""
    hashed = int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")  # noqa: S324
    return SHARD_ID_FORMAT.format(hashed * shard_count // _HASH_SPACE)


@dataclass(slots=True)
class _Pending:
    key: str
    target: int
    opened_ms: int
    lines: list[bytes] = field(default_factory=list)
    last_ms: int = 0


def pack_records(
    events: Iterable[Mapping[str, Any] | bytes],
    *,
    multi_event_fraction: float = 0.0,
    gzip_fraction: float = 0.0,
    seed: int = 0,
    max_events_per_record: int = 10,
    linger_seconds: float = 30.0,
    shard_count: int | None = None,
) -> Iterator[CaptureRecord]:
    """Pack events (dicts, or bytes for an already serialized, possibly broken, event) into records.

    The partition key is the event's player id, else its session id, else a hash of its bytes.
    About ``multi_event_fraction`` of the records an event starts hold several events of that same
    partition key (2 to ``max_events_per_record``, each line ending in a newline, as Kinesis Agent
    sends them), flushed when full or ``linger_seconds`` of event time after they opened; about
    ``gzip_fraction`` of records are gzip-compressed (with a fixed header, so output is
    deterministic). Sequence numbers increase in output order; arrival times (epoch seconds) never
    decrease and are never before any timestamp of the record's events. With ``shard_count`` each
    record gets the shard id its partition key hashes to. Lazy; memory holds only open records.
    """
    if not 0.0 <= multi_event_fraction <= 1.0 or not 0.0 <= gzip_fraction <= 1.0:
        raise ValueError("multi_event_fraction and gzip_fraction must be fractions")
    if max_events_per_record < 2 and multi_event_fraction > 0:
        raise ValueError("max_events_per_record must be at least 2 for multi-event records")
    if shard_count is not None and shard_count < 1:
        raise ValueError("shard_count must be at least 1")
    return _pack(
        events=events,
        multi_event_fraction=multi_event_fraction,
        gzip_fraction=gzip_fraction,
        rng=random.Random(f"clickstream-records:{seed}"),
        max_events=max_events_per_record,
        linger_ms=round(linger_seconds * 1000),
        shard_count=shard_count,
    )


def _pack(
    *,
    events: Iterable[Mapping[str, Any] | bytes],
    multi_event_fraction: float,
    gzip_fraction: float,
    rng: random.Random,
    max_events: int,
    linger_ms: int,
    shard_count: int | None,
) -> Iterator[CaptureRecord]:
    pending: OrderedDict[str, _Pending] = OrderedDict()
    sequence = 0
    last_arrival = 0
    clock = 0  # the latest event time seen, epoch ms

    def finish(lines: list[bytes], key: str, newest_ms: int) -> CaptureRecord:
        nonlocal sequence, last_arrival
        data = b"".join(line + b"\n" for line in lines) if len(lines) > 1 else lines[0]
        if rng.random() < gzip_fraction:
            data = gzip.compress(data, mtime=0)
        arrival = max(last_arrival, newest_ms + rng.randint(50, 2500))
        last_arrival = arrival
        sequence += 1
        return CaptureRecord(
            data=data,
            partition_key=key,
            sequence_number=f"4959{sequence:052d}",
            arrival_time=arrival / 1000,
            shard_id=shard_of(key, shard_count) if shard_count is not None else None,
        )

    for item in events:
        if isinstance(item, bytes | bytearray):
            line = bytes(item)
            key = _bytes_partition_key(line)
            millis = clock
        else:
            line = event_bytes(item)
            key = event_partition_key(item) or fallback_partition_key(line)
            stated = event_millis(item)
            # A timestamp far from the stream's clock (a broken event) must not move the clock.
            plausible = stated is not None and (clock == 0 or abs(stated - clock) < _DAY_MS)
            millis = stated if plausible and stated is not None else clock
        clock = max(clock, millis)
        while pending:
            oldest = next(iter(pending.values()))
            if oldest.opened_ms + linger_ms > clock:
                break
            del pending[oldest.key]
            yield finish(oldest.lines, oldest.key, oldest.last_ms)
        buffer = pending.get(key)
        if buffer is None and rng.random() < multi_event_fraction:
            buffer = pending[key] = _Pending(key, rng.randint(2, max_events), millis)
        if buffer is None:
            yield finish([line], key, max(millis, clock))
            continue
        buffer.lines.append(line)
        buffer.last_ms = max(buffer.last_ms, millis, clock)
        if len(buffer.lines) >= buffer.target:
            del pending[key]
            yield finish(buffer.lines, key, buffer.last_ms)
    for buffer in pending.values():
        yield finish(buffer.lines, buffer.key, buffer.last_ms)


def _bytes_partition_key(line: bytes) -> str:
    try:
        decoded = json.loads(line)
    except ValueError:
        decoded = None
    return event_partition_key(decoded) or fallback_partition_key(line)
