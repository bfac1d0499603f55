"""The clickstream of many sessions, interleaved by time as the stream receives it."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any, Final

from clickstream.generator.catalog import CATEGORIES, JURISDICTIONS, Catalog
from clickstream.generator.config import DEFAULT_CONFIG, GeneratorConfig
from clickstream.generator.lobby import Lobby
from clickstream.generator.players import (
    COUNTRY_WEIGHTS,
    PLATFORM_WEIGHTS,
    PLATFORMS,
    Player,
    currency_of,
    generate_players,
)
from clickstream.generator.sessions import SessionScript, Visitor

#: The hour of day (UTC) with the most sessions.
PEAK_HOUR: Final = 20.0
#: 2000-01-01T00:00:00Z: normalization rejects anything earlier.
EARLIEST_START: Final = 946_684_800.0


def _diurnal(millis: int, amplitude: float) -> float:
    """Relative session rate at ``millis``: 1 +- amplitude, highest at :data:`PEAK_HOUR` UTC."""
    hour = (millis / 3_600_000) % 24
    return 1.0 + amplitude * math.cos(2 * math.pi * (hour - PEAK_HOUR) / 24)


def _session_starts(rng: random.Random, config: GeneratorConfig, start_ms: int, end_ms: int | None) -> Iterator[int]:
    """Session start times (epoch ms) of a time-of-day modulated Poisson process, increasing."""
    peak_rate = config.sessions_per_hour * (1 + config.diurnal_amplitude) / 3_600_000  # per ms
    at = float(start_ms)
    while True:
        at += rng.expovariate(peak_rate)
        millis = int(at)
        if end_ms is not None and millis >= end_ms:
            return
        if rng.random() * (1 + config.diurnal_amplitude) < _diurnal(millis, config.diurnal_amplitude):
            yield millis


def _visitor(rng: random.Random, players: Sequence[Player], cumulative: Sequence[float], anonymous: bool) -> Visitor:
    if anonymous:
        country = rng.choices(JURISDICTIONS, weights=COUNTRY_WEIGHTS)[0]
        return Visitor(
            player=None,
            country=country,
            platform=rng.choices(PLATFORMS, weights=PLATFORM_WEIGHTS)[0],
            currency=currency_of(country),
            preferred_categories=(rng.choice(CATEGORIES[:3]),),
            stake_level=rng.randint(0, 3),
        )
    player = rng.choices(players, cum_weights=cumulative)[0]
    return Visitor(
        player=player,
        country=player.country,
        platform=player.platform,
        currency=player.currency,
        preferred_categories=player.preferred_categories,
        stake_level=player.stake_level,
    )


def generate_events(
    catalog: Catalog,
    *,
    n_players: int,
    seed: int,
    start: float,
    n_sessions: int | None = None,
    duration: float | None = None,
    config: GeneratorConfig = DEFAULT_CONFIG,
    players: Sequence[Player] | None = None,
) -> Iterator[dict[str, Any]]:
    """Raw clickstream events of many sessions, lazily, in the order the stream receives them.

    Sessions start from ``start`` (epoch seconds) at ``config.sessions_per_hour`` (modulated by time
    of day) until ``n_sessions`` have started or ``duration`` seconds have passed, whichever comes
    first (at least one of them is required; with both, the rate is ``n_sessions / duration``).
    Events of all sessions are merged by time; within a session they are in time order. Players are
    ``generate_players(n_players, seed)`` unless ``players`` is given. Same arguments, same events:
    nothing reads the clock or the global random generator. Memory grows with the number of sessions
    open at once, not with the number of events.
    """
    if n_sessions is None and duration is None:
        raise ValueError("give n_sessions or duration (or both)")
    if n_sessions is not None and n_sessions < 0:
        raise ValueError("n_sessions must not be negative")
    if duration is not None and duration <= 0:
        raise ValueError("duration must be positive")
    if not math.isfinite(start) or start < EARLIEST_START:
        raise ValueError("start must be epoch seconds after 2000-01-01")
    if not catalog.enabled:
        raise ValueError("the catalog has no enabled game")
    if n_sessions is not None and duration is not None and n_sessions > 0:
        config = config.with_(sessions_per_hour=n_sessions / duration * 3600)
    roster = list(players) if players is not None else generate_players(n_players, seed)
    if not roster:
        raise ValueError("no players")
    cumulative = list(itertools.accumulate(p.activity for p in roster))
    return _interleave(
        catalog=catalog,
        players=roster,
        cumulative=cumulative,
        seed=seed,
        start=start,
        n_sessions=n_sessions,
        duration=duration,
        config=config,
    )


def _interleave(
    *,
    catalog: Catalog,
    players: Sequence[Player],
    cumulative: Sequence[float],
    seed: int,
    start: float,
    n_sessions: int | None,
    duration: float | None,
    config: GeneratorConfig,
) -> Iterator[dict[str, Any]]:
    arrivals = random.Random(f"clickstream-sessions:{seed}")
    start_ms = round(start * 1000)
    end_ms = start_ms + round(duration * 1000) if duration is not None else None
    starts = _session_starts(random.Random(f"clickstream-arrivals:{seed}"), config, start_ms, end_ms)
    if n_sessions is not None:
        starts = itertools.islice(starts, n_sessions)
    lobby = Lobby(catalog)
    # (time, session number, event, rest of the session): one entry per open session.
    heap: list[tuple[int, int, dict[str, Any], Iterator[tuple[int, dict[str, Any]]]]] = []
    next_start = next(starts, None)
    number = 0
    while True:
        if next_start is not None and (not heap or next_start <= heap[0][0]):
            rng = random.Random(arrivals.getrandbits(64))
            anonymous = rng.random() < config.anonymous_fraction
            script = SessionScript(
                catalog=catalog,
                lobby=lobby,
                config=config,
                visitor=_visitor(rng, players, cumulative, anonymous),
                rng=rng,
                start_ms=next_start,
                origin_ms=start_ms,
            )
            session = script.events()
            first = next(session, None)
            if first is not None:
                heapq.heappush(heap, (first[0], number, first[1], session))
            number += 1
            next_start = next(starts, None)
            continue
        if not heap:
            return
        _, session_number, event, session = heap[0]
        yield event
        following = next(session, None)
        if following is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (following[0], session_number, following[1], session))
