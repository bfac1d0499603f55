"""decode_record on hostile records: every one ends as events and dead letters, never as an exception.

An exception out of decode_record ends the ``stream-worker process`` child; KCL restarts it at the last
checkpoint, so the same record kills it again, forever (a poison pill that stops the shard).
"""

from __future__ import annotations

import json

import pytest

from clickstream.outcomes import DropReason
from stream_worker.decode import DecodedEvent, decode_record


def _event(i: int) -> bytes:
    return json.dumps({"event_id": f"ev-{i}", "event_type": "game_launch", "session_id": "s1"}).encode()


def _events(data: bytes) -> list[DecodedEvent]:
    decoded = decode_record(data)
    assert isinstance(decoded, list), f"the whole record was refused: {decoded}"
    return decoded


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"event_type": ' + b"[" * 100_000,
        b"{" + b'"a":{' * 50_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ],
    ids=["open-arrays", "closed-arrays", "object-then-arrays", "open-objects", "closed-objects"],
)
def test_a_line_nested_too_deeply_is_malformed_json_and_the_others_still_decode(line: bytes) -> None:
    events = _events(_event(1) + b"\n" + line + b"\n" + _event(2))
    assert [e.position for e in events] == [0, 1, 2]
    assert events[0].data is not None and events[0].data["event_id"] == "ev-1"
    assert events[2].data is not None and events[2].data["event_id"] == "ev-2"
    bad = events[1]
    assert bad.data is None and bad.raw == line
    assert bad.failure is not None and bad.failure.reason is DropReason.MALFORMED_JSON
    assert "recursion" in bad.failure.detail


def test_nesting_within_the_limit_still_parses() -> None:
    # Only what the parser cannot hold is refused: moderate nesting is an ordinary JSON object.
    line = b'{"a":' * 50 + b"1" + b"}" * 50
    (event,) = _events(line)
    assert event.failure is None and event.data is not None and "a" in event.data
