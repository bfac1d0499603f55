"""Rows of the platform database -> dataset records, by the same rules as the stream.

An interaction row becomes a raw clickstream event (its columns named after the event's fields) and
goes through ``clickstream.normalize`` with the stream's mapping: a game session row, read as a
``game_round`` whose stake is the session's first stake, becomes the ``play`` interaction the stream
collapses that session's rounds into, with the same deterministic eventId. Whatever Personalize would
refuse is dropped and counted by reason. Item and user rows become CSV values field by field.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Final

from pydantic.alias_generators import to_camel

from batch.errors import ConfigurationError
from batch.queries import INTERACTION_FIELDS, DatasetField, InteractionSource, RecordQuery
from clickstream.limits import MAX_ID_LENGTH
from clickstream.mapping import EventMapping
from clickstream.normalize import Normalizer, Source
from clickstream.outcomes import Drop
from clickstream.raw import parse_timestamp

#: Personalize needs a user for an interaction; play without an account has none.
MISSING_USER: Final = "missing_user"
#: A metadata value the interactions schema cannot hold.
INVALID_METADATA: Final = "invalid_metadata"
CATEGORY_SEPARATOR: Final = "|"
#: Distinct ``properties`` whose metadata values are remembered (see ``InteractionTransform._metadata``).
_METADATA_MEMORY: Final = 4096
#: Records dropped as invalid whose id and reason are kept (for the report), at most.
MAX_REJECTED: Final = 1000


class FieldValueError(ValueError):
    """A value that does not fit its dataset field."""


# --- values -------------------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    """A naive datetime is UTC (what the platform database stores)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def epoch_seconds(value: datetime | date) -> float:
    """Epoch seconds of a moment (naive: UTC) or of a day's midnight UTC."""
    if isinstance(value, datetime):
        return _utc(value).timestamp()
    return datetime.combine(value, time(), tzinfo=UTC).timestamp()


#: Value types a raw event carries as they come (most database values): no conversion to look for.
_PLAIN_TYPES: Final = frozenset({str, int, float, bool})


def raw_value(value: Any) -> Any:
    """A database value as a raw event carries it: times as epoch seconds, decimals as floats."""
    if type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, datetime | date):
        return epoch_seconds(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def raw_event(row: Mapping[str, Any], event_type: str) -> dict[str, Any]:
    """One interaction row as a raw clickstream event of ``event_type`` (unless the row has its own).

    Columns are event fields; NULL columns are left out, as a client leaves out what it does not know.
    """
    event: dict[str, Any] = {"event_type": event_type}
    for column, value in row.items():
        if value is not None:
            event[column] = raw_value(value)
    return event


def categories(value: Any) -> list[str]:
    """The values of a categorical column: a list, a JSON array text, or ``|``-joined text."""
    if isinstance(value, str):
        text = value.strip()
        if CATEGORY_SEPARATOR not in text and not text.startswith("["):  # one value, the usual case
            return [text] if text else []
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return categories(parsed)
        items: Iterable[Any] = text.split(CATEGORY_SEPARATOR)
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        items = (value,)
    result: list[str] = []
    for item in items:
        if item is None:
            continue
        result.extend(part.strip() for part in str(item).split(CATEGORY_SEPARATOR) if part.strip())
    return result


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, datetime | date):
        return math.floor(epoch_seconds(value))
    if isinstance(value, float | Decimal):
        number = float(value)
        if not math.isfinite(number):
            raise FieldValueError(f"{value!r} is not a finite number")
        return math.floor(number)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            seconds = parse_timestamp(text)
        except (ValueError, OverflowError):
            seconds = None
        if seconds is not None and math.isfinite(seconds):
            return math.floor(seconds)
    raise FieldValueError(f"{value!r} is not an integer, a date or a time")


def _number(value: Any) -> str:
    if isinstance(value, bool):
        raise FieldValueError(f"{value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FieldValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise FieldValueError(f"{value!r} is not a finite number")
    return repr(number)


def _boolean(value: Any) -> str:
    if isinstance(value, bool | int) and value in (0, 1):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "t", "f", "1", "0"):
        return "true" if value.strip().lower() in ("true", "t", "1") else "false"
    raise FieldValueError(f"{value!r} is not true or false")


def encode_value(spec: DatasetField, value: Any) -> str:
    """``value`` as the CSV text of field ``spec``: epoch seconds for times read as long/int,
    ``|``-joined categories, ``""`` for NULL (only where the field is nullable)."""
    text: str
    if value is None:
        text = ""
    elif spec.categorical:
        text = CATEGORY_SEPARATOR.join(categories(value))
    elif spec.type in ("int", "long"):
        text = str(_integer(value))
    elif spec.type in ("float", "double"):
        text = _number(value)
    elif spec.type == "boolean":
        text = _boolean(value)
    elif isinstance(value, list | tuple | dict):
        raise FieldValueError("a list or an object is not a string (declare the field categorical?)")
    elif isinstance(value, datetime):
        text = _utc(value).isoformat()
    else:
        text = str(value).strip()
    if text == "" and not spec.nullable:
        raise FieldValueError("empty, but the field is not nullable")
    return text


# --- interactions --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InteractionRecord:
    """One line of the Interactions CSV, and the eventId the stream would give the same interaction."""

    event_id: str
    user_id: str
    item_id: str
    timestamp: int
    event_type: str
    event_value: float | None
    metadata: tuple[str, ...] = ()

    def csv_values(self) -> list[str]:
        value = "" if self.event_value is None else repr(self.event_value)
        return [self.user_id, self.item_id, str(self.timestamp), self.event_type, value, *self.metadata]


class InteractionTransform:
    """Interaction rows -> :class:`InteractionRecord`, through the stream's :class:`Normalizer`.

    Repeated interactions (two rows of one session and game, the same favourite twice) are dropped as
    the stream drops them (``collapsed``, ``duplicate``); every drop is counted in :attr:`dropped`.
    """

    def __init__(self, mapping: EventMapping, metadata: Sequence[DatasetField] = (), *, memory: int = 200_000) -> None:
        self.mapping = mapping
        self.metadata = tuple(metadata)
        self._metadata_keys = tuple((spec, spec.property_key) for spec in self.metadata)
        self._metadata_memory: dict[str | None, tuple[str, ...] | None] = {}
        self._normalizer = Normalizer(mapping, memory=memory)
        self.dropped: Counter[str] = Counter()

    @property
    def header(self) -> list[str]:
        return [*INTERACTION_FIELDS, *(spec.name for spec in self.metadata)]

    def check(self, sources: Sequence[InteractionSource]) -> None:
        """Raise :class:`ConfigurationError` when a source or a metadata field cannot fit the mapping."""
        for source in sources:
            if source.event_type not in self.mapping.interactions:
                raise ConfigurationError(
                    f"interaction source {source.name!r}: event type {source.event_type!r} is not an "
                    f"interaction of the event mapping ({', '.join(sorted(self.mapping.interactions))})"
                )
        sent = {spec.property_key for spec in self.metadata}
        available = {to_camel(name) for rule in self.mapping.interactions.values() for name in rule.properties}
        missing = sorted(sent - available)
        if missing:
            raise ConfigurationError(
                f"interactions metadata {missing} is in no event's properties under the event mapping "
                f"(properties it sends: {sorted(available)})"
            )

    def transform(self, row: Mapping[str, Any], source: InteractionSource, position: int) -> InteractionRecord | None:
        """The record of one row of ``source`` (``position`` numbers it), or None when it is dropped."""
        event = raw_event(row, source.event_type)
        outcome = self._normalizer.normalize(
            event, Source(stream_id=f"batch:{source.name}", sequence_number=str(position))
        )
        if isinstance(outcome, Drop):
            self.dropped[outcome.reason.value] += 1
            return None
        if outcome.user_id is None:
            self.dropped[MISSING_USER] += 1
            return None
        if outcome.item_id is None:  # the mapping's interactions all need an item; kept for safety
            self.dropped["missing_item"] += 1
            return None
        metadata = self._metadata(outcome.properties)
        if metadata is None:
            self.dropped[INVALID_METADATA] += 1
            return None
        return InteractionRecord(
            event_id=outcome.event_id,
            user_id=outcome.user_id,
            item_id=outcome.item_id,
            timestamp=math.floor(outcome.sent_at),
            event_type=outcome.event_type,
            event_value=outcome.event_value,
            metadata=metadata,
        )

    def _metadata(self, properties: str | None) -> tuple[str, ...] | None:
        """The metadata values of an event's ``properties`` JSON (None: a value does not fit its field).

        Interactions carry few distinct ``properties`` (platform, country, currency...): each is decoded
        once and remembered (at most :data:`_METADATA_MEMORY` of them at a time).
        """
        try:
            return self._metadata_memory[properties]
        except KeyError:
            pass
        values: dict[str, Any] = json.loads(properties) if properties else {}
        metadata: tuple[str, ...] | None
        try:
            metadata = tuple(encode_value(spec, values.get(key)) for spec, key in self._metadata_keys)
        except FieldValueError:
            metadata = None
        if len(self._metadata_memory) >= _METADATA_MEMORY:
            self._metadata_memory.clear()
        self._metadata_memory[properties] = metadata
        return metadata


# --- items and users ----------------------------------------------------------------------------------


class RecordTransform:
    """Item or user rows -> CSV values, one per declared field; rows that cannot fit are dropped and
    counted (``invalid <FIELD>``), the first field being the record's id. The ids of the first
    :data:`MAX_REJECTED` dropped rows are kept in :attr:`rejected`, with why."""

    def __init__(self, query: RecordQuery, *, what: str) -> None:
        self.fields = query.fields
        self.what = what
        self.dropped: Counter[str] = Counter()
        #: Record id -> why it was dropped (``JURISDICTIONS: empty, but the field is not nullable``).
        self.rejected: dict[str, str] = {}
        self._checked = False

    @property
    def header(self) -> list[str]:
        return [spec.name for spec in self.fields]

    def transform(self, row: Mapping[str, Any]) -> list[str] | None:
        if not self._checked:
            missing = [spec.source_column for spec in self.fields if spec.source_column not in row]
            if missing:
                raise ConfigurationError(
                    f"the {self.what} query returns no column {missing} (it returns {sorted(row)})"
                )
            self._checked = True
        values: list[str] = []
        for spec in self.fields:
            try:
                values.append(encode_value(spec, row[spec.source_column]))
            except FieldValueError as exc:
                self._reject(row, spec, str(exc))
                return None
        if len(values[0]) > MAX_ID_LENGTH:
            self._reject(row, self.fields[0], f"longer than {MAX_ID_LENGTH} characters")
            return None
        return values

    def _reject(self, row: Mapping[str, Any], spec: DatasetField, why: str) -> None:
        self.dropped[f"invalid {spec.name}"] += 1
        if len(self.rejected) < MAX_REJECTED:
            record_id = row[self.fields[0].source_column]
            shown = "(no id)" if record_id is None else str(record_id)[:80]
            self.rejected.setdefault(shown, f"{spec.name}: {why}")


def catalog_entry(row: Mapping[str, Any], lists: Sequence[str]) -> dict[str, Any]:
    """One ``games.json`` entry: dates as ``YYYY-MM-DD``, times as ISO-8601 UTC, list columns as lists."""
    entry: dict[str, Any] = {}
    for column, value in row.items():
        if column in lists:
            entry[column] = categories(value) if value is not None else []
        elif isinstance(value, datetime):
            entry[column] = _utc(value).isoformat()
        elif isinstance(value, date):
            entry[column] = value.isoformat()
        elif isinstance(value, Decimal):
            entry[column] = float(value)
        else:
            entry[column] = value
    return entry
