"""Capture files: clickstream recorded to disk, to replay into a stream or to test with.

Two formats, told apart by content (never by file name), each optionally gzip-compressed (told apart
by the gzip magic bytes):

``jsonl``
    plain clickstream JSON lines: every line is one record's data, which is one event.
``kinesis``
    one Kinesis record per line, the shape the KCL MultiLang protocol gives:
    ``{"data": base64, "partitionKey": ..., "sequenceNumber": ..., "approximateArrivalTimestamp":
    epoch millis, "shardId": ...}`` (``shardId`` optional). A record may hold several events joined by
    newlines and may be gzip-compressed, which plain lines cannot represent.

Reading never fails on one bad line: whatever a line holds comes back as a record, so the pipeline can
dead-letter it with its original bytes. Blank lines are skipped.
"""

from __future__ import annotations

import base64
import binascii
import gzip as gzip_module
import hashlib
import io
import json
import math
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any, Final, Literal

GZIP_MAGIC: Final = b"\x1f\x8b"
#: Kinesis partition keys are 1-256 Unicode characters.
MAX_PARTITION_KEY_LENGTH: Final = 256
#: How many non-blank lines are inspected to tell the two formats apart.
SNIFF_LINES: Final = 50
#: Epoch numbers at or above this are milliseconds.
_MILLIS_THRESHOLD: Final = 100_000_000_000

_WRITE_CHUNK: Final = 1 << 16
#: What reading a damaged gzip file raises.
_CORRUPT_FILE: Final = (EOFError, gzip_module.BadGzipFile, zlib.error)

CaptureKind = Literal["jsonl", "kinesis"]


class CaptureError(ValueError):
    """A capture cannot be written as asked, or its file (not one line of it) is unreadable."""


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """One Kinesis record: its data bytes as the producer put them, and where it came from.

    ``arrival_time`` is epoch seconds (Kinesis' approximate arrival timestamp, millisecond precision);
    ``line`` is the 1-based line of the capture file the record was read from, None when not read.
    """

    data: bytes
    partition_key: str
    sequence_number: str | None = None
    arrival_time: float | None = None
    line: int | None = None
    shard_id: str | None = None


def is_gzip(data: bytes) -> bool:
    """True when ``data`` starts with the gzip magic bytes."""
    return data[:2] == GZIP_MAGIC


def fallback_partition_key(data: bytes) -> str:
    """A deterministic partition key for bytes that name no player or session."""
    return "h-" + hashlib.blake2b(data, digest_size=8).hexdigest()


def event_partition_key(event: Any) -> str | None:
    """The player id of a decoded event, else its session id; None when it has neither (or too long).

    The ids are read as the event model (:class:`clickstream.raw.RawEvent`) reads them, so that all of
    a player's events share a key, and so a shard, whichever way each spells the id: the snake_case key
    wins over the camelCase one when both are there, a number becomes the string the model makes of it
    (``4711`` -> ``"4711"``, ``4711.0`` -> ``"4711.0"``; a boolean is no id), surrounding whitespace is
    stripped, and an empty id is no id.
    """
    if not isinstance(event, dict):
        return None
    for snake, camel in (("player_id", "playerId"), ("session_id", "sessionId")):
        value = _event_id(event, snake, camel)
        if value is not None and len(value) <= MAX_PARTITION_KEY_LENGTH:
            return value
    return None


#: What the event model strips around an id (pydantic's ``str_strip_whitespace``): the Unicode
#: White_Space characters. ``str.strip()`` with no argument strips U+001C..U+001F as well.
_ID_WHITESPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))  # U+2000..U+200A
    + "\u2028\u2029\u202f\u205f\u3000"
)


def _event_id(event: dict[Any, Any], snake: str, camel: str) -> str | None:
    """One id field of an event as the event model reads it; None when absent, empty or not an id."""
    if snake in event:
        value = event[snake]
    elif camel in event:
        value = event[camel]
    else:
        return None
    if isinstance(value, bool):  # an int to Python, but the model refuses it
        return None
    if isinstance(value, int | float):
        try:
            value = str(value)  # what the model's coerce_numbers_to_str makes of it
        except ValueError:  # an int too long to print in decimal: far longer than a key anyway
            return None
    if not isinstance(value, str):
        return None
    return value.strip(_ID_WHITESPACE) or None


# --- reading ---------------------------------------------------------------------------------------


def _open_binary(path: Path) -> io.BufferedIOBase:
    """The file's decompressed bytes; gzip is recognised by its magic bytes, not by the name."""
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == GZIP_MAGIC:
        return gzip_module.open(path, "rb")
    return path.open("rb")


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return line[:-2]
    if line.endswith(b"\n"):
        return line[:-1]
    return line


def _looks_like_kinesis(obj: dict[str, Any]) -> bool:
    has_data = "data" in obj or "Data" in obj
    has_key = "partitionKey" in obj or "PartitionKey" in obj
    return has_data and has_key


def _kind_of(lines: list[bytes]) -> CaptureKind:
    """``kinesis`` when the first line that is a JSON object looks like a Kinesis record."""
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return "kinesis" if _looks_like_kinesis(obj) else "jsonl"
    return "jsonl"


def detect_kind(path: str | Path) -> CaptureKind:
    """Which format the capture at ``path`` is in (``jsonl`` when no line is a JSON object).

    Raises :class:`CaptureError` when a gzip file is corrupt within the lines inspected.
    """
    file = Path(path)
    with _open_binary(file) as stream:
        try:
            return _kind_of(_sniff(stream))
        except _CORRUPT_FILE as exc:
            raise CaptureError(f"capture {file} is corrupt: {exc}") from exc


def _sniff(stream: io.BufferedIOBase) -> list[bytes]:
    """Up to :data:`SNIFF_LINES` non-blank lines (plus the blank ones between), with line ends."""
    lines: list[bytes] = []
    non_blank = 0
    for line in stream:
        lines.append(line)
        if line.strip():
            non_blank += 1
            if non_blank >= SNIFF_LINES:
                break
    return lines


def _arrival_seconds(value: Any) -> float | None:
    """Epoch seconds for an arrival timestamp given as epoch millis/seconds or an ISO-8601 string."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
            return parsed.timestamp() if parsed.tzinfo else None
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            return None
        return number / 1000.0 if abs(number) >= _MILLIS_THRESHOLD else number
    return None


def _optional_str(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _kinesis_record(line: bytes, number: int) -> CaptureRecord:
    """The record on one line of a Kinesis capture; the line's own bytes as data if it is unreadable."""
    try:
        obj = json.loads(line)
    except ValueError:
        return CaptureRecord(data=line, partition_key=fallback_partition_key(line), line=number)
    if not isinstance(obj, dict):
        return CaptureRecord(data=line, partition_key=fallback_partition_key(line), line=number)
    key = obj.get("partitionKey", obj.get("PartitionKey"))
    partition_key = (
        key if isinstance(key, str) and 0 < len(key) <= MAX_PARTITION_KEY_LENGTH else fallback_partition_key(line)
    )
    sequence_number = _optional_str(obj.get("sequenceNumber", obj.get("SequenceNumber")))
    arrival = _arrival_seconds(obj.get("approximateArrivalTimestamp", obj.get("ApproximateArrivalTimestamp")))
    shard_id = _optional_str(obj.get("shardId", obj.get("ShardId")))
    encoded = obj.get("data", obj.get("Data"))
    data: bytes = line
    if isinstance(encoded, str) and isinstance(key, str):
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            data = line
    return CaptureRecord(
        data=data,
        partition_key=partition_key,
        sequence_number=sequence_number,
        arrival_time=arrival,
        line=number,
        shard_id=shard_id,
    )


def _jsonl_record(line: bytes, number: int) -> CaptureRecord:
    try:
        key = event_partition_key(json.loads(line))
    except ValueError:
        key = None
    return CaptureRecord(data=line, partition_key=key or fallback_partition_key(line), line=number)


def read_capture(path: str | Path, *, kind: CaptureKind | None = None) -> Iterator[CaptureRecord]:
    """The records of a capture file, in file order, lazily.

    The format is detected from the content unless ``kind`` is given; gzip files are recognised by
    their magic bytes. Blank lines yield nothing. A line of a Kinesis capture that is not JSON, lacks
    ``data``/``partitionKey`` or holds invalid base64 yields a record whose data is the line's own
    bytes. In a ``jsonl`` capture the partition key is the event's player id, else its session id,
    else a hash of the line. Raises :class:`CaptureError` when the file itself is corrupt (a truncated
    or damaged gzip stream) and OSError when it cannot be opened.
    """
    file = Path(path)
    with _open_binary(file) as stream:
        try:
            head = _sniff(stream)
            chosen = kind or _kind_of([line for line in head if line.strip()])
            parse = _kinesis_record if chosen == "kinesis" else _jsonl_record
            for number, line in enumerate(chain(head, stream), start=1):
                content = _strip_eol(line)
                if not content.strip():
                    continue
                yield parse(content, number)
        except _CORRUPT_FILE as exc:
            raise CaptureError(f"capture {file} is corrupt: {exc}") from exc


# --- writing ---------------------------------------------------------------------------------------


def kinesis_line(record: CaptureRecord) -> bytes:
    """One line of a Kinesis capture for ``record`` (arrival time rounded to milliseconds), no newline."""
    body: dict[str, Any] = {
        "data": base64.b64encode(record.data).decode("ascii"),
        "partitionKey": record.partition_key,
    }
    if record.sequence_number is not None:
        body["sequenceNumber"] = record.sequence_number
    if record.arrival_time is not None:
        body["approximateArrivalTimestamp"] = round(record.arrival_time * 1000)
    if record.shard_id is not None:
        body["shardId"] = record.shard_id
    return json.dumps(body, separators=(",", ":")).encode("ascii")


def jsonl_line(record: CaptureRecord) -> bytes:
    """``record``'s data as one plain line, no newline; CaptureError if a line cannot hold it.

    Gzip-compressed data, data with a line break and blank data cannot be written as a plain line
    (they would not read back as the same record): use the ``kinesis`` format for them.
    """
    data = record.data
    if is_gzip(data):
        raise CaptureError("a gzip-compressed record cannot be a plain JSON line; use kind='kinesis'")
    if b"\n" in data or b"\r" in data:
        raise CaptureError("a multi-event record cannot be a plain JSON line; use kind='kinesis'")
    if not data.strip():
        raise CaptureError("a blank record cannot be a plain JSON line; use kind='kinesis'")
    return data


def write_capture(
    path: str | Path,
    records: Iterable[CaptureRecord],
    *,
    kind: CaptureKind = "jsonl",
    gzip: bool = False,
) -> int:
    """Write ``records`` to ``path`` as a capture of ``kind``, streaming; returns the records written.

    ``gzip=True`` compresses the file (with no name or time in its header, so equal records give equal
    bytes). In ``jsonl`` only the data is kept; partition keys, sequence numbers and arrival times are
    lost. Raises :class:`CaptureError` for a record ``jsonl`` cannot hold (see :func:`jsonl_line`); the
    file is then incomplete.
    """
    if kind not in ("jsonl", "kinesis"):
        raise ValueError(f"unknown capture kind {kind!r}")
    render = kinesis_line if kind == "kinesis" else jsonl_line
    count = 0
    with Path(path).open("wb") as raw:
        sink: io.BufferedIOBase = gzip_module.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if gzip else raw
        try:
            chunk = bytearray()
            for record in records:
                chunk += render(record)
                chunk += b"\n"
                count += 1
                if len(chunk) >= _WRITE_CHUNK:
                    sink.write(chunk)
                    chunk.clear()
            sink.write(chunk)
        finally:
            if gzip:
                sink.close()
    return count
