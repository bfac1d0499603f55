"""Every outcome of normalization is explicit: a Personalize event, or a drop with a reason."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class DropReason(StrEnum):
    """Why an event is not delivered. See :attr:`is_bad_input` for which ones are dead-lettered."""

    # Not delivered by design: dropped and counted.
    NOT_AN_INTERACTION = "not_an_interaction"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    COLLAPSED = "collapsed"
    DUPLICATE = "duplicate"
    # Bad input: can never be delivered; dead-lettered with the original bytes.
    INVALID_UTF8 = "invalid_utf8"
    CORRUPT_GZIP = "corrupt_gzip"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    INVALID_FIELD = "invalid_field"
    MISSING_EVENT_TYPE = "missing_event_type"
    MISSING_SESSION = "missing_session"
    MISSING_ITEM = "missing_item"
    BAD_TIMESTAMP = "bad_timestamp"
    TOO_LARGE = "too_large"
    #: Personalize answered InvalidInputException for this single event.
    REJECTED = "rejected"

    @property
    def is_bad_input(self) -> bool:
        """True when the event goes to the dead-letter store rather than being merely counted."""
        return self not in _BY_DESIGN


_BY_DESIGN = frozenset(
    {
        DropReason.NOT_AN_INTERACTION,
        DropReason.UNKNOWN_EVENT_TYPE,
        DropReason.COLLAPSED,
        DropReason.DUPLICATE,
    }
)


@dataclass(frozen=True, slots=True)
class Drop:
    """An event that is not delivered, and why."""

    reason: DropReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PersonalizeEvent:
    """One interaction, legal for PutEvents (every limit of ``clickstream.limits`` already checked)."""

    event_id: str
    event_type: str
    session_id: str
    sent_at: float
    user_id: str | None = None
    item_id: str | None = None
    event_value: float | None = None
    properties: str | None = None
    recommendation_id: str | None = None
    impression: tuple[str, ...] | None = None

    def to_api(self) -> dict[str, Any]:
        """The ``eventList`` entry of a PutEvents request."""
        entry: dict[str, Any] = {
            "eventId": self.event_id,
            "eventType": self.event_type,
            "sentAt": self.sent_at,
        }
        if self.item_id is not None:
            entry["itemId"] = self.item_id
        if self.event_value is not None:
            entry["eventValue"] = self.event_value
        if self.properties is not None:
            entry["properties"] = self.properties
        if self.recommendation_id is not None:
            entry["recommendationId"] = self.recommendation_id
        if self.impression:
            entry["impression"] = list(self.impression)
        return entry

    def to_json(self) -> str:
        """A JSON line with the request's userId/sessionId, for dead letters and logs."""
        body = self.to_api()
        body["sessionId"] = self.session_id
        if self.user_id is not None:
            body["userId"] = self.user_id
        return json.dumps(body, separators=(",", ":"), sort_keys=True)
