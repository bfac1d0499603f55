"""The broken fixtures and the normalization rules, checked together.

Each record of a fixture is decoded the simple way (gunzip if gzip magic, split lines, skip blank
lines, json.loads each line) and its events run through one Normalizer per file; the outcomes must be
those the fixture's ``*.expected.json`` states, line by line.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from clickstream.capture import CaptureRecord, read_capture
from clickstream.mapping import EventMapping
from clickstream.normalize import Normalizer, Source
from clickstream.outcomes import Drop, DropReason

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OUTCOMES = {"deliver", "skip"} | {reason.value for reason in DropReason}


def _outcomes(record: CaptureRecord, normalizer: Normalizer, arrival: float | None) -> list[str]:
    """The outcome of each event of ``record``, in order."""
    data = record.data
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return [DropReason.CORRUPT_GZIP.value]
    outcomes: list[str] = []
    for position, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            parsed: Any = json.loads(line)
        except UnicodeDecodeError:
            outcomes.append(DropReason.INVALID_UTF8.value)
            continue
        except ValueError:
            outcomes.append(DropReason.MALFORMED_JSON.value)
            continue
        if not isinstance(parsed, dict):
            outcomes.append(DropReason.NOT_AN_OBJECT.value)
            continue
        source = Source(
            stream_id="fixture",
            sequence_number=record.sequence_number or f"line-{record.line}",
            position=position,
            arrival_time=record.arrival_time if record.arrival_time is not None else arrival,
        )
        result = normalizer.normalize(parsed, source)
        outcomes.append(result.reason.value if isinstance(result, Drop) else "deliver")
    return outcomes


def _expected(name: str) -> dict[str, Any]:
    expected: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return expected


def _actual(capture: str, arrival: float | None) -> dict[int, list[str]]:
    normalizer = Normalizer(EventMapping.default())
    actual: dict[int, list[str]] = {}
    for record in read_capture(FIXTURES / capture):
        assert record.line is not None
        actual[record.line] = _outcomes(record, normalizer, arrival)
    return actual


@pytest.mark.parametrize(
    ("capture", "expected_file"),
    [("broken.jsonl", "broken.expected.json"), ("broken_kinesis.jsonl", "broken_kinesis.expected.json")],
)
def test_every_line_has_the_stated_outcomes(capture: str, expected_file: str) -> None:
    expected = _expected(expected_file)
    assert expected["capture"] == capture
    actual = _actual(capture, expected["arrival_time"])
    n_lines = len((FIXTURES / capture).read_bytes().split(b"\n")) - 1
    assert [entry["line"] for entry in expected["lines"]] == list(range(1, n_lines + 1))
    for entry in expected["lines"]:
        assert set(entry["expected"]) <= OUTCOMES, entry
        want = [] if entry["expected"] == ["skip"] else entry["expected"]
        got = actual.get(entry["line"], [])
        assert got == want, f"line {entry['line']} ({entry['case']}): expected {want}, got {got}"


def test_broken_fixture_covers_every_drop_reason_that_normalization_can_give() -> None:
    seen: Counter[str] = Counter()
    for name in ("broken.expected.json", "broken_kinesis.expected.json"):
        for entry in _expected(name)["lines"]:
            seen.update(entry["expected"])
    # REJECTED comes from Personalize, not from normalization.
    assert {reason.value for reason in DropReason} - {DropReason.REJECTED.value} <= set(seen)
    assert seen["deliver"] > 10
    assert seen["skip"] == 1


def test_broken_lines_hold_the_raw_bytes_the_cases_need() -> None:
    raw = (FIXTURES / "broken.jsonl").read_bytes().split(b"\n")
    cases = {entry["case"]: entry["line"] for entry in _expected("broken.expected.json")["lines"]}
    utf8_line = raw[cases["invalid UTF-8 bytes inside a string"] - 1]
    with pytest.raises(UnicodeDecodeError):
        utf8_line.decode("utf-8")
    assert raw[cases["an empty line: skipped, no record, no event"] - 1] == b""


@pytest.mark.parametrize("capture", ["clean.jsonl", "clean.jsonl.gz", "kinesis_capture.jsonl"])
def test_clean_captures_have_no_bad_input(capture: str) -> None:
    """Clean fixtures: every event is delivered or dropped by design, never dead-lettered."""
    # Plain captures carry no arrival time: a replay the day after the capture.
    outcomes = Counter(outcome for outcomes in _actual(capture, 1_793_577_600.0).values() for outcome in outcomes)
    bad = {o: n for o, n in outcomes.items() if o != "deliver" and DropReason(o).is_bad_input}
    assert not bad
    assert outcomes["deliver"] > 100
    assert outcomes[DropReason.COLLAPSED.value] > 0
    assert outcomes[DropReason.NOT_AN_INTERACTION.value] > 0
