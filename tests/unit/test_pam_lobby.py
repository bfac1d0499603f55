"""The lobby with fake dependencies: sections, de-duplication, jurisdiction and disabled filtering, top-ups
from popular, fallbacks of slow / failing / empty dependencies, the deadline, cold-start players."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pam.api.catalog import Catalog, parse_catalog
from pam.api.deadline.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from pam.api.deadline.guard import GuardedDependency, Outcome
from pam.api.dependencies.personalize import Recommendations
from pam.api.dependencies.players import PlayerProfile
from pam.api.dependencies.similar import SimilarGames
from pam.api.lobby import (
    DEPENDENCIES,
    FOR_YOU,
    POPULAR,
    TRENDING,
    Campaign,
    LobbyConfig,
    LobbyService,
    NoCatalogError,
    render_lobby,
)
from pam.api.models import LobbyResponse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SIZE = 3

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def game(game_id: str, *, jurisdictions: Sequence[str] = ("SE", "MT", "GB"), enabled: bool = True) -> dict[str, Any]:
    return {
        "game_id": game_id,
        "title": f"Game {game_id}",
        "provider": "Acme",
        "category": "slots",
        "volatility": "high",
        "rtp": 0.96,
        "release_date": "2024-01-01",
        "jurisdictions": list(jurisdictions),
        "enabled": enabled,
    }


def catalog(extra: Sequence[dict[str, Any]] = ()) -> Catalog:
    games = [game(f"g{n:02d}") for n in range(1, 31)]
    games.extend(extra)
    return parse_catalog(
        json.dumps({"version": 1, "generated_at": "2026-01-01T00:00:00+00:00", "games": games}).encode()
    )


class Fake:
    """An awaitable dependency: answers ``value`` after ``delay`` seconds, or raises ``error``."""

    def __init__(self, value: Any = None, *, delay: float = 0.0, error: Exception | None = None) -> None:
        self.value = value
        self.delay = delay
        self.error = error
        self.calls: list[tuple[Any, ...]] = []
        self.started: list[float] = []

    async def _answer(self, *args: Any) -> Any:
        self.calls.append(args)
        self.started.append(time.monotonic())
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.value


class FakePlayers(Fake):
    async def lookup(self, player_id: str) -> PlayerProfile:
        result: PlayerProfile = await self._answer(player_id)
        return result


class FakeSimilar(Fake):
    async def get(self, game_id: str) -> SimilarGames | None:
        result: SimilarGames | None = await self._answer(game_id)
        return result


class FakeCampaign(Fake):
    async def get(self, user_id: str, num_results: int) -> Recommendations:
        result: Recommendations = await self._answer(user_id, num_results)
        return result


class Observer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Outcome]] = []
        self.fallbacks: list[tuple[str, str]] = []
        self.hits = 0
        self.misses = 0

    def dependency_call(self, name: str, outcome: Outcome, seconds: float) -> None:
        self.calls.append((name, outcome))

    def fallback(self, section: str, source: str) -> None:
        self.fallbacks.append((section, source))

    def catalog_lookups_done(self, hits: int, misses: int) -> None:
        self.hits += hits
        self.misses += misses


def recs(*ids: str, rid: str = "RID-1") -> Recommendations:
    return Recommendations(tuple(ids), rid)


def profile(*recent: str, country: str | None = "SE") -> PlayerProfile:
    return PlayerProfile("p-1", known=True, country=country, recent_game_ids=tuple(recent))


def service(
    *,
    the_catalog: Catalog | None = None,
    players: FakePlayers | None = None,
    similar: FakeSimilar | None = None,
    for_you: FakeCampaign | None = None,
    trending: FakeCampaign | None = None,
    popular: FakeCampaign | None = None,
    timeout: float = 0.2,
    deadline: float = 0.5,
    sequential: bool = False,
    policy: BreakerPolicy | None = None,
    observer: Observer | None = None,
) -> LobbyService:
    observer = observer or Observer()
    current = the_catalog if the_catalog is not None else catalog()
    guards = {
        name: GuardedDependency(name, CircuitBreaker(name, policy or BreakerPolicy()), timeout, observer)
        for name in DEPENDENCIES
    }
    campaigns: dict[str, Campaign | None] = {FOR_YOU: for_you, TRENDING: trending, POPULAR: popular}
    return LobbyService(
        catalog=lambda: current,
        players=players or FakePlayers(profile("g01")),
        similar=similar,
        campaigns=campaigns,
        guards=guards,
        config=LobbyConfig(
            section_size=SIZE, candidates=10, popular_candidates=20, deadline=deadline, sequential=sequential
        ),
        observer=observer,
    )


def full(**overrides: Any) -> LobbyService:
    """Every dependency answering at once with distinct lists."""
    options: dict[str, Any] = {
        "players": FakePlayers(profile("g01", "g02")),
        "similar": FakeSimilar(SimilarGames("g01", ("g02", "g03", "g04", "g05"), "v1")),
        "for_you": FakeCampaign(recs("g06", "g07", "g08", "g09", rid="RID-fy")),
        "trending": FakeCampaign(recs("g10", "g11", "g12", "g13", rid="RID-tr")),
        "popular": FakeCampaign(recs("g14", "g15", "g16", "g17", "g18", "g19", "g20", rid="RID-po")),
    }
    options.update(overrides)
    return service(**options)


def ids(section: Any) -> list[str]:
    return [g.game_id for g in section.games]


def by_key(lobby: Any) -> dict[str, Any]:
    return {section.key: section for section in lobby.sections}


# --- the normal lobby ----------------------------------------------------------------------------------


async def test_sections_in_order_with_sources_and_recommendation_ids() -> None:
    lobby = await full().lobby("p-1")
    assert [s.key for s in lobby.sections] == ["because_you_played", "for_you", "trending", "popular"]
    sections = by_key(lobby)
    assert sections["because_you_played"].title == "Because you played Game g01"
    assert ids(sections["because_you_played"]) == ["g02", "g03", "g04"]
    assert ids(sections["for_you"]) == ["g06", "g07", "g08"]
    assert ids(sections["trending"]) == ["g10", "g11", "g12"]
    assert ids(sections["popular"]) == ["g14", "g15", "g16"]
    assert [s.source for s in lobby.sections] == [
        "similar-games",
        "personalize-for-you",
        "personalize-trending",
        "personalize-popular",
    ]
    assert [s.recommendation_id for s in lobby.sections] == [None, "RID-fy", "RID-tr", "RID-po"]
    assert not lobby.degraded
    assert not any(s.degraded for s in lobby.sections)
    assert lobby.last_played_game_id == "g01"


async def test_rendered_json_has_the_contract_keys_and_validates() -> None:
    lobby = await full().lobby("p-1")
    body = json.loads(render_lobby(lobby))
    assert list(body) == ["playerId", "generatedAt", "lastPlayedGameId", "degraded", "sections"]
    assert list(body["sections"][0]) == ["key", "title", "source", "recommendationId", "degraded", "games"]
    first = body["sections"][0]["games"][0]
    assert first["gameId"] == "g02"
    assert first["name"] == "Game g02"
    assert first["provider"] == "Acme"
    assert first["categories"] == ["slots"]
    assert first["releaseDate"] == "2024-01-01"
    assert "jurisdictions" not in first
    assert "enabled" not in first
    parsed = LobbyResponse.model_validate(body)
    assert parsed.player_id == "p-1"


async def test_a_game_appears_in_one_section_only() -> None:
    overlapping = recs("g02", "g03", "g06", "g07", "g08", rid="RID-x")
    lobby = await full(
        for_you=FakeCampaign(overlapping),
        trending=FakeCampaign(recs("g02", "g06", "g10", "g11", "g12")),
        popular=FakeCampaign(recs("g02", "g03", "g10", "g14", "g15", "g16", "g17")),
    ).lobby("p-1")
    everything = [g for s in lobby.sections for g in ids(s)]
    assert len(everything) == len(set(everything)) == 4 * SIZE
    sections = by_key(lobby)
    assert ids(sections["because_you_played"]) == ["g02", "g03", "g04"]
    assert ids(sections["for_you"]) == ["g06", "g07", "g08"]
    assert ids(sections["trending"]) == ["g10", "g11", "g12"]
    assert ids(sections["popular"]) == ["g14", "g15", "g16"]


async def test_disabled_and_other_jurisdiction_games_never_appear() -> None:
    extra = [game("x-off", enabled=False), game("x-de", jurisdictions=["DE"]), game("x-se", jurisdictions=["SE"])]
    observer = Observer()
    lobby = await full(
        the_catalog=catalog(extra),
        similar=FakeSimilar(SimilarGames("g01", ("x-off", "x-de", "x-unknown", "g02", "x-se", "g03"))),
        popular=FakeCampaign(recs("x-de", "x-off", "g14", "g15", "g16", "g17", "g18", "g19")),
        observer=observer,
    ).lobby("p-1")
    shown = {g for s in lobby.sections for g in ids(s)}
    assert shown.isdisjoint({"x-off", "x-de", "x-unknown"})
    assert ids(by_key(lobby)["because_you_played"]) == ["g02", "x-se", "g03"]
    assert observer.misses >= 2  # x-unknown, x-off (not in the catalog of enabled games)


async def test_fixture_catalog_filtering_for_a_maltese_player() -> None:
    the_catalog = parse_catalog((FIXTURES / "catalog.json").read_bytes())
    raw = json.loads((FIXTURES / "catalog.json").read_text())
    everything = tuple(g["game_id"] for g in raw)
    lobby = await service(
        the_catalog=the_catalog,
        players=FakePlayers(profile(country="MT")),
        for_you=FakeCampaign(recs(*everything)),
        trending=FakeCampaign(recs(*reversed(everything))),
        popular=FakeCampaign(recs(*everything[::2])),
    ).lobby("p-1")
    allowed = {g["game_id"] for g in raw if g["enabled"] and "MT" in g["jurisdictions"]}
    shown = [g for s in lobby.sections for g in ids(s)]
    assert shown
    assert set(shown) <= allowed
    assert len(shown) == len(set(shown))


async def test_a_short_section_is_topped_up_from_popular() -> None:
    lobby = await full(
        similar=FakeSimilar(SimilarGames("g01", ("g02",))),
        for_you=FakeCampaign(recs("g06")),
        popular=FakeCampaign(recs("g14", "g15", "g16", "g17", "g18", "g19", "g20", "g21")),
    ).lobby("p-1")
    sections = by_key(lobby)
    assert ids(sections["because_you_played"]) == ["g02", "g14", "g15"]
    assert sections["because_you_played"].topped_up == 2
    assert ids(sections["for_you"]) == ["g06", "g16", "g17"]
    assert ids(sections["popular"]) == ["g18", "g19", "g20"]
    assert not lobby.degraded


async def test_because_you_played_never_shows_the_game_itself() -> None:
    # The similar row holds its own game, which is also the most popular one.
    popular = FakeCampaign(recs("g01", "g14", "g15", "g16", "g17", "g18", "g19"))
    lobby = await full(similar=FakeSimilar(SimilarGames("g01", ("g01", "g02", "g03", "g04"))), popular=popular).lobby(
        "p-1"
    )
    sections = by_key(lobby)
    assert ids(sections["because_you_played"]) == ["g02", "g03", "g04"]
    # The last played game may still be shown elsewhere: players go back to their games.
    assert ids(sections["popular"]) == ["g01", "g14", "g15"]


async def test_because_you_played_topped_up_from_popular_skips_the_game_itself() -> None:
    lobby = await full(
        similar=FakeSimilar(SimilarGames("g01", ("g02",))),
        for_you=FakeCampaign(recs("g06")),
        popular=FakeCampaign(recs("g01", "g14", "g15", "g16", "g17", "g18", "g19", "g20")),
    ).lobby("p-1")
    sections = by_key(lobby)
    assert ids(sections["because_you_played"]) == ["g02", "g14", "g15"]
    # Passed over, not lost: the next top-up takes it first, in its popular place.
    assert ids(sections["for_you"]) == ["g06", "g01", "g16"]
    assert ids(sections["popular"]) == ["g17", "g18", "g19"]
    everything = [g for s in lobby.sections for g in ids(s)]
    assert len(everything) == len(set(everything))


async def test_because_you_played_from_popular_when_similar_fails_skips_the_game_itself() -> None:
    lobby = await full(
        similar=FakeSimilar(error=ConnectionError("down")),
        popular=FakeCampaign(recs("g01", "g14", "g15", "g16", "g17", "g18", "g19")),
    ).lobby("p-1")
    section = by_key(lobby)["because_you_played"]
    assert (section.source, section.degraded) == ("popular-fallback", True)
    assert ids(section) == ["g14", "g15", "g16"]
    assert ids(by_key(lobby)["popular"]) == ["g01", "g17", "g18"]


async def test_popular_short_of_games_is_filled_from_the_catalog_order() -> None:
    lobby = await full(popular=FakeCampaign(recs("g14"))).lobby("p-1")
    assert ids(by_key(lobby)["popular"]) == ["g14", "g01", "g05"]


# --- fallbacks -----------------------------------------------------------------------------------------


async def test_failing_for_you_is_filled_from_popular_and_marked_degraded() -> None:
    observer = Observer()
    lobby = await full(for_you=FakeCampaign(error=RuntimeError("boom")), observer=observer).lobby("p-1")
    section = by_key(lobby)["for_you"]
    assert section.degraded
    assert section.source == "popular-fallback"
    assert section.recommendation_id is None
    assert ids(section) == ["g14", "g15", "g16"]
    assert lobby.degraded
    assert ("for_you", Outcome.ERROR) in observer.calls
    assert observer.fallbacks == [("for_you", "popular-fallback")]


async def test_failing_similar_keeps_the_row_filled_from_popular() -> None:
    lobby = await full(similar=FakeSimilar(error=ConnectionError("down"))).lobby("p-1")
    section = by_key(lobby)["because_you_played"]
    assert section.degraded
    assert section.source == "popular-fallback"
    assert ids(section) == ["g14", "g15", "g16"]


async def test_popular_and_trending_fall_back_to_the_last_good_lists() -> None:
    popular = FakeCampaign(recs("g14", "g15", "g16", "g17", "g18", "g19"))
    trending = FakeCampaign(recs("g10", "g11", "g12", "g13"))
    lobbies = full(popular=popular, trending=trending)
    await lobbies.lobby("p-1")
    popular.error = trending.error = RuntimeError("outage")
    lobby = await lobbies.lobby("p-1")
    sections = by_key(lobby)
    assert (sections["trending"].source, sections["trending"].degraded) == ("cache-trending", True)
    assert (sections["popular"].source, sections["popular"].degraded) == ("cache-popular", True)
    assert ids(sections["trending"]) == ["g10", "g11", "g12"]
    assert ids(sections["popular"]) == ["g14", "g15", "g16"]
    assert sections["popular"].recommendation_id is None


async def test_without_any_good_list_popular_comes_from_the_catalog() -> None:
    lobby = await full(
        popular=FakeCampaign(error=RuntimeError("x")), trending=FakeCampaign(error=RuntimeError("x"))
    ).lobby("p-1")
    sections = by_key(lobby)
    assert (sections["popular"].source, sections["popular"].degraded) == ("catalog", True)
    assert (sections["trending"].source, sections["trending"].degraded) == ("popular-fallback", True)
    assert all(len(s.games) == SIZE for s in lobby.sections)


async def test_background_refresh_fills_the_fallback_lists() -> None:
    popular = FakeCampaign(recs("g20", "g21", "g22", "g23"))
    lobbies = full(popular=popular)
    await lobbies.refresh_fallbacks()
    assert popular.calls[0][0] == "pam-lobby-fallback"
    popular.error = RuntimeError("down")
    lobby = await lobbies.lobby("p-1")
    assert ids(by_key(lobby)["popular"]) == ["g20", "g21", "g22"]


async def test_empty_answers_leave_sections_to_popular_without_degrading() -> None:
    lobby = await full(similar=FakeSimilar(None), for_you=FakeCampaign(recs()), trending=FakeCampaign(recs())).lobby(
        "p-1"
    )
    sections = by_key(lobby)
    assert "because_you_played" not in sections  # no similar games known for the last played game
    assert ids(sections["for_you"]) == ["g14", "g15", "g16"]
    assert not lobby.degraded


async def test_slow_dependencies_time_out_within_the_deadline() -> None:
    observer = Observer()
    slow = 5.0
    lobbies = full(
        similar=FakeSimilar(SimilarGames("g01", ("g02",)), delay=slow),
        for_you=FakeCampaign(recs("g06"), delay=slow),
        trending=FakeCampaign(recs("g10"), delay=slow),
        timeout=0.05,
        deadline=0.12,
        observer=observer,
    )
    started = time.monotonic()
    lobby = await lobbies.lobby("p-1")
    elapsed = time.monotonic() - started
    assert elapsed < 0.5
    sections = by_key(lobby)
    assert sections["for_you"].degraded
    assert sections["because_you_played"].degraded
    assert sections["trending"].source == "popular-fallback"
    assert not sections["popular"].degraded
    assert ("for_you", Outcome.TIMEOUT) in observer.calls


async def test_the_overall_deadline_bounds_dependencies_called_one_after_another() -> None:
    slow = 0.08
    lobbies = full(
        players=FakePlayers(profile("g01"), delay=slow),
        similar=FakeSimilar(SimilarGames("g01", ("g02",)), delay=slow),
        for_you=FakeCampaign(recs("g06"), delay=slow),
        trending=FakeCampaign(recs("g10"), delay=slow),
        popular=FakeCampaign(recs("g14"), delay=slow),
        timeout=0.1,
        deadline=0.2,
        sequential=True,
    )
    started = time.monotonic()
    lobby = await lobbies.lobby("p-1")
    assert time.monotonic() - started < 0.35
    assert lobby.degraded  # trending or popular ran out of time


async def test_parallel_calls_start_at_once_and_sequential_ones_do_not() -> None:
    delay = 0.05
    fakes = {
        "for_you": FakeCampaign(recs("g06"), delay=delay),
        "trending": FakeCampaign(recs("g10"), delay=delay),
        "popular": FakeCampaign(recs("g14"), delay=delay),
    }
    started = time.monotonic()
    await full(**fakes).lobby("p-1")
    parallel = time.monotonic() - started
    starts = [fake.started[0] for fake in fakes.values()]
    assert max(starts) - min(starts) < 0.02
    started = time.monotonic()
    await full(**fakes, sequential=True).lobby("p-1")
    sequential = time.monotonic() - started
    assert sequential >= 3 * delay
    assert parallel < 2 * delay


async def test_database_failure_shows_only_games_available_everywhere() -> None:
    extra = [game("x-se", jurisdictions=["SE"])]
    lobby = await full(
        the_catalog=catalog(extra),
        players=FakePlayers(error=TimeoutError()),
        for_you=FakeCampaign(recs("x-se", "g06", "g07", "g08")),
    ).lobby("p-1")
    assert lobby.degraded
    assert "because_you_played" not in by_key(lobby)
    assert "x-se" not in {g for s in lobby.sections for g in ids(s)}
    assert lobby.last_played_game_id is None


async def test_cold_start_player_gets_a_full_lobby() -> None:
    lobby = await full(players=FakePlayers(profile()), for_you=FakeCampaign(recs("g14", "g15", "g16", "g06"))).lobby(
        "p-new"
    )
    assert [s.key for s in lobby.sections] == ["for_you", "trending", "popular"]
    assert all(len(s.games) == SIZE for s in lobby.sections)
    assert not lobby.degraded
    assert lobby.last_played_game_id is None


async def test_unknown_player_is_treated_as_of_unknown_jurisdiction() -> None:
    extra = [game("x-se", jurisdictions=["SE"])]
    lobby = await full(
        the_catalog=catalog(extra),
        players=FakePlayers(PlayerProfile("p-x", known=False)),
        for_you=FakeCampaign(recs("x-se", "g06")),
    ).lobby("p-x")
    assert "x-se" not in {g for s in lobby.sections for g in ids(s)}
    assert not lobby.degraded


@pytest.mark.parametrize("country", ["se", " SE", "Se\n"])
async def test_the_players_country_is_compared_trimmed_and_upper_case(country: str) -> None:
    extra = [game("x-se", jurisdictions=["SE"])]
    lobby = await full(
        the_catalog=catalog(extra),
        players=FakePlayers(profile("g01", country=country)),
        for_you=FakeCampaign(recs("x-se", "g06", "g07")),
    ).lobby("p-1")
    assert [s.key for s in lobby.sections] == ["because_you_played", "for_you", "trending", "popular"]
    assert ids(by_key(lobby)["for_you"]) == ["x-se", "g06", "g07"]
    assert not lobby.degraded


@pytest.mark.parametrize("country", ["", "  ", None])
async def test_a_blank_country_is_an_unknown_one(country: str | None) -> None:
    extra = [game("x-se", jurisdictions=["SE"])]
    lobby = await full(
        the_catalog=catalog(extra),
        players=FakePlayers(profile("g01", country=country)),
        for_you=FakeCampaign(recs("x-se", "g06", "g07", "g08")),
    ).lobby("p-1")
    assert ids(by_key(lobby)["for_you"]) == ["g06", "g07", "g08"]  # only games available everywhere
    assert ids(by_key(lobby)["because_you_played"]) == ["g02", "g03", "g04"]
    assert not lobby.degraded


async def test_catalog_jurisdictions_are_trimmed_and_upper_case_too() -> None:
    extra = [game("x-se", jurisdictions=[" se", "mt "]), game("x-blank", jurisdictions=[" ", "de"])]
    the_catalog = catalog(extra)
    assert the_catalog.games["x-se"].jurisdictions == frozenset({"SE", "MT"})
    assert the_catalog.games["x-blank"].jurisdictions == frozenset({"DE"})
    lobby = await full(the_catalog=the_catalog, for_you=FakeCampaign(recs("x-se", "x-blank", "g06", "g07"))).lobby(
        "p-1"
    )
    assert ids(by_key(lobby)["for_you"]) == ["x-se", "g06", "g07"]


async def test_a_lobby_with_nothing_to_show_is_degraded() -> None:
    # No game of the catalog may be shown in Germany: every dependency answers, and still nothing shows.
    lobby = await full(players=FakePlayers(profile("g01", country="DE"))).lobby("p-1")
    assert lobby.sections == ()
    assert lobby.degraded
    body = json.loads(render_lobby(lobby))
    assert (body["degraded"], body["sections"]) == (True, [])


async def test_last_played_game_no_longer_shown_moves_to_the_previous_one() -> None:
    extra = [game("x-de", jurisdictions=["DE"])]
    similar = FakeSimilar(SimilarGames("g05", ("g02", "g03", "g04")))
    lobby = await full(the_catalog=catalog(extra), players=FakePlayers(profile("x-de", "g05")), similar=similar).lobby(
        "p-1"
    )
    assert similar.calls == [("g05",)]
    assert by_key(lobby)["because_you_played"].title == "Because you played Game g05"


async def test_unconfigured_campaigns_leave_popular_from_the_catalog() -> None:
    lobby = await service(players=FakePlayers(profile())).lobby("p-1")
    assert [(s.key, s.source, s.degraded) for s in lobby.sections] == [("popular", "catalog", False)]


async def test_no_catalog_no_lobby() -> None:
    lobbies = full()
    lobbies._catalog = lambda: None
    with pytest.raises(NoCatalogError):
        await lobbies.lobby("p-1")


async def test_a_failing_dependency_opens_its_breaker_and_is_not_called_then() -> None:
    for_you = FakeCampaign(error=RuntimeError("down"))
    observer = Observer()
    lobbies = full(for_you=for_you, policy=BreakerPolicy(failures=3, cooldown=60), observer=observer)
    for _ in range(5):
        lobby = await lobbies.lobby("p-1")
        assert by_key(lobby)["for_you"].degraded
    assert len(for_you.calls) == 3
    assert lobbies.guards["for_you"].breaker.state is BreakerState.OPEN
    assert observer.calls.count(("for_you", Outcome.BREAKER_OPEN)) == 2
