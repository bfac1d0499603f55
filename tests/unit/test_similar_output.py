"""Parsing SIMS batch inference output lines: good answers kept, error and malformed lines counted, not fatal."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch.similar.model_version import ModelVersion
from batch.similar.output import (
    EXAMPLES_KEPT,
    LineRejectedError,
    OutputReport,
    S3Location,
    SimilarGames,
    parse_line,
    parse_lines,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "similar" / "sims_batch_output.jsonl"


def test_fixture_answers_errors_and_malformed_lines() -> None:
    report = OutputReport()
    answers = list(parse_lines(FIXTURE.read_bytes().splitlines(), "s3://b/out/items.jsonl.out", report))
    assert answers == [
        SimilarGames("g-01", ("g-02", "g-hit", "g-03")),
        SimilarGames("g-02", ("g-01", "g-hit"), (0.91, 0.12)),
        SimilarGames("g-06", ()),
    ]
    assert (report.files, report.lines, report.parsed, report.errors, report.malformed) == (1, 11, 3, 2, 6)
    assert [bad.location for bad in report.error_examples] == [
        "s3://b/out/items.jsonl.out:4",
        "s3://b/out/items.jsonl.out:12",
    ]
    assert "not in the solution version" in report.error_examples[0].reason
    assert report.malformed_examples[0].location.endswith(":5")
    assert report.malformed_examples[0].reason.startswith("not JSON")
    assert len(report.malformed_examples) == EXAMPLES_KEPT


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"input":{"itemId":"g-1"},"output":{"recommendedItems":["g-2"],"scores":[0.1,0.2]}}', "scores"),
        ('{"input":{"itemId":"g-1"},"output":{"recommendedItems":["g-2"],"scores":[true]}}', "scores"),
        ('{"input":{"itemId":"g-1"},"output":{"recommendedItems":[7]}}', "recommended item"),
        ('{"input":{"itemId":7},"output":{"recommendedItems":[]}}', "input.itemId"),
        ('{"input":{"itemId":"' + "x" * 257 + '"},"output":{"recommendedItems":[]}}', "input.itemId"),
        ('{"output":{"recommendedItems":[]}}', "no input"),
        ('{"input":{"itemId":"g-1"},"output":{}}', "recommendedItems"),
    ],
)
def test_malformed_lines_say_why(line: str, reason: str) -> None:
    with pytest.raises(LineRejectedError) as rejected:
        parse_line(line)
    assert reason in str(rejected.value)
    assert not rejected.value.error


def test_error_line_is_an_error_even_with_output() -> None:
    with pytest.raises(LineRejectedError) as rejected:
        parse_line('{"input":{"itemId":"g-1"},"error":"boom","output":{"recommendedItems":[]}}')
    assert rejected.value.error
    assert "'g-1': boom" in str(rejected.value)


def test_invalid_utf8_and_bom() -> None:
    report = OutputReport()
    lines = [b"\xef\xbb\xbf" + b'{"input":{"itemId":"g-1"},"output":{"recommendedItems":["g-2"]}}', b'{"input":"\xff"}']
    answers = list(parse_lines(lines, "f", report))
    assert answers == [SimilarGames("g-1", ("g-2",))]
    assert report.malformed == 1
    assert "not UTF-8" in report.malformed_examples[0].reason


def test_s3_location() -> None:
    assert S3Location.parse("s3://bucket/a/b.out") == S3Location("bucket", "a/b.out")
    assert S3Location.parse("s3://bucket") == S3Location("bucket", "")
    with pytest.raises(ValueError, match="s3://"):
        S3Location.parse("/tmp/x")


def test_model_versions_sort_by_time_then_source() -> None:
    older = ModelVersion.parse("arn:aws:personalize:us-east-1:1:solution/sims/zz@2024-06-01T12:00:00Z")
    newer = ModelVersion.parse("arn:aws:personalize:us-east-1:1:solution/sims/aa@2024-06-01T12:00:00.5+00:00")
    assert older < newer
    assert older.key < newer.key
    assert older.key == "2024-06-01T12:00:00.000000Z arn:aws:personalize:us-east-1:1:solution/sims/zz"
    assert ModelVersion.parse(newer.key) == newer
    with pytest.raises(ValueError, match="SOURCE@ISO-TIME"):
        ModelVersion.parse("v3")
    with pytest.raises(ValueError, match="ISO-8601"):
        ModelVersion.parse("v3@yesterday")
