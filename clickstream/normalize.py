"""One normalization of clickstream events, used by the stream worker and the batch datasets."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from clickstream.limits import (
    MAX_ID_LENGTH,
    MAX_IMPRESSION_IDS,
    MAX_PROPERTIES_LENGTH,
    MAX_RECOMMENDATION_ID_LENGTH,
)
from clickstream.mapping import EventMapping
from clickstream.outcomes import Drop, DropReason, PersonalizeEvent
from clickstream.raw import RawEvent, parse_timestamp

#: Events dated before this (2000-01-01) are rejected as a bad timestamp.
EARLIEST_TIMESTAMP = 946_684_800.0
#: Events dated more than this after their arrival (or, without one, now) are a bad timestamp.
MAX_CLOCK_SKEW_SECONDS = 86_400.0

_CAMEL = {name: to_camel(name) for name in RawEvent.model_fields}


@dataclass(frozen=True, slots=True)
class Source:
    """Where an event came from; gives events without a client id a deterministic one.

    ``arrival_time`` (epoch seconds) is the fallback when the event carries no timestamp.
    """

    stream_id: str
    sequence_number: str
    sub_sequence_number: int = 0
    position: int = 0
    arrival_time: float | None = None


def stable_id(*parts: str) -> str:
    """A 32-hex-character id derived from ``parts`` (same parts, same id, in every process)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=16)
    return digest.hexdigest()


def collapsed_event_id(session_id: str, item_id: str, event_type: str) -> str:
    """The eventId of an interaction collapsed from repeated events (rounds, bets)."""
    return stable_id("collapsed", session_id, item_id, event_type)


def normalize(data: Mapping[str, Any], source: Source, mapping: EventMapping) -> PersonalizeEvent | Drop:
    """Turn one decoded raw event into a Personalize event or a :class:`Drop` with its reason.

    Stateless: collapsing repeated events and dropping duplicates are :class:`Normalizer`'s job.
    """
    raw_type = data.get("event_type", data.get("eventType"))
    if not isinstance(raw_type, str) or not raw_type.strip():
        return Drop(DropReason.MISSING_EVENT_TYPE, "event_type is missing or not a string")
    raw_type = raw_type.strip()
    rule = mapping.interactions.get(raw_type)
    if rule is None:
        if raw_type in mapping.non_interactions:
            return Drop(DropReason.NOT_AN_INTERACTION, raw_type)
        return Drop(DropReason.UNKNOWN_EVENT_TYPE, raw_type[:64])
    try:
        event = RawEvent.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        return Drop(DropReason.INVALID_FIELD, problems)

    if event.session_id is None:
        return Drop(DropReason.MISSING_SESSION, "session_id is required by PutEvents")
    if event.game_id is None:
        return Drop(DropReason.MISSING_ITEM, f"{raw_type} needs a game_id")
    for name in ("event_id", "player_id", "session_id", "game_id"):
        value = getattr(event, name)
        if value is not None and len(value) > MAX_ID_LENGTH:
            return Drop(DropReason.TOO_LARGE, f"{name} is longer than {MAX_ID_LENGTH} characters")
    if event.recommendation_id is not None and len(event.recommendation_id) > MAX_RECOMMENDATION_ID_LENGTH:
        return Drop(DropReason.TOO_LARGE, f"recommendation_id exceeds {MAX_RECOMMENDATION_ID_LENGTH}")

    try:
        sent_at = parse_timestamp(event.timestamp)
    except (ValueError, OverflowError) as exc:
        return Drop(DropReason.BAD_TIMESTAMP, str(exc)[:120])
    if sent_at is None:
        if source.arrival_time is None:
            return Drop(DropReason.BAD_TIMESTAMP, "no timestamp and no arrival time")
        sent_at = source.arrival_time
    reference = source.arrival_time if source.arrival_time is not None else time.time()
    latest = reference + MAX_CLOCK_SKEW_SECONDS
    if not EARLIEST_TIMESTAMP <= sent_at <= latest:
        return Drop(DropReason.BAD_TIMESTAMP, f"timestamp {sent_at:.0f} out of range")

    impression: tuple[str, ...] | None = None
    if event.impression:
        ids = tuple(i for i in event.impression if i)
        if any(len(i) > MAX_ID_LENGTH for i in ids):
            return Drop(DropReason.TOO_LARGE, "an impression id is too long")
        # Personalize accepts 25 impression ids: keep the first 25 shown.
        impression = ids[:MAX_IMPRESSION_IDS] or None

    event_value: float | None = None
    if rule.value is not None:
        raw_value = getattr(event, rule.value)
        if raw_value is not None:
            event_value = float(raw_value)
            if not math.isfinite(event_value):
                return Drop(DropReason.INVALID_FIELD, f"{rule.value} is not finite")

    properties: str | None = None
    if rule.properties:
        props = {_CAMEL[f]: getattr(event, f) for f in rule.properties if getattr(event, f) is not None}
        if props:
            try:
                properties = json.dumps(props, separators=(",", ":"), allow_nan=False)
            except ValueError:
                return Drop(DropReason.INVALID_FIELD, "a property is not a finite number")
            if len(properties) > MAX_PROPERTIES_LENGTH:
                return Drop(DropReason.TOO_LARGE, f"properties exceed {MAX_PROPERTIES_LENGTH} characters")

    if rule.collapse:
        event_id = collapsed_event_id(event.session_id, event.game_id, rule.event_type)
    elif event.event_id is not None:
        event_id = event.event_id
    else:
        event_id = stable_id(
            source.stream_id, source.sequence_number, str(source.sub_sequence_number), str(source.position)
        )

    return PersonalizeEvent(
        event_id=event_id,
        event_type=rule.event_type,
        session_id=event.session_id,
        sent_at=sent_at,
        user_id=event.player_id,
        item_id=event.game_id,
        event_value=event_value,
        properties=properties,
        recommendation_id=event.recommendation_id,
        impression=impression,
    )


class _BoundedSet:
    """Membership with least-recently-seen eviction beyond ``capacity`` keys."""

    __slots__ = ("_capacity", "_keys")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> bool:
        """Remember ``key``; True if it was new."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self._capacity:
            self._keys.popitem(last=False)
        return True

    def touch(self, key: str) -> bool:
        """If ``key`` is remembered, mark it as just seen (exactly what :meth:`add` does to a known
        key) and return True; otherwise change nothing and return False."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        return False

    def __len__(self) -> int:
        return len(self._keys)


# -- the collapse pre-check ----------------------------------------------------------------------
#
# Most events of a real stream are repeated rounds and bets of a game already played in the
# session: the full path validates them with pydantic, parses their timestamp and serializes their
# properties only to drop them as ``collapsed``. The pre-check reads the raw dict and answers only
# when it can prove what the full path would return; whenever an input is in any way unusual (a
# field under both spellings, a type pydantic would coerce, non-ASCII text, a value near a limit,
# no arrival time) it declines and the full path decides. Its acceptance conditions, field by field:
#
# - every known field appears under at most one key (pydantic reads the first spelling present);
# - text fields are ``str`` and ASCII (pydantic refuses lone surrogates; its whitespace stripping
#   only shortens ASCII text, so the length limits checked on the raw text hold after it);
#   session_id and game_id, which make the eventId, are non-empty with nothing to strip;
# - numbers are ``int`` (not bool) within 2**53, or finite ``float``; int fields take only ``int``;
# - the timestamp is absent (the record's arrival time stands in), a number, or ASCII text that
#   :func:`parse_timestamp` reads (it strips more than pydantic does, so the result is the same),
#   inside the accepted range;
# - no impression list (declined: rare on rounds);
# - an upper bound of the properties' JSON length is within the limit.
#
# Under these conditions the full path returns an event whose eventId is the collapse id computed
# here; if that id is already remembered, the full path would drop it as ``collapsed``.

_INT_LIMIT = 2**53
#: Longest JSON of a number the pre-check accepts (a float's repr, an int below 2**53).
_MAX_NUMBER_JSON = 24
# What each field is, for the pre-check.
_TEXT, _FLOAT, _INT, _SESSION, _GAME, _TIMESTAMP, _IMPRESSION = range(7)
_KINDS = {
    "event_type": _TEXT,
    "event_id": _TEXT,
    "player_id": _TEXT,
    "session_id": _SESSION,
    "game_id": _GAME,
    "timestamp": _TIMESTAMP,
    "platform": _TEXT,
    "country": _TEXT,
    "currency": _TEXT,
    "stake": _FLOAT,
    "win": _FLOAT,
    "duration_ms": _INT,
    "position": _INT,
    "lobby_section": _TEXT,
    "recommendation_id": _TEXT,
    "impression": _IMPRESSION,
}
#: Longest raw text the pre-check accepts per text field (longer ones: the full path decides).
_TEXT_LIMITS = {
    "event_id": MAX_ID_LENGTH,
    "player_id": MAX_ID_LENGTH,
    "recommendation_id": MAX_RECOMMENDATION_ID_LENGTH,
}
assert set(_KINDS) == set(RawEvent.model_fields), "the collapse pre-check must know every field of RawEvent"


class _CollapsePrecheck:
    """The collapse id of a raw event the full path would surely turn into that collapsible
    interaction, or None when it cannot tell (see the conditions above)."""

    __slots__ = ("_keys", "_rules")

    def __init__(self, mapping: EventMapping) -> None:
        self._rules = {
            raw_type: rule
            for raw_type, rule in mapping.interactions.items()
            if rule.collapse and raw_type.isascii() and raw_type == raw_type.strip()
        }
        # key -> (field, kind, text limit, the other spelling of the key or "", properties that take it)
        self._keys: dict[str, tuple[str, int, int, str, frozenset[str]]] = {}
        for name, kind in _KINDS.items():
            camel = to_camel(name)
            takers = frozenset(t for t, rule in self._rules.items() if name in rule.properties)
            limit = _TEXT_LIMITS.get(name, MAX_PROPERTIES_LENGTH)
            self._keys[name] = (name, kind, limit, camel if camel != name else "", takers)
            if camel != name:
                self._keys[camel] = (name, kind, limit, name, takers)

    def collapse_id(self, data: Mapping[str, Any], source: Source) -> str | None:
        if type(data) is not dict or source.arrival_time is None:
            return None
        raw_type = data.get("event_type", data.get("eventType"))
        rule = self._rules.get(raw_type) if type(raw_type) is str else None
        if rule is None:
            return None
        session_id: Any = None
        game_id: Any = None
        timestamp: Any = None
        bound = 2  # the properties' JSON: braces, then per property its key, quotes, colon, comma
        keys = self._keys
        for key, value in data.items():
            known = keys.get(key)
            if known is None:
                continue
            name, kind, limit, other, takers = known
            if other and other in data:  # under both spellings: pydantic picks one, the full path decides
                return None
            if value is None:
                continue
            kind_of_value = type(value)
            if kind == _TEXT:
                if kind_of_value is not str or len(value) > limit or not value.isascii():
                    return None
            elif kind == _FLOAT:
                if kind_of_value is float:
                    if not math.isfinite(value):
                        return None
                elif kind_of_value is not int or not -_INT_LIMIT < value < _INT_LIMIT:
                    return None
            elif kind in (_SESSION, _GAME):
                if (
                    kind_of_value is not str
                    or not 0 < len(value) <= MAX_ID_LENGTH
                    or not value.isascii()
                    or value[0].isspace()
                    or value[-1].isspace()
                ):
                    return None
                if kind == _SESSION:
                    session_id = value
                else:
                    game_id = value
            elif kind == _INT:
                if kind_of_value is not int or not -_INT_LIMIT < value < _INT_LIMIT:
                    return None
            elif kind == _TIMESTAMP:
                if kind_of_value is str:
                    if not value.isascii():
                        return None
                elif kind_of_value is float:
                    if not math.isfinite(value):
                        return None
                elif kind_of_value is not int or not -_INT_LIMIT < value < _INT_LIMIT:
                    return None
                timestamp = value
            else:  # an impression list: rare on rounds, left to the full path
                return None
            if raw_type in takers:
                bound += len(name) + 4 + (6 * len(value) + 2 if kind_of_value is str else _MAX_NUMBER_JSON)
        if session_id is None or game_id is None or bound > MAX_PROPERTIES_LENGTH:
            return None
        try:
            sent_at = parse_timestamp(timestamp)
        except (ValueError, OverflowError):
            return None
        arrival = source.arrival_time
        if sent_at is None:
            sent_at = arrival
        if not EARLIEST_TIMESTAMP <= sent_at <= arrival + MAX_CLOCK_SKEW_SECONDS:
            return None
        return collapsed_event_id(session_id, game_id, rule.event_type)


class Normalizer:
    """:func:`normalize` plus the stream's state: collapsing and duplicate suppression.

    Collapsible interactions (rounds, bets) of a (session, game) after the first are dropped as
    ``collapsed``; an eventId seen before is dropped as ``duplicate``. Both memories are bounded
    (least recently seen keys are forgotten), so memory stays flat; a re-send after a restart
    carries the same eventId and is ignored by Personalize's training.

    A repeated collapsible event that is provably valid is recognised on its raw dict, before
    validation; the outcome is the same as the full path's in every case (tests/unit's
    ``test_collapse_precheck`` property compares the two).
    """

    def __init__(self, mapping: EventMapping, *, memory: int = 200_000) -> None:
        self.mapping = mapping
        self._seen = _BoundedSet(memory)
        self._precheck = _CollapsePrecheck(mapping)

    def normalize(self, data: Mapping[str, Any], source: Source) -> PersonalizeEvent | Drop:
        collapse_id = self._precheck.collapse_id(data, source)
        if collapse_id is not None and self._seen.touch(collapse_id):
            return Drop(DropReason.COLLAPSED, collapse_id)
        outcome = normalize(data, source, self.mapping)
        if isinstance(outcome, Drop):
            return outcome
        if not self._seen.add(outcome.event_id):
            rule_collapses = self.mapping.interactions[
                str(data.get("event_type", data.get("eventType"))).strip()
            ].collapse
            reason = DropReason.COLLAPSED if rule_collapses else DropReason.DUPLICATE
            return Drop(reason, outcome.event_id)
        return outcome

    @property
    def remembered(self) -> int:
        return len(self._seen)
