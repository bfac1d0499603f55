"""The raw clickstream event, version 1, as the game app sends it (DESIGN.md, "Clickstream event")."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from pydantic import AliasChoices, AliasGenerator, BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel

#: Epoch numbers above this are milliseconds (1e11 seconds is the year 5138).
_MILLIS_THRESHOLD = 100_000_000_000


def _both_cases(name: str) -> AliasChoices:
    return AliasChoices(name, to_camel(name))


class RawEvent(BaseModel):
    """One clickstream event; keys may be snake_case or camelCase, unknown keys are ignored.

    ``timestamp`` is kept as sent (ISO-8601 string or epoch seconds/milliseconds); use
    :func:`parse_timestamp` to turn it into epoch seconds.
    """

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=_both_cases),
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        coerce_numbers_to_str=True,
        str_strip_whitespace=True,
    )

    event_type: str
    event_id: str | None = None
    player_id: str | None = None
    session_id: str | None = None
    game_id: str | None = None
    #: Kept loose here so that a wrong kind (a boolean, say) is reported as a bad timestamp.
    timestamp: str | float | bool | None = None
    platform: str | None = None
    country: str | None = None
    currency: str | None = None
    stake: float | None = None
    win: float | None = None
    duration_ms: int | None = None
    position: int | None = None
    lobby_section: str | None = None
    recommendation_id: str | None = None
    impression: list[str] | None = None

    @field_validator("event_id", "player_id", "session_id", "game_id", "recommendation_id", mode="after")
    @classmethod
    def _empty_is_absent(cls, value: str | None) -> str | None:
        return value or None


def parse_timestamp(value: str | float | bool | None) -> float | None:
    """Epoch seconds for an ISO-8601 string or an epoch seconds/milliseconds number.

    Returns None when ``value`` is None; raises ValueError when it cannot be read.
    A string of digits is read as an epoch number; an ISO string without a zone is UTC.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("timestamp must be an ISO-8601 string or an epoch number, not a boolean")
    if isinstance(value, str):
        text = value.strip()
        try:
            # float() never reads a colon: an ISO time of day skips the attempt (and its exception)
            if ":" in text:
                raise ValueError(text)
            number = float(text)
        except ValueError:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.timestamp()
        value = number
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("timestamp is not a finite number")
    return number / 1000.0 if abs(number) >= _MILLIS_THRESHOLD else number
