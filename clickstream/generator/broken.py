"""Broken events, the way buggy or hostile clients send them, to exercise dead-lettering."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, Literal

from clickstream.generator.records import event_bytes

BrokenKind = Literal[
    "malformed_json",
    "not_an_object",
    "missing_event_type",
    "wrong_type",
    "missing_session",
    "bad_timestamp",
    "too_large",
    "invalid_utf8",
]
BROKEN_KINDS: Final[tuple[BrokenKind, ...]] = (
    "malformed_json",
    "not_an_object",
    "missing_event_type",
    "wrong_type",
    "missing_session",
    "bad_timestamp",
    "too_large",
    "invalid_utf8",
)


def _without(event: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in names}


def _key(event: Mapping[str, Any], snake: str, camel: str) -> str:
    return camel if camel in event else snake


def break_event(event: Mapping[str, Any], kind: BrokenKind, rng: random.Random) -> bytes:
    """``event`` spoiled in the way ``kind`` names, as the bytes of one line (never a newline).

    Whether the result is dead-lettered depends on the event: a broken heartbeat is still just a
    heartbeat (normalization drops non-interactions before it looks at their fields).
    """
    if kind == "malformed_json":
        data = event_bytes(event)
        return data[: rng.randint(1, len(data) - 1)]
    if kind == "not_an_object":
        # A classic client bug: the event JSON-encoded twice, so the line is a JSON string.
        return json.dumps(event_bytes(event).decode("utf-8")).encode("utf-8")
    if kind == "missing_event_type":
        return event_bytes(_without(event, "event_type", "eventType"))
    if kind == "missing_session":
        return event_bytes(_without(event, "session_id", "sessionId"))
    spoiled = dict(event)
    if kind == "wrong_type":
        if "stake" in spoiled:
            spoiled["stake"] = "abc"
        elif "position" in spoiled:
            spoiled["position"] = "x"
        elif "impression" in spoiled:
            spoiled["impression"] = ",".join(map(str, spoiled["impression"]))
        else:
            spoiled[_key(spoiled, "duration_ms", "durationMs")] = "long"
    elif kind == "bad_timestamp":
        spoiled[_key(spoiled, "timestamp", "timestamp")] = rng.choice(
            ("yesterday", 0, "1970-01-01T00:00:01Z", "2099-12-31T23:59:59Z", "")
        )
    elif kind == "too_large":
        spoiled[_key(spoiled, "platform", "platform")] = "x" * 1500
    elif kind == "invalid_utf8":
        data = event_bytes(spoiled)
        at = data.find(b'":"') + 3
        return data[:at] + b"\xc3\x28" + data[at:]
    return event_bytes(spoiled)


def inject_broken(
    events: Iterable[Mapping[str, Any]], fraction: float, seed: int
) -> Iterator[Mapping[str, Any] | bytes]:
    """``events`` with about ``fraction`` of them replaced by broken bytes (kinds chosen uniformly).

    Deterministic for a seed; the intact events are passed through unchanged, as dicts.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be between 0 and 1")
    rng = random.Random(f"clickstream-broken:{seed}")
    for event in events:
        if fraction and rng.random() < fraction:
            yield break_event(event, rng.choice(BROKEN_KINDS), rng)
        else:
            yield event
