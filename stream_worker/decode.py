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


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """One event's position in its record, its own bytes, and its JSON object or why it has none."""

    position: int
    raw: bytes
    data: dict[str, Any] | None = None
    failure: Drop | None = None


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    out = inflater.decompress(data, MAX_INFLATED_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"inflates beyond {MAX_INFLATED_BYTES} bytes")
    if not inflater.eof:
        raise ValueError("truncated gzip stream")
    return out


def decode_record(data: bytes) -> list[DecodedEvent] | Drop:
    """The events of one record, in order; a Drop when the whole record is unreadable.

    A record is one JSON object, or several joined by newlines, optionally gzip-compressed.
    Blank lines are skipped. A line that is not UTF-8, not JSON, or not a JSON object yields a
    DecodedEvent with ``failure`` set, so the other events of the record are still delivered.
    """
    if data[:2] == GZIP_MAGIC:
        try:
            data = _inflate(data)
        except (zlib.error, ValueError) as exc:
            reason = DropReason.TOO_LARGE if "beyond" in str(exc) else DropReason.CORRUPT_GZIP
            return Drop(reason, str(exc)[:200])
    events: list[DecodedEvent] = []
    for position, line in enumerate(data.split(b"\n")):
        stripped = line.strip()
        if not stripped:
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
