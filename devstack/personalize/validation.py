"""Limits of the Personalize events API and the checks that enforce them server-side.

botocore checks only required members and minimums before sending; the real service rejects the rest
with ``InvalidInputException``, and so does this module. Every problem of a request is collected and the
request is rejected as a whole: no event of a rejected batch is accepted. Messages name the member with
a 0-based index, e.g. ``eventList[3].properties: key 'user_id' is not camelCase``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from devstack.personalize.errors import InvalidInputError

MAX_EVENTS_PER_CALL: Final = 10
MAX_RECORDS_PER_CALL: Final = 10
MAX_ID_LENGTH: Final = 256
MAX_EVENT_TYPE_LENGTH: Final = 256
MAX_RECOMMENDATION_ID_LENGTH: Final = 40
MAX_IMPRESSION_IDS: Final = 25
MAX_EVENT_PROPERTIES_LENGTH: Final = 1024
MAX_ITEM_PROPERTIES_LENGTH: Final = 32000
MAX_USER_PROPERTIES_LENGTH: Final = 24000
MAX_ARN_LENGTH: Final = 256
MAX_ATTRIBUTION_SOURCE_LENGTH: Final = 1024
#: 9999-12-31T23:59:59Z: later ``sentAt`` values are epoch milliseconds sent by mistake.
MAX_SENT_AT: Final = 253402300799.0

#: Keys that may not appear in an event's ``properties`` (compared case-insensitively, as documented).
RESERVED_EVENT_PROPERTY_KEYS: Final = frozenset(
    {"userId", "sessionId", "eventType", "timestamp", "recommendationId", "impression"}
)
_RESERVED_LOWER: Final = frozenset(key.lower() for key in RESERVED_EVENT_PROPERTY_KEYS)
PROPERTY_KEY_PATTERN: Final = re.compile(r"[a-z][a-zA-Z0-9]*")
DATASET_ARN_PATTERN: Final = re.compile(r"arn:([a-z\d-]+):personalize:.*:.*:.+")
ATTRIBUTION_SOURCE_PATTERN: Final = re.compile(r"[\x20-\x7E]*[\x21-\x7E]+[\x20-\x7E]*")
#: At most this many problems are spelled out in one message.
MAX_REPORTED_PROBLEMS: Final = 10


class EventIn(NamedTuple):
    """One validated event of a PutEvents call; ``properties`` is kept as the JSON text received."""

    event_id: str | None
    event_type: str
    event_value: float | None
    item_id: str | None
    sent_at: float
    recommendation_id: str | None
    impression: list[str] | None
    properties: str | None
    metric_attribution: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class PutEventsInput:
    """A validated PutEvents request."""

    tracking_id: str
    session_id: str
    user_id: str | None
    events: list[EventIn]


@dataclass(frozen=True, slots=True)
class PutRecordsInput:
    """A validated PutItems or PutUsers request: ``records`` are (id, properties JSON text or None)."""

    dataset_arn: str
    records: list[tuple[str, str | None]]


class Problems:
    """Collects validation problems; :meth:`raise_if_any` turns them into one ``InvalidInputError``."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, why: str, member: str = "") -> None:
        """Record that ``where`` (joined with ``member``: ``where.member``) is invalid because ``why``.

        Callers pass ``where`` and ``member`` apart so valid requests never pay for building names.
        """
        if member:
            where = f"{where}{member}" if member[0] == "[" else f"{where}.{member}" if where else member
        self.items.append(f"{where}: {why}")

    def raise_if_any(self) -> None:
        """Raise ``InvalidInputError`` naming every problem (the first ``MAX_REPORTED_PROBLEMS`` in full)."""
        count = len(self.items)
        if not count:
            return
        shown = "; ".join(self.items[:MAX_REPORTED_PROBLEMS])
        more = f"; and {count - MAX_REPORTED_PROBLEMS} more" if count > MAX_REPORTED_PROBLEMS else ""
        noun = "error" if count == 1 else "errors"
        raise InvalidInputError(f"{count} validation {noun} detected: {shown}{more}")


def json_type(value: object) -> str:
    """The JSON type name of a decoded value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def check_string(
    value: object,
    where: str,
    problems: Problems,
    *,
    required: bool,
    max_len: int,
    min_len: int = 1,
    member: str = "",
) -> str | None:
    """Return ``value`` if it is a string of ``min_len``..``max_len`` characters; else record why."""
    if isinstance(value, str):
        length = len(value)
        if min_len <= length <= max_len:
            return value
        problems.add(where, f"must have length {min_len}..{max_len}, got {length}", member)
        return None
    if value is None:
        if required:
            problems.add(where, "is required", member)
        return None
    problems.add(where, f"must be a string, got {json_type(value)}", member)
    return None


def check_number(
    value: object,
    where: str,
    problems: Problems,
    *,
    required: bool,
    lowest: float | None = None,
    member: str = "",
) -> float | None:
    """Return ``value`` as a float if it is a finite JSON number (``>= lowest``); else record why."""
    if value is None:
        if required:
            problems.add(where, "is required", member)
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.add(where, f"must be a number, got {json_type(value)}", member)
        return None
    number = float(value)
    if not math.isfinite(number):
        problems.add(where, "must be a finite number", member)
        return None
    if lowest is not None and number < lowest:
        problems.add(where, f"must be >= {lowest:g}, got {number:g}", member)
        return None
    return number


def check_properties(
    value: object,
    where: str,
    problems: Problems,
    *,
    max_len: int,
    reserved_lower: frozenset[str],
    member: str = "",
) -> str | None:
    """Check a ``properties`` member: a JSON *string* encoding an object with camelCase, unreserved keys.

    Values must be strings, numbers, booleans or null (they map to scalar schema fields).
    """
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(where, f"must be a string holding a JSON object, got a JSON {json_type(value)}", member)
        return None
    length = len(value)
    if length < 1 or length > max_len:
        problems.add(where, f"must have length 1..{max_len}, got {length}", member)
        return None
    try:
        decoded = json.loads(value)
    except ValueError as exc:
        problems.add(where, f"is not valid JSON ({exc})", member)
        return None
    if not isinstance(decoded, dict):
        problems.add(where, f"must encode a JSON object, got a JSON {json_type(decoded)}", member)
        return None
    ok = True
    for key, item in decoded.items():
        if PROPERTY_KEY_PATTERN.fullmatch(key) is None:
            problems.add(where, f"key {key!r} is not camelCase (must match ^[a-z][a-zA-Z0-9]*$)", member)
            ok = False
        elif key.lower() in reserved_lower:
            problems.add(where, f"key {key!r} is reserved", member)
            ok = False
        if isinstance(item, dict | list):
            problems.add(where, f"value of {key!r} must be a string, number, boolean or null", member)
            ok = False
    return value if ok else None


def _check_impression(value: object, where: str, problems: Problems) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        problems.add(where, f"must be a list of item ids, got {json_type(value)}", "impression")
        return None
    count = len(value)
    if count < 1 or count > MAX_IMPRESSION_IDS:
        problems.add(where, f"must hold 1..{MAX_IMPRESSION_IDS} item ids, got {count}", "impression")
        return None
    before = len(problems.items)
    for position, item_id in enumerate(value):
        if not isinstance(item_id, str) or not 1 <= len(item_id) <= MAX_ID_LENGTH:
            check_string(
                item_id,
                f"{where}.impression[{position}]",
                problems,
                required=True,
                max_len=MAX_ID_LENGTH,
            )
    return value if len(problems.items) == before else None


def _check_attribution(value: object, where: str, problems: Problems) -> dict[str, str] | None:
    if value is None:
        return None
    member = "metricAttribution.eventAttributionSource"
    if not isinstance(value, dict):
        problems.add(where, f"must be an object, got {json_type(value)}", "metricAttribution")
        return None
    source = check_string(
        value.get("eventAttributionSource"),
        where,
        problems,
        required=True,
        min_len=0,
        max_len=MAX_ATTRIBUTION_SOURCE_LENGTH,
        member=member,
    )
    if source is None:
        return None
    if ATTRIBUTION_SOURCE_PATTERN.fullmatch(source) is None:
        problems.add(where, "must be printable ASCII and not blank", member)
        return None
    return {"eventAttributionSource": source}


def _check_event(raw: object, where: str, problems: Problems) -> EventIn | None:
    if not isinstance(raw, dict):
        problems.add(where, f"must be an object, got {json_type(raw)}")
        return None
    before = len(problems.items)
    get = raw.get
    event_type = check_string(
        get("eventType"), where, problems, required=True, max_len=MAX_EVENT_TYPE_LENGTH, member="eventType"
    )
    sent_at = check_number(get("sentAt"), where, problems, required=True, lowest=0.0, member="sentAt")
    if sent_at is not None and sent_at > MAX_SENT_AT:
        problems.add(where, f"must be epoch seconds, got {sent_at:g} (milliseconds?)", "sentAt")
    event = EventIn(
        event_id=check_string(get("eventId"), where, problems, required=False, max_len=MAX_ID_LENGTH, member="eventId"),
        event_type=event_type or "",
        event_value=check_number(get("eventValue"), where, problems, required=False, member="eventValue"),
        item_id=check_string(get("itemId"), where, problems, required=False, max_len=MAX_ID_LENGTH, member="itemId"),
        sent_at=sent_at or 0.0,
        recommendation_id=check_string(
            get("recommendationId"),
            where,
            problems,
            required=False,
            max_len=MAX_RECOMMENDATION_ID_LENGTH,
            member="recommendationId",
        ),
        impression=_check_impression(get("impression"), where, problems),
        properties=check_properties(
            get("properties"),
            where,
            problems,
            max_len=MAX_EVENT_PROPERTIES_LENGTH,
            reserved_lower=_RESERVED_LOWER,
            member="properties",
        ),
        metric_attribution=_check_attribution(get("metricAttribution"), where, problems),
    )
    return event if len(problems.items) == before else None


def _check_list(value: object, where: str, problems: Problems, *, max_len: int) -> list[Any] | None:
    if value is None:
        problems.add(where, "is required")
        return None
    if not isinstance(value, list):
        problems.add(where, f"must be a list, got {json_type(value)}")
        return None
    count = len(value)
    if count < 1 or count > max_len:
        problems.add(where, f"must hold 1..{max_len} entries, got {count}")
    return value


def validate_put_events(body: dict[str, Any]) -> PutEventsInput:
    """Check a decoded PutEvents body against every limit; raise ``InvalidInputError`` naming all problems."""
    problems = Problems()
    tracking_id = check_string(body.get("trackingId"), "trackingId", problems, required=True, max_len=MAX_ID_LENGTH)
    session_id = check_string(body.get("sessionId"), "sessionId", problems, required=True, max_len=MAX_ID_LENGTH)
    user_id = check_string(body.get("userId"), "userId", problems, required=False, max_len=MAX_ID_LENGTH)
    raw_events = _check_list(body.get("eventList"), "eventList", problems, max_len=MAX_EVENTS_PER_CALL)
    events: list[EventIn] = []
    for index, raw in enumerate(raw_events or ()):
        event = _check_event(raw, f"eventList[{index}]", problems)
        if event is not None:
            events.append(event)
    problems.raise_if_any()
    assert tracking_id is not None
    assert session_id is not None
    return PutEventsInput(tracking_id=tracking_id, session_id=session_id, user_id=user_id, events=events)


def _validate_records(body: dict[str, Any], list_member: str, id_member: str, max_properties: int) -> PutRecordsInput:
    problems = Problems()
    dataset_arn = check_string(body.get("datasetArn"), "datasetArn", problems, required=True, max_len=MAX_ARN_LENGTH)
    if dataset_arn is not None and DATASET_ARN_PATTERN.match(dataset_arn) is None:
        problems.add("datasetArn", "is not a Personalize ARN (arn:PARTITION:personalize:REGION:ACCOUNT:...)")
    raw_records = _check_list(body.get(list_member), list_member, problems, max_len=MAX_RECORDS_PER_CALL)
    records: list[tuple[str, str | None]] = []
    for index, raw in enumerate(raw_records or ()):
        where = f"{list_member}[{index}]"
        if not isinstance(raw, dict):
            problems.add(where, f"must be an object, got {json_type(raw)}")
            continue
        record_id = check_string(
            raw.get(id_member), where, problems, required=True, max_len=MAX_ID_LENGTH, member=id_member
        )
        properties = check_properties(
            raw.get("properties"),
            where,
            problems,
            max_len=max_properties,
            reserved_lower=frozenset(),
            member="properties",
        )
        if record_id is not None:
            records.append((record_id, properties))
    problems.raise_if_any()
    assert dataset_arn is not None
    return PutRecordsInput(dataset_arn=dataset_arn, records=records)


def validate_put_items(body: dict[str, Any]) -> PutRecordsInput:
    """Check a decoded PutItems body: ``datasetArn``, 1-10 ``items`` with ``itemId`` and ``properties``."""
    return _validate_records(body, "items", "itemId", MAX_ITEM_PROPERTIES_LENGTH)


def validate_put_users(body: dict[str, Any]) -> PutRecordsInput:
    """Check a decoded PutUsers body: ``datasetArn``, 1-10 ``users`` with ``userId`` and ``properties``."""
    return _validate_records(body, "users", "userId", MAX_USER_PROPERTIES_LENGTH)
