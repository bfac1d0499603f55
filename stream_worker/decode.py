"""Step 1: a Kinesis record's bytes -> the raw events in it (gunzip if gzip magic, split lines)."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any, Final

from clickstream.outcomes import Drop, DropReason

GZIP_MAGIC: Final = b"\x1f\x8b"
_OPEN_BRACE: Final = ord("{")
_decoder = json.JSONDecoder()
#: A record inflating beyond this is refused (a Kinesis record is at most 1 MiB compressed).
MAX_INFLATED_BYTES: Final = 16 * 1024 * 1024
#: A record of more lines than this (blank ones included) is refused whole, as one dead letter. Each
#: line costs an event or a dead letter (about 0.4 ms with the local store's fsync), so the limit bounds
#: the work of one record: 16 KB of gzip inflates to 5.5 million lines of ``{}``. No real record comes
#: near it: producers put one event or a few in a record, and at the smallest events of this schema
#: (about 140 bytes) a record of 1 MiB, the most Kinesis takes, holds some 7,500 lines.
MAX_LINES_PER_RECORD: Final = 10_000
#: A line longer than this (after inflation) is refused alone, unparsed. A real event is a few hundred
#: bytes, and one sent uncompressed could not exceed a Kinesis record (1 MiB); parsed, such a line could
#: take hundreds of MB of objects.
MAX_LINE_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """One event's position in its record, its own bytes, and its JSON object or why it has none."""

    position: int
    raw: bytes
    data: dict[str, Any] | None = None
    failure: Drop | None = None


#: The first slice of a gzip member handed to zlib; each further slice of the same member is twice
#: the last. zlib copies what it was given past a member's end (``unused_data``), so feeding the whole
#: rest of the record to each member would cost quadratic time on a record of many tiny members.
_FIRST_SLICE: Final = 4096


def _inflate(data: bytes) -> bytes | Drop:
    """Every gzip member of ``data``, inflated and joined (as ``gzip.decompress`` and ``zcat`` read it);
    a Drop when the record inflates beyond MAX_INFLATED_BYTES, or holds anything but whole gzip
    members (and trailing zero bytes, the padding gzip readers skip)."""
    view = memoryview(data)
    end = len(data)
    parts: list[bytes] = []
    size = 0
    start = 0
    members = 0
    while True:
        members += 1
        inflater = zlib.decompressobj(wbits=31)
        fed = start
        length = _FIRST_SLICE
        while not inflater.eof:
            if fed >= end:
                return Drop(DropReason.CORRUPT_GZIP, f"truncated gzip stream (member {members})")
            piece = view[fed : fed + length]
            fed += len(piece)
            length *= 2
            try:
                # At most one byte beyond the budget: enough to tell that it is exceeded.
                out = inflater.decompress(piece, MAX_INFLATED_BYTES - size + 1)
            except zlib.error as exc:
                return Drop(DropReason.CORRUPT_GZIP, f"member {members}: {exc}"[:200])
            size += len(out)
            if size > MAX_INFLATED_BYTES:
                return Drop(DropReason.TOO_LARGE, f"inflates beyond {MAX_INFLATED_BYTES} bytes")
            parts.append(out)
        start = fed - len(inflater.unused_data)
        if start == end:
            break
        if data[start : start + 2] == GZIP_MAGIC:
            continue
        if data.count(0, start) == end - start:
            break
        return Drop(DropReason.CORRUPT_GZIP, f"{end - start} bytes after gzip member {members} are not gzip")
    return b"".join(parts)


def decode_record(
    data: bytes, *, max_lines: int = MAX_LINES_PER_RECORD, max_line_bytes: int = MAX_LINE_BYTES
) -> list[DecodedEvent] | Drop:
    """The events of one record, in order; a Drop when the whole record is unreadable.

    A record is one JSON object, or several joined by newlines, optionally gzip-compressed (one
    gzip member or several concatenated, read as one stream). Blank lines are skipped. A line that
    is not UTF-8, not JSON, or not a JSON object yields a DecodedEvent with ``failure`` set, so the
    other events of the record are still delivered; so does a line longer than ``max_line_bytes``
    (``too_large``). A record of more than ``max_lines`` lines is a Drop (``too_large``).
    """
    if data[:2] == GZIP_MAGIC:
        inflated = _inflate(data)
        if isinstance(inflated, Drop):
            return inflated
        data = inflated
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    if lines > max_lines:
        return Drop(DropReason.TOO_LARGE, f"{lines} lines, more than {max_lines} in one record")
    events: list[DecodedEvent] = []
    for position, line in enumerate(data.split(b"\n")):
        stripped = line.strip()
        if not stripped:
            continue
        if len(stripped) > max_line_bytes:
            failure = Drop(DropReason.TOO_LARGE, f"a line of {len(stripped)} bytes, more than {max_line_bytes}")
            events.append(DecodedEvent(position, line, failure=failure))
            continue
        try:
            if stripped[0] == _OPEN_BRACE and stripped[1:2] != b"\x00":
                # What json.loads does with bytes that start like an object (it would detect UTF-8
                # and decode with surrogatepass), without its encoding detection.
                parsed = _decoder.decode(stripped.decode("utf-8", "surrogatepass"))
            else:
                parsed = json.loads(stripped)
        except UnicodeDecodeError as exc:
            events.append(DecodedEvent(position, line, failure=Drop(DropReason.INVALID_UTF8, str(exc)[:200])))
            continue
        except (ValueError, RecursionError) as exc:
            # RecursionError: nested deeper than the interpreter's recursion limit ("[" * 100_000).
            # Uncaught, it would end the process on every restart at this record (a poison pill).
            events.append(DecodedEvent(position, line, failure=Drop(DropReason.MALFORMED_JSON, str(exc)[:200])))
            continue
        if not isinstance(parsed, dict):
            failure = Drop(DropReason.NOT_AN_OBJECT, f"a JSON {type(parsed).__name__}, not an object")
            events.append(DecodedEvent(position, line, failure=failure))
            continue
        events.append(DecodedEvent(position, line, data=parsed))
    return events
