"""Capture files: both formats round-trip, gzip is told by its magic bytes, broken lines never crash."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from clickstream.capture import (
    GZIP_MAGIC,
    CaptureError,
    CaptureRecord,
    detect_kind,
    is_gzip,
    read_capture,
    write_capture,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _event(n: int, **extra: object) -> bytes:
    body: dict[str, object] = {
        "event_type": "game_launch",
        "session_id": f"s-{n}",
        "player_id": f"p-{n % 3}",
        "game_id": "g-1",
    }
    body.update(extra)
    return json.dumps(body, separators=(",", ":")).encode()


def _records() -> list[CaptureRecord]:
    return [
        CaptureRecord(_event(1), "p-1", "4959001", 1_793_491_200.123, shard_id="shardId-000000000000"),
        CaptureRecord(_event(2) + b"\n" + _event(3) + b"\n", "p-2", "4959002", 1_793_491_201.5),
        CaptureRecord(gzip.compress(_event(4), mtime=0), "p-1", "4959003", 1_793_491_202.0),
        CaptureRecord(b"\xff\xfe not utf-8 \x00", "p-0", None, None),
        CaptureRecord(b"", "p-0", "4959005", 1_793_491_203.0),
    ]


def _strip(record: CaptureRecord) -> CaptureRecord:
    return CaptureRecord(
        record.data, record.partition_key, record.sequence_number, record.arrival_time, None, record.shard_id
    )


@pytest.mark.parametrize("compress", [False, True])
def test_kinesis_capture_round_trips_every_kind_of_record(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "capture.jsonl"
    records = _records()
    assert write_capture(path, records, kind="kinesis", gzip=compress) == len(records)
    assert is_gzip(path.read_bytes()) is compress
    back = list(read_capture(path))
    assert [_strip(r) for r in back] == records
    assert [r.line for r in back] == [1, 2, 3, 4, 5]
    assert detect_kind(path) == "kinesis"


def test_kinesis_lines_have_the_kcl_shape(tmp_path: Path) -> None:
    path = tmp_path / "capture.jsonl"
    write_capture(path, _records()[:1], kind="kinesis")
    line = json.loads(path.read_bytes())
    assert line == {
        "data": base64.b64encode(_event(1)).decode(),
        "partitionKey": "p-1",
        "sequenceNumber": "4959001",
        "approximateArrivalTimestamp": 1_793_491_200_123,
        "shardId": "shardId-000000000000",
    }


@pytest.mark.parametrize("compress", [False, True])
def test_jsonl_capture_round_trips_single_event_records(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "capture.jsonl"
    records = [CaptureRecord(_event(n), f"p-{n % 3}") for n in range(10)]
    write_capture(path, records, kind="jsonl", gzip=compress)
    back = list(read_capture(path))
    assert [r.data for r in back] == [r.data for r in records]
    assert [r.partition_key for r in back] == [r.partition_key for r in records]
    assert [r.line for r in back] == list(range(1, 11))
    assert all(r.sequence_number is None and r.arrival_time is None for r in back)
    assert detect_kind(path) == "jsonl"


@pytest.mark.parametrize(
    "data", [gzip.compress(b'{"event_type":"login"}', mtime=0), b'{"a":1}\n{"b":2}', b"  ", b'{"a":1}\r']
)
def test_jsonl_refuses_records_a_line_cannot_hold(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(CaptureError, match="kinesis"):
        write_capture(tmp_path / "x.jsonl", [CaptureRecord(data, "k")], kind="jsonl")


def test_gzip_is_detected_by_magic_not_by_name(tmp_path: Path) -> None:
    records = [CaptureRecord(_event(n), "k") for n in range(3)]
    disguised = tmp_path / "looks-plain.jsonl"
    write_capture(disguised, records, kind="jsonl", gzip=True)
    assert disguised.read_bytes()[:2] == GZIP_MAGIC
    misnamed = tmp_path / "looks-compressed.jsonl.gz"
    write_capture(misnamed, records, kind="jsonl")
    assert [r.data for r in read_capture(disguised)] == [r.data for r in read_capture(misnamed)]


def test_gzip_output_is_deterministic(tmp_path: Path) -> None:
    for name in ("a.gz", "b.gz"):
        write_capture(tmp_path / name, _records(), kind="kinesis", gzip=True)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path: Path) -> None:
    path = tmp_path / "capture.jsonl"
    path.write_bytes(b"\n" + _event(1) + b"\r\n   \n" + _event(2))  # CRLF, blank, no final newline
    back = list(read_capture(path))
    assert [(r.line, r.data) for r in back] == [(2, _event(1)), (4, _event(2))]


def test_jsonl_partition_key_falls_back_from_player_to_session_to_a_hash(tmp_path: Path) -> None:
    path = tmp_path / "capture.jsonl"
    lines = [
        b'{"event_type":"x","playerId":"p-9","sessionId":"s-9"}',
        b'{"event_type":"x","session_id":"s-8"}',
        b'{"event_type":"x","player_id":"' + b"p" * 300 + b'","session_id":"s-7"}',
        b"not json",
        b"not json",
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    keys = [r.partition_key for r in read_capture(path)]
    assert keys[:3] == ["p-9", "s-8", "s-7"]
    assert keys[3] == keys[4] and keys[3].startswith("h-")


def test_broken_kinesis_lines_become_records_of_their_own_bytes(tmp_path: Path) -> None:
    good = {"data": base64.b64encode(_event(1)).decode(), "partitionKey": "p-1", "sequenceNumber": "1"}
    bad_base64 = {
        "data": "!!!",
        "partitionKey": "p-2",
        "sequenceNumber": "2",
        "approximateArrivalTimestamp": 1_793_491_200_000,
    }
    no_key = {"data": base64.b64encode(_event(3)).decode()}
    data_not_text = {"data": 42, "partitionKey": "p-4"}
    lines = [
        json.dumps(good).encode(),
        b'{"data": "truncated',
        json.dumps(bad_base64).encode(),
        json.dumps(no_key).encode(),
        json.dumps(data_not_text).encode(),
        b"[1, 2]",
        b"\xff\xfe",
    ]
    path = tmp_path / "capture.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    back = list(read_capture(path))
    assert [r.line for r in back] == list(range(1, 8))
    assert back[0].data == _event(1)
    for record, line in zip(back[1:], lines[1:], strict=True):
        assert record.data == line
        assert record.partition_key
    # What could be read of a broken line is kept.
    assert (back[2].partition_key, back[2].sequence_number, back[2].arrival_time) == (
        "p-2",
        "2",
        1_793_491_200.0,
    )


def test_detection_looks_past_a_broken_first_line(tmp_path: Path) -> None:
    path = tmp_path / "capture.jsonl"
    good = {"data": base64.b64encode(_event(1)).decode(), "partitionKey": "p-1"}
    path.write_bytes(b"garbage\n\n" + json.dumps(good).encode() + b"\n")
    assert detect_kind(path) == "kinesis"
    assert [r.data for r in read_capture(path)] == [b"garbage", _event(1)]


def test_kind_can_be_forced(tmp_path: Path) -> None:
    path = tmp_path / "capture.jsonl"
    good = {"data": base64.b64encode(_event(1)).decode(), "partitionKey": "p-1"}
    path.write_bytes(json.dumps(good).encode() + b"\n")
    (record,) = read_capture(path, kind="jsonl")
    assert record.data == json.dumps(good).encode()


def test_aws_cli_style_keys_are_read(tmp_path: Path) -> None:
    path = tmp_path / "capture.jsonl"
    line = {
        "SequenceNumber": "49590",
        "ApproximateArrivalTimestamp": 1_793_491_200.25,
        "Data": base64.b64encode(_event(1)).decode(),
        "PartitionKey": "p-1",
    }
    path.write_bytes(json.dumps(line).encode() + b"\n")
    (record,) = read_capture(path)
    assert (record.data, record.partition_key, record.sequence_number, record.arrival_time) == (
        _event(1),
        "p-1",
        "49590",
        1_793_491_200.25,
    )


def test_empty_file_reads_as_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert list(read_capture(path)) == []
    assert detect_kind(path) == "jsonl"


def test_truncated_gzip_file_is_a_capture_error(tmp_path: Path) -> None:
    path = tmp_path / "capture.jsonl.gz"
    write_capture(path, [CaptureRecord(_event(n) * 50, "k") for n in range(200)], kind="jsonl", gzip=True)
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(CaptureError, match="corrupt"):
        list(read_capture(path))


def test_reading_is_lazy(tmp_path: Path) -> None:
    path = tmp_path / "capture.jsonl"
    write_capture(path, (CaptureRecord(_event(n), "k") for n in range(1000)), kind="jsonl")
    records = read_capture(path)
    assert next(records).line == 1
    records.close()  # type: ignore[attr-defined]


def test_fixture_clean_gz_holds_the_same_records_as_clean() -> None:
    plain = list(read_capture(FIXTURES / "clean.jsonl"))
    compressed = list(read_capture(FIXTURES / "clean.jsonl.gz"))
    assert (FIXTURES / "clean.jsonl.gz").read_bytes()[:2] == GZIP_MAGIC
    assert compressed == plain
    assert len(plain) > 1000


def test_fixture_kinesis_capture_mixes_record_kinds() -> None:
    records = list(read_capture(FIXTURES / "kinesis_capture.jsonl"))
    assert detect_kind(FIXTURES / "kinesis_capture.jsonl") == "kinesis"
    gzipped = [r for r in records if is_gzip(r.data)]
    inflated = [gzip.decompress(r.data) if is_gzip(r.data) else r.data for r in records]
    multi = [data for data in inflated if data.count(b"\n") > 1]
    assert gzipped and multi and len(gzipped) < len(records) and len(multi) < len(records)
    sequence_numbers = [int(r.sequence_number or "0") for r in records]
    assert sequence_numbers == sorted(sequence_numbers)
    arrivals = [r.arrival_time or 0.0 for r in records]
    assert arrivals == sorted(arrivals)
    assert {r.shard_id for r in records} == {"shardId-000000000000", "shardId-000000000001"}


def test_damaged_gzip_header_is_a_capture_error(tmp_path: Path) -> None:
    path = tmp_path / "capture.jsonl"
    path.write_bytes(GZIP_MAGIC + b"\x08\x00 not really gzip")
    with pytest.raises(CaptureError):
        detect_kind(path)
    with pytest.raises(CaptureError):
        list(read_capture(path))
