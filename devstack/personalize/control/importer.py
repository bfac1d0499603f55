"""Dataset import: CSV files (from S3) checked against the dataset's schema and turned into rows.

The header names schema fields (any order, any case); every non-null field of the schema must be there
and no column may be unknown. Values: ``TIMESTAMP`` and other ``long``/``int`` fields are integers
(``TIMESTAMP`` in epoch *seconds*: a 13-digit value is refused as milliseconds); ``float``/``double``
numbers; ``boolean`` true/false; categorical strings are split on ``|``. An empty value is allowed only
for a nullable field. Any bad row fails the whole job, with the first problems in the failure reason.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from devstack.personalize.control.schemas import DatasetSchema, SchemaField
from devstack.personalize.filters import FieldValue
from devstack.personalize.recipes import Interaction

#: Timestamps above this (9999999999, year 2286) are taken for milliseconds.
MAX_EPOCH_SECONDS: Final = 9_999_999_999
MAX_REPORTED: Final = 5


class ImportFailedError(Exception):
    """The data cannot be imported; the message is the job's ``failureReason``."""


@dataclass(slots=True)
class ImportedRows:
    """What one import job read: interactions (INTERACTIONS) or records by id (ITEMS, USERS)."""

    interactions: list[Interaction] = field(default_factory=list)
    records: dict[str, dict[str, FieldValue]] = field(default_factory=dict)
    rows: int = 0


def convert(spec: SchemaField, text: str) -> FieldValue | None:
    """``text`` as a value of field ``spec`` (``None`` for an empty value); raise ``ValueError`` if bad."""
    if text == "":
        if spec.nullable:
            return None
        raise ValueError("is empty but the field is not nullable")
    kind = spec.type
    if kind in ("int", "long"):
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        if spec.name == "TIMESTAMP":
            if number < 0:
                raise ValueError(f"{text!r} is not epoch seconds (negative)")
            if number > MAX_EPOCH_SECONDS:
                raise ValueError(f"{text!r} is not epoch seconds (milliseconds?)")
        return float(number)
    if kind in ("float", "double"):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if kind == "boolean":
        lowered = text.lower()
        if lowered not in ("true", "false"):
            raise ValueError(f"{text!r} is not true or false")
        return lowered == "true"
    if spec.categorical:
        return tuple(part for part in text.split("|") if part)
    return text


def _seconds(value: FieldValue | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImportFailedError(f"TIMESTAMP {value!r} is not epoch seconds")
    return float(value)


def _timestamp_hint(spec: SchemaField) -> str:
    return " (TIMESTAMP must be epoch seconds)" if spec.name == "TIMESTAMP" else ""


def parse_csv(files: Sequence[tuple[str, bytes]], schema: DatasetSchema, dataset_type: str) -> ImportedRows:
    """Read every file of an import job; raise :class:`ImportFailedError` on the first file with problems."""
    result = ImportedRows()
    for location, body in files:
        _parse_file(location, body, schema, dataset_type, result)
    return result


def _parse_file(location: str, body: bytes, schema: DatasetSchema, dataset_type: str, result: ImportedRows) -> None:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFailedError(f"{location} is not UTF-8 text: {exc}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFailedError(f"{location} is empty: the first line must name the columns") from None
    except csv.Error as exc:
        raise ImportFailedError(f"{location} is not valid CSV: {exc}") from None
    columns = [name.strip().upper() for name in header]
    specs: list[SchemaField] = []
    for name in columns:
        spec = schema.field(name)
        if spec is None:
            raise ImportFailedError(
                f"{location}: column {name!r} is not a field of schema {schema.name} ({', '.join(schema.names)})"
            )
        specs.append(spec)
    if len(set(columns)) != len(columns):
        raise ImportFailedError(f"{location}: the header names a column twice: {header}")
    missing = [spec.name for spec in schema.fields if not spec.nullable and spec.name not in columns]
    if missing:
        raise ImportFailedError(f"{location}: required column(s) {', '.join(missing)} missing from the header {header}")
    problems: list[str] = []
    count = 0
    width = len(columns)
    user_at = columns.index("USER_ID") if "USER_ID" in columns else -1
    item_at = columns.index("ITEM_ID") if "ITEM_ID" in columns else -1
    time_at = columns.index("TIMESTAMP") if "TIMESTAMP" in columns else -1
    type_at = columns.index("EVENT_TYPE") if "EVENT_TYPE" in columns else -1
    value_at = columns.index("EVENT_VALUE") if "EVENT_VALUE" in columns else -1
    id_at = item_at if dataset_type == "ITEMS" else user_at
    try:
        for line_number, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            count += 1
            if len(row) != width:
                problems.append(f"line {line_number}: {len(row)} values for {width} columns")
                if len(problems) >= MAX_REPORTED:
                    break
                continue
            values: list[FieldValue | None] = []
            for spec, raw in zip(specs, row, strict=True):
                try:
                    values.append(convert(spec, raw.strip()))
                except ValueError as exc:
                    problems.append(f"line {line_number}: {spec.name} {exc}{_timestamp_hint(spec)}")
                    values.append(None)
            if len(problems) >= MAX_REPORTED:
                break
            if problems:
                continue
            if dataset_type == "INTERACTIONS":
                event_value = values[value_at] if value_at >= 0 else None
                result.interactions.append(
                    Interaction(
                        user_id=str(values[user_at]),
                        item_id=str(values[item_at]),
                        timestamp=_seconds(values[time_at]),
                        event_type=str(values[type_at] or "") if type_at >= 0 else "",
                        event_value=float(event_value) if isinstance(event_value, int | float) else None,
                    )
                )
            else:
                record = {
                    name: value for name, value in zip(columns, values, strict=True) if value is not None and name
                }
                result.records[str(values[id_at])] = record
    except csv.Error as exc:
        problems.append(f"line {reader.line_num}: not valid CSV ({exc})")
    if problems:
        shown = "; ".join(problems[:MAX_REPORTED])
        more = " (and possibly more)" if len(problems) >= MAX_REPORTED else ""
        raise ImportFailedError(f"{location} has invalid rows: {shown}{more}")
    result.rows += count
