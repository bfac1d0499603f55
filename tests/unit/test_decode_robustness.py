"""decode_record on hostile records: every one ends as events and dead letters, never as an exception.

An exception out of decode_record ends the ``stream-worker process`` child; KCL restarts it at the last
checkpoint, so the same record kills it again, forever (a poison pill that stops the shard).
"""

from __future__ import annotations

import gzip
import json
import random
import time

import pytest

from clickstream.outcomes import DropReason
from stream_worker.decode import MAX_INFLATED_BYTES, MAX_LINE_BYTES, MAX_LINES_PER_RECORD, DecodedEvent, decode_record


def _event(i: int) -> bytes:
    return json.dumps({"event_id": f"ev-{i}", "event_type": "game_launch", "session_id": "s1"}).encode()


def _events(data: bytes, **limits: int) -> list[DecodedEvent]:
    decoded = decode_record(data, **limits)
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


# --- gzip: every member, and nothing else ----------------------------------------------------------------


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _ids(events: list[DecodedEvent]) -> list[object]:
    return [e.data.get("event_id") for e in events if e.data is not None]


def test_every_gzip_member_of_a_record_is_read() -> None:
    # Concatenated members are one valid gzip stream: gzip.decompress and zcat read them all.
    data = (
        _gzip(_event(1) + b"\n") + _gzip(_event(2) + b"\n" + _event(3) + b"\n") + _gzip(b"") + _gzip(b"\n" + _event(4))
    )
    assert gzip.decompress(data).count(b"ev-") == 4
    events = _events(data)
    assert _ids(events) == ["ev-1", "ev-2", "ev-3", "ev-4"]
    assert all(e.failure is None for e in events)
    # Positions are lines of the whole inflated record, as if it had been one member.
    assert [e.position for e in events] == [0, 1, 2, 4]


def test_a_record_of_the_most_members_1_mib_holds_is_read_in_linear_time() -> None:
    # 52,000 empty members (20 bytes each). Handing each member the whole rest of the record makes
    # zlib copy what follows it every time (26 GB here: 0.9 s of CPU on a 2-core dev box); read a
    # slice at a time, the record takes about 0.07 s.
    data = _gzip(b"") * 52_000 + _gzip(_event(1))
    assert len(data) < 1024 * 1024
    started = time.process_time()
    events = _events(data)
    took = time.process_time() - started
    assert _ids(events) == ["ev-1"]
    assert took < 0.5, f"{took:.2f} s of CPU for {len(data)} bytes of gzip members"


def test_a_large_member_between_small_ones_is_read_whole() -> None:
    # The middle member is larger than the first few slices zlib is given: it is read across them.
    big = b"\n".join(_event(i) for i in range(10, 3000))
    noise = random.Random(7).randbytes(20_000).hex()  # incompressible enough to make the member large
    line = json.dumps({"event_id": "ev-noise", "event_type": "game_launch", "blob": noise}).encode()
    middle = _gzip(big + b"\n" + line + b"\n")
    assert len(middle) > 4 * 4096
    events = _events(_gzip(_event(1) + b"\n") + middle + _gzip(_event(2)))
    assert _ids(events) == ["ev-1", *(f"ev-{i}" for i in range(10, 3000)), "ev-noise", "ev-2"]


@pytest.mark.parametrize(
    ("tail", "detail"),
    [
        (b"this is not gzip", "16 bytes after gzip member 2 are not gzip"),
        (b"\x1f", "1 bytes after gzip member 2 are not gzip"),
        (b"\x00\x00\x00x", "4 bytes after gzip member 2 are not gzip"),
        (b"\x1f\x8b", "truncated gzip stream (member 3)"),
        (b"\x1f\x8b\x08\x00garbage!", "truncated gzip stream (member 3)"),
        (b"\x1f\x8b\x07\x00" + bytes(20), "member 3: "),
    ],
    ids=["text", "half-magic", "zeros-then-text", "bare-magic", "short-member", "bad-method"],
)
def test_anything_after_the_gzip_members_makes_the_record_corrupt(tail: bytes, detail: str) -> None:
    data = _gzip(_event(1) + b"\n") + _gzip(_event(2)) + tail
    decoded = decode_record(data)
    assert not isinstance(decoded, list), f"{len(decoded)} events, the trailing bytes vanished"
    assert decoded.reason is DropReason.CORRUPT_GZIP
    assert decoded.detail.startswith(detail), decoded.detail


def test_a_truncated_second_member_makes_the_record_corrupt() -> None:
    second = _gzip(_event(2) + b"\n" + _event(3))
    decoded = decode_record(_gzip(_event(1)) + second[: len(second) - 3])
    assert not isinstance(decoded, list)
    assert (decoded.reason, decoded.detail) == (DropReason.CORRUPT_GZIP, "truncated gzip stream (member 2)")


def test_trailing_zero_bytes_are_padding_as_for_gzip_readers() -> None:
    data = _gzip(_event(1) + b"\n") + _gzip(_event(2)) + bytes(512)
    assert gzip.decompress(data).count(b"ev-") == 2
    assert _ids(_events(data)) == ["ev-1", "ev-2"]


def test_the_inflated_size_limit_counts_every_member() -> None:
    # Each member alone is within the limit; together they are beyond it.
    half = _gzip(b" " * (MAX_INFLATED_BYTES // 2) + b"\n")
    within = _events(_gzip(_event(1) + b"\n") + half)
    assert _ids(within) == ["ev-1"]
    decoded = decode_record(half + half + _gzip(_event(1)))
    assert not isinstance(decoded, list)
    assert decoded.reason is DropReason.TOO_LARGE
    exact = _gzip(b" " * (MAX_INFLATED_BYTES - 1) + b"\n")
    assert _events(exact) == []
    assert not isinstance(decode_record(exact + _gzip(b" ")), list)


# --- how much one record may cost ------------------------------------------------------------------------


def test_a_record_of_more_lines_than_the_limit_is_refused_whole_once() -> None:
    # 16 KB of gzip that inflates to 5.5 million lines: without the limit, 5.5 million dead letters
    # (1.3 GB and about 20 minutes in one processRecords call).
    bomb = _gzip(b"{}\n" * 5_500_000)
    assert len(bomb) < 20_000
    started = time.process_time()
    decoded = decode_record(bomb)
    took = time.process_time() - started
    assert not isinstance(decoded, list)
    assert decoded.reason is DropReason.TOO_LARGE
    assert decoded.detail == f"5500000 lines, more than {MAX_LINES_PER_RECORD} in one record"
    assert took < 2.0, f"{took:.2f} s of CPU to refuse the record"


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_the_line_limit_is_inclusive_and_counts_blank_lines(gzipped: bool) -> None:
    def record(body: bytes) -> bytes:
        return _gzip(body) if gzipped else body

    at_limit = b"\n".join([_event(1), *[b""] * 8, _event(2)])  # 10 lines, 8 of them blank
    assert _ids(_events(record(at_limit), max_lines=10)) == ["ev-1", "ev-2"]
    assert _ids(_events(record(at_limit + b"\n"), max_lines=10)) == ["ev-1", "ev-2"]  # a final newline ends line 10
    over = decode_record(record(at_limit + b"\n "), max_lines=10)
    assert not isinstance(over, list)
    assert (over.reason, over.detail) == (DropReason.TOO_LARGE, "11 lines, more than 10 in one record")


def test_the_default_line_limit_lets_a_full_record_of_small_events_through() -> None:
    lines = [_event(i) for i in range(MAX_LINES_PER_RECORD)]
    events = _events(b"\n".join(lines) + b"\n")
    assert len(events) == MAX_LINES_PER_RECORD and all(e.failure is None for e in events)
    assert not isinstance(decode_record(b"\n".join([*lines, _event(-1)])), list)


def test_a_line_longer_than_the_limit_is_too_large_alone() -> None:
    huge = b'{"event_type": "game_launch", "blob": [' + b"0," * (MAX_LINE_BYTES // 2) + b"0]}"
    assert len(huge) > MAX_LINE_BYTES
    events = _events(_gzip(_event(1) + b"\n" + huge + b"\n" + _event(2)))
    assert _ids(events) == ["ev-1", "ev-2"]
    bad = events[1]
    assert (bad.position, bad.raw, bad.data) == (1, huge, None)
    assert bad.failure is not None and bad.failure.reason is DropReason.TOO_LARGE
    assert bad.failure.detail == f"a line of {len(huge)} bytes, more than {MAX_LINE_BYTES}"


def test_the_line_size_limit_is_inclusive_and_ignores_surrounding_whitespace() -> None:
    line = _event(1)
    (event,) = _events(b"  " + line + b" \r", max_line_bytes=len(line))
    assert event.data is not None and event.raw == b"  " + line + b" \r"
    (event,) = _events(line, max_line_bytes=len(line) - 1)
    assert event.failure is not None and event.failure.reason is DropReason.TOO_LARGE
