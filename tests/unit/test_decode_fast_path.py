"""decode_record's shortcut for lines that start like a JSON object gives what json.loads gives."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_worker.decode import decode_record


def _reference(data: bytes) -> list[tuple[int, str, str]]:
    """decode_record as it was written before the shortcut: json.loads on every stripped line."""
    out: list[tuple[int, str, str]] = []
    for position, line in enumerate(data.split(b"\n")):
        stripped = line.strip()
        if not stripped:
            continue
        try:
            parsed = json.loads(stripped)
        except UnicodeDecodeError as exc:
            out.append((position, "invalid_utf8", str(exc)[:200]))
            continue
        except ValueError as exc:
            out.append((position, "malformed_json", str(exc)[:200]))
            continue
        if isinstance(parsed, dict):
            out.append((position, "ok", repr(parsed)))
        else:
            out.append((position, "not_an_object", f"a JSON {type(parsed).__name__}, not an object"))
    return out


def _decoded(data: bytes) -> list[tuple[int, str, str]]:
    result = decode_record(data)
    assert isinstance(result, list)
    out: list[tuple[int, str, str]] = []
    for event in result:
        if event.data is not None:
            out.append((event.position, "ok", repr(event.data)))
        else:
            assert event.failure is not None
            out.append((event.position, event.failure.reason.value, event.failure.detail))
    return out


_BYTES = [b"{", b"}", b'"a"', b":", b"1", b",", b"\x00", b"\xff", b"\xed\xa0\x80", b"\xc3\xa9", b'"\\ud800"', b"\n"]
_BYTES += [b" ", b"[", b"]", b"\xef\xbb\xbf", b"\x00{", b"{\x00", b"\xfe\xff", b"\xff\xfe", b'{"a":1}']
_PIECES = st.sampled_from(_BYTES)


@settings(max_examples=2000, deadline=None)
@given(st.lists(_PIECES, max_size=12).map(b"".join))
def test_every_line_decodes_as_json_loads_would(data: bytes) -> None:
    if data[:2] == b"\x1f\x8b":
        return
    assert _decoded(data) == _reference(data)


def test_utf16_and_surrogates_as_before() -> None:
    utf16 = '{"a": "b"}'.encode("utf-16-le")
    assert _decoded(utf16) == _reference(utf16)
    lone = b'{"a": "\xed\xa0\x80"}'
    assert _decoded(lone) == _reference(lone) and _decoded(lone)[0][1] == "ok"
