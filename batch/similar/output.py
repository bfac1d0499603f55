"""Batch inference output: ``*.out`` objects of JSON lines, streamed one line at a time and parsed.

A good line (``scores`` may be absent)::

    {"input": {"itemId": "g-1"}, "output": {"recommendedItems": ["g-2", "g-3"], "scores": [0.8, 0.5]}}

A line with an ``error`` key is the service's answer that it could not infer for that input; a line that is
not JSON or not of this shape is malformed. Neither is fatal: both are counted in :class:`OutputReport`
with a few examples, and the line is skipped. Memory holds one line at a time, whatever the output's size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from batch.similar.errors import OutputNotFoundError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Personalize's limit on an item id.
MAX_ID_LENGTH: Final = 256
#: Objects of an output folder the loader reads.
OUTPUT_SUFFIX: Final = ".out"
EXAMPLES_KEPT: Final = 5
_SNIPPET_CHARS: Final = 160


@dataclass(frozen=True, slots=True)
class SimilarGames:
    """One game's answer: similar game ids in the model's order, and their scores when the model gave any."""

    game_id: str
    similar: tuple[str, ...]
    scores: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class BadLine:
    """Where a skipped line was, why, and its beginning."""

    location: str
    reason: str
    snippet: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}: {self.snippet}"


@dataclass(slots=True)
class OutputReport:
    """Lines read, parsed, answered with an error, malformed; the first few bad ones as examples."""

    files: int = 0
    lines: int = 0
    parsed: int = 0
    errors: int = 0
    malformed: int = 0
    error_examples: list[BadLine] = field(default_factory=list)
    malformed_examples: list[BadLine] = field(default_factory=list)

    def add_error(self, bad: BadLine) -> None:
        self.errors += 1
        if len(self.error_examples) < EXAMPLES_KEPT:
            self.error_examples.append(bad)

    def add_malformed(self, bad: BadLine) -> None:
        self.malformed += 1
        if len(self.malformed_examples) < EXAMPLES_KEPT:
            self.malformed_examples.append(bad)


class LineRejectedError(ValueError):
    """A line is not a usable answer; ``error`` tells a service error line from a malformed one."""

    def __init__(self, reason: str, *, error: bool = False) -> None:
        super().__init__(reason)
        self.error = error


def _snippet(line: str) -> str:
    return line if len(line) <= _SNIPPET_CHARS else line[:_SNIPPET_CHARS] + "..."


def _game_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        raise LineRejectedError(f"{what} is not a game id (a string of 1..{MAX_ID_LENGTH} characters)")
    return value


def parse_line(line: str) -> SimilarGames:
    """The answer on one output line; raises :class:`LineRejectedError` for an error line or a malformed one."""
    try:
        data: Any = json.loads(line)
    except ValueError as exc:
        raise LineRejectedError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise LineRejectedError("not a JSON object")
    source = data.get("input")
    item_id = source.get("itemId") if isinstance(source, dict) else None
    if "error" in data:
        raise LineRejectedError(f"itemId {item_id!r}: {data['error']}", error=True)
    if not isinstance(source, dict):
        raise LineRejectedError("no input object")
    game_id = _game_id(item_id, "input.itemId")
    output = data.get("output")
    if not isinstance(output, dict) or not isinstance(output.get("recommendedItems"), list):
        raise LineRejectedError("no output.recommendedItems list")
    similar = tuple(_game_id(item, "a recommended item") for item in output["recommendedItems"])
    raw_scores = output.get("scores")
    scores: tuple[float, ...] | None = None
    if raw_scores is not None:
        if (
            not isinstance(raw_scores, list)
            or len(raw_scores) != len(similar)
            or not all(isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) for s in raw_scores)
        ):
            raise LineRejectedError("output.scores is not a list of numbers, one per recommended item")
        scores = tuple(float(score) for score in raw_scores)
    return SimilarGames(game_id, similar, scores)


def parse_lines(lines: Iterable[str | bytes], location: str, report: OutputReport) -> Iterator[SimilarGames]:
    """The answers among ``lines`` (of the file at ``location``); bad lines are counted and skipped.

    Lines given as bytes must be UTF-8 (a byte order mark is ignored).
    """
    report.files += 1
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        report.lines += 1
        try:
            line = raw.decode("utf-8").lstrip("\ufeff") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
            report.add_malformed(BadLine(f"{location}:{number}", f"not UTF-8 ({exc.reason})", _snippet(text.strip())))
            continue
        try:
            answer = parse_line(line)
        except LineRejectedError as rejected:
            bad = BadLine(f"{location}:{number}", str(rejected), _snippet(line.strip()))
            if rejected.error:
                report.add_error(bad)
            else:
                report.add_malformed(bad)
            continue
        report.parsed += 1
        yield answer


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    key: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket/key-or-prefix``; raises ValueError otherwise."""
        if not url.startswith("s3://"):
            raise ValueError(f"not an s3:// URL: {url!r}")
        bucket, _, key = url[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {url!r}")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class BatchOutput:
    """The output objects at an S3 location: the object itself, or every ``*.out`` object under the prefix.

    :meth:`answers` streams them (re-iterable: each call reads S3 again); lines split on ``\\n``.
    """

    def __init__(self, client: S3Client, location: S3Location) -> None:
        self._client = client
        self.location = location
        self.keys = self._resolve()

    def _resolve(self) -> list[str]:
        bucket, key = self.location.bucket, self.location.key
        try:
            if key and not key.endswith("/"):
                try:
                    self._client.head_object(Bucket=bucket, Key=key)
                    return [key]
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                        raise
            prefix = f"{key.rstrip('/')}/" if key else ""
            keys: list[str] = []
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys.extend(entry["Key"] for entry in page.get("Contents", []) if entry["Key"].endswith(OUTPUT_SUFFIX))
        except (BotoCoreError, ClientError) as exc:
            raise OutputNotFoundError(f"cannot read {self.location}: {exc}") from exc
        if not keys:
            raise OutputNotFoundError(f"no batch inference output (*{OUTPUT_SUFFIX}) at {self.location}")
        return sorted(keys)

    def _lines(self, key: str) -> Iterator[bytes]:
        try:
            body = self._client.get_object(Bucket=self.location.bucket, Key=key)["Body"]
            with body:
                yield from body.iter_lines(chunk_size=64 * 1024)
        except (BotoCoreError, ClientError) as exc:
            raise OutputNotFoundError(f"cannot read s3://{self.location.bucket}/{key}: {exc}") from exc

    def answers(self, report: OutputReport) -> Iterator[SimilarGames]:
        for key in self.keys:
            yield from parse_lines(self._lines(key), f"s3://{self.location.bucket}/{key}", report)
