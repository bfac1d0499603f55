"""A deterministic generator of realistic clickstream captures.

The data's way, one module each: :mod:`.catalog` (games) and :mod:`.players` -> :mod:`.sessions` (one
session's events, drawing lobby rows from :mod:`.lobby`) -> :mod:`.events` (all sessions interleaved by
time) -> :mod:`.broken` (optional spoiled events) -> :mod:`.records` (Kinesis records) ->
``clickstream.capture`` (files). Everything is seeded and lazy: no clock, no global random state, and a
capture of a million events streams to disk. ``python -m clickstream.generator --help`` for the CLI.
"""

from __future__ import annotations

from clickstream.capture import CaptureRecord
from clickstream.generator.broken import BROKEN_KINDS, BrokenKind, break_event, inject_broken
from clickstream.generator.catalog import (
    CATEGORIES,
    JURISDICTIONS,
    PROVIDERS,
    Catalog,
    Game,
    generate_catalog,
)
from clickstream.generator.config import DEFAULT_CONFIG, SHORT_SESSIONS, GeneratorConfig
from clickstream.generator.events import generate_events
from clickstream.generator.players import PLATFORMS, Player, generate_players
from clickstream.generator.records import event_bytes, pack_records

__all__ = [
    "BROKEN_KINDS",
    "CATEGORIES",
    "DEFAULT_CONFIG",
    "JURISDICTIONS",
    "PLATFORMS",
    "PROVIDERS",
    "SHORT_SESSIONS",
    "BrokenKind",
    "CaptureRecord",
    "Catalog",
    "Game",
    "GeneratorConfig",
    "Player",
    "break_event",
    "event_bytes",
    "generate_catalog",
    "generate_events",
    "generate_players",
    "inject_broken",
    "pack_records",
]
