"""The lobby: every dependency asked at once, each within its deadline, and the sections assembled.

Sections, in order: ``because_you_played`` (similar games of the last played game, DynamoDB),
``for_you`` (user-personalization), ``trending`` (trending-now) and ``popular`` (popularity-count).
Rules every lobby keeps:

- a game is shown only when the catalog has it enabled and it is available in the player's jurisdiction
  (a player whose country is unknown sees only the games available everywhere); the player's country is
  compared as the catalog's jurisdictions are, trimmed and upper-case, and an empty one is unknown;
- a game appears in one section only (earlier sections win);
- "because you played X" never shows X itself (X may still be in the other sections: players go back
  to the games they play);
- a section short of games is topped up from the popular list (then the catalog's order);
- a failing dependency never fails the lobby: popular and trending fall back to the last good list
  (refreshed in the background), for-you to popular games, and because-you-played is left out; such a
  section is ``degraded`` and its ``source`` says where its games came from;
- a player without history (or unknown to the database) still gets for-you, trending and popular;
- a lobby with nothing to show (no game may be shown to the player) is ``degraded``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal, NamedTuple, Protocol

import orjson

from pam.api.catalog import Catalog, CatalogGame
from pam.api.deadline.guard import GuardedDependency, Result
from pam.api.dependencies.personalize import Recommendations
from pam.api.dependencies.players import PlayerProfile
from pam.api.dependencies.similar import SimilarGames

SectionKey = Literal["because_you_played", "for_you", "trending", "popular"]
SECTION_ORDER: Final[tuple[SectionKey, ...]] = ("because_you_played", "for_you", "trending", "popular")
TITLES: Final[dict[SectionKey, str]] = {
    "because_you_played": "Because you played {game}",
    "for_you": "Picked for you",
    "trending": "Trending now",
    "popular": "Popular games",
}
#: Dependency names (metrics labels, breakers, the admin view).
DATABASE, SIMILAR, FOR_YOU, TRENDING, POPULAR = "database", "similar", "for_you", "trending", "popular"
DEPENDENCIES: Final = (DATABASE, SIMILAR, FOR_YOU, TRENDING, POPULAR)

#: Sources of a section's games.
SOURCE_SIMILAR: Final = "similar-games"
SOURCE_FOR_YOU: Final = "personalize-for-you"
SOURCE_TRENDING: Final = "personalize-trending"
SOURCE_POPULAR: Final = "personalize-popular"
SOURCE_TRENDING_CACHE: Final = "cache-trending"
SOURCE_POPULAR_CACHE: Final = "cache-popular"
SOURCE_POPULAR_FALLBACK: Final = "popular-fallback"
SOURCE_CATALOG: Final = "catalog"


# --- assembly (pure) ---------------------------------------------------------------------------------


class SectionPlan(NamedTuple):
    """A section to fill: its candidates in order (possibly none: then it is filled from popular).
    ``excluded`` games are never put in this section (they stay free for the next ones)."""

    key: SectionKey
    title: str
    source: str
    candidates: Sequence[str] = ()
    recommendation_id: str | None = None
    degraded: bool = False
    excluded: frozenset[str] = frozenset()


class Section(NamedTuple):
    """A filled section (named tuples, like the plans: several are made per lobby)."""

    key: SectionKey
    title: str
    source: str
    recommendation_id: str | None
    degraded: bool
    games: tuple[CatalogGame, ...]
    #: Games that came from the popular top-up, not from the section's own candidates.
    topped_up: int = 0


@dataclass(slots=True)
class Assembly:
    sections: list[Section] = field(default_factory=list)
    #: Recommended ids found in the catalog / not in it (unknown or disabled games).
    hits: int = 0
    misses: int = 0


def assemble(
    catalog: Catalog, country: str | None, plans: Sequence[SectionPlan], popular: Sequence[str], size: int
) -> Assembly:
    """Fill ``plans`` in order with up to ``size`` games each; the popular list (then the catalog
    order) tops every section up. ``popular`` is the popular campaign's list (or its fallback)."""
    result = Assembly()
    used: set[str] = set()
    shown = catalog.visible(country).get
    known = catalog.games
    pool = _PopularPool(catalog, country, popular, used)

    for plan in plans:
        games: list[CatalogGame] = []
        excluded = plan.excluded
        for game_id in plan.candidates:
            if game_id in used or game_id in excluded:
                continue
            game = shown(game_id)
            if game is None:
                if game_id not in known:
                    result.misses += 1
                continue
            result.hits += 1
            used.add(game_id)
            games.append(game)
            if len(games) >= size:
                break
        own = len(games)
        if own < size:
            games.extend(pool.take(size - own, excluded))
        if games:
            result.sections.append(
                Section(
                    plan.key,
                    plan.title,
                    plan.source,
                    plan.recommendation_id,
                    plan.degraded,
                    tuple(games),
                    topped_up=len(games) - own,
                )
            )
    return result


class _PopularPool:
    """The popular list, then the catalog order: games not used yet, shown in ``country``."""

    def __init__(self, catalog: Catalog, country: str | None, popular: Sequence[str], used: set[str]) -> None:
        self._shown = catalog.visible(country)
        self._used = used
        self._popular = popular
        self._ids: Iterator[str] | None = None
        #: Games passed over because a section excluded them, in order: the next sections take them first.
        self._held: list[str] = []

    def take(self, count: int, excluded: frozenset[str] = frozenset()) -> list[CatalogGame]:
        taken: list[CatalogGame] = []
        if count <= 0:
            return taken
        if self._ids is None:  # built on first use: most lobbies need no top-up
            self._ids = itertools.chain(self._popular, self._shown)
        shown = self._shown
        waiting = iter(self._held)
        held: list[str] = []
        for game_id in itertools.chain(waiting, self._ids) if self._held else self._ids:
            if game_id in self._used:
                continue
            game = shown.get(game_id)
            if game is None:
                continue
            if game_id in excluded:
                held.append(game_id)
                continue
            self._used.add(game_id)
            taken.append(game)
            if len(taken) >= count:
                break
        held.extend(waiting)  # held games not reached when the section filled up: still ahead of the rest
        self._held = held
        return taken


# --- the lobby ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lobby:
    player_id: str
    generated_at: str
    last_played_game_id: str | None
    degraded: bool
    sections: tuple[Section, ...]


def _quoted(value: str | None) -> bytes:
    return b"null" if value is None else orjson.dumps(value)


def render_lobby(lobby: Lobby) -> bytes:
    """The lobby as the API's JSON (camelCase), built from the games' pre-serialized JSON."""
    parts = [
        b'{"playerId":',
        _quoted(lobby.player_id),
        b',"generatedAt":',
        _quoted(lobby.generated_at),
        b',"lastPlayedGameId":',
        _quoted(lobby.last_played_game_id),
        b',"degraded":',
        b"true" if lobby.degraded else b"false",
        b',"sections":[',
    ]
    for index, section in enumerate(lobby.sections):
        parts.extend(
            (
                b',{"key":"' if index else b'{"key":"',
                section.key.encode(),
                b'","title":',
                _quoted(section.title),
                b',"source":',
                _quoted(section.source),
                b',"recommendationId":',
                _quoted(section.recommendation_id),
                b',"degraded":',
                b"true" if section.degraded else b"false",
                b',"games":[',
                b",".join(game.json for game in section.games),
                b"]}",
            )
        )
    parts.append(b"]}")
    return b"".join(parts)


class PlayerLookup(Protocol):
    async def lookup(self, player_id: str) -> PlayerProfile: ...


class SimilarLookup(Protocol):
    async def get(self, game_id: str) -> SimilarGames | None: ...


class Campaign(Protocol):
    async def get(self, user_id: str, num_results: int) -> Recommendations: ...


@dataclass(frozen=True, slots=True)
class LobbyConfig:
    section_size: int = 12
    candidates: int = 40
    popular_candidates: int = 100
    #: Seconds for the whole lobby.
    deadline: float = 0.25
    sequential: bool = False
    fallback_user_id: str = "pam-lobby-fallback"


@dataclass(slots=True)
class LastGood:
    """The last list a campaign answered (for popular and trending fallbacks)."""

    value: Recommendations | None = None
    at: float | None = None

    def keep(self, value: Recommendations) -> None:
        if value.item_ids:
            self.value = value
            self.at = time.monotonic()


class FallbackObserver(Protocol):
    def fallback(self, section: str, source: str) -> None: ...
    def catalog_lookups_done(self, hits: int, misses: int) -> None: ...


class NoCatalogError(Exception):
    """No catalog has been loaded yet: the lobby cannot be shown."""


class LobbyService:
    """Builds lobbies. ``campaigns`` maps for_you/trending/popular to a campaign (None: not configured);
    ``guards`` maps every dependency name to its :class:`GuardedDependency`."""

    def __init__(
        self,
        *,
        catalog: Callable[[], Catalog | None],
        players: PlayerLookup,
        similar: SimilarLookup | None,
        campaigns: dict[str, Campaign | None],
        guards: dict[str, GuardedDependency],
        config: LobbyConfig,
        observer: FallbackObserver,
    ) -> None:
        self._catalog = catalog
        self._players = players
        self._similar = similar
        self._campaigns = campaigns
        self.guards = guards
        self.config = config
        self._observer = observer
        self.last_good: dict[str, LastGood] = {TRENDING: LastGood(), POPULAR: LastGood()}

    def _campaign_call(
        self, name: str, user_id: str, count: int, deadline: float
    ) -> Awaitable[Result[Recommendations]] | None:
        campaign = self._campaigns.get(name)
        if campaign is None:
            return None
        return self.guards[name].call(lambda: campaign.get(user_id, count), deadline=deadline)

    async def lobby(self, player_id: str) -> Lobby:
        """The player's lobby; :class:`NoCatalogError` before a catalog is loaded."""
        catalog = self._catalog()
        if catalog is None:
            raise NoCatalogError("the catalog is not loaded yet")
        config = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.deadline
        players = self.guards[DATABASE].call(lambda: self._players.lookup(player_id), deadline=deadline)
        calls = {
            FOR_YOU: self._campaign_call(FOR_YOU, player_id, config.candidates, deadline),
            TRENDING: self._campaign_call(TRENDING, player_id, config.candidates, deadline),
            POPULAR: self._campaign_call(POPULAR, player_id, config.popular_candidates, deadline),
        }
        results: dict[str, Result[Recommendations] | None] = {}
        similar: Result[SimilarGames | None] | None = None
        if config.sequential:
            profile_result = await players
            anchor = _anchor(catalog, profile_result.value)
            if anchor is not None and self._similar is not None:
                similar = await self._similar_call(anchor.game_id, deadline)
            for name, call in calls.items():
                results[name] = await call if call is not None else None
        else:
            tasks = {name: asyncio.ensure_future(call) for name, call in calls.items() if call is not None}
            profile_result = await players
            anchor = _anchor(catalog, profile_result.value)
            if anchor is not None and self._similar is not None:
                similar = await self._similar_call(anchor.game_id, deadline)
            for name in calls:
                task = tasks.get(name)
                results[name] = await task if task is not None else None
        return self._build(catalog, player_id, profile_result, anchor, similar, results)

    def _similar_call(self, game_id: str, deadline: float) -> Awaitable[Result[SimilarGames | None]]:
        similar = self._similar
        assert similar is not None
        return self.guards[SIMILAR].call(lambda: similar.get(game_id), deadline=deadline)

    def _build(  # noqa: PLR0917
        self,
        catalog: Catalog,
        player_id: str,
        profile_result: Result[PlayerProfile],
        anchor: CatalogGame | None,
        similar: Result[SimilarGames | None] | None,
        results: dict[str, Result[Recommendations] | None],
    ) -> Lobby:
        observer = self._observer
        profile = profile_result.value
        country = profile.country if profile is not None else None  # normalized by PlayerProfile
        degraded = not profile_result.ok
        plans: list[SectionPlan] = []

        if anchor is not None and similar is not None:
            title = TITLES["because_you_played"].format(game=anchor.name)
            itself = frozenset((anchor.game_id,))  # never "because you played X": X
            if similar.ok:
                row = similar.value
                if row is not None and row.similar:
                    plans.append(SectionPlan("because_you_played", title, SOURCE_SIMILAR, row.similar, excluded=itself))
            else:
                plans.append(
                    SectionPlan("because_you_played", title, SOURCE_POPULAR_FALLBACK, degraded=True, excluded=itself)
                )

        for_you = results.get(FOR_YOU)
        if for_you is not None:
            if for_you.ok and for_you.value is not None:
                value = for_you.value
                plans.append(
                    SectionPlan("for_you", TITLES["for_you"], SOURCE_FOR_YOU, value.item_ids, value.recommendation_id)
                )
            else:
                plans.append(SectionPlan("for_you", TITLES["for_you"], SOURCE_POPULAR_FALLBACK, degraded=True))

        trending = self._cacheable(TRENDING, results.get(TRENDING), SOURCE_TRENDING, SOURCE_TRENDING_CACHE)
        if trending is not None:
            plans.append(trending)
        popular = self._cacheable(POPULAR, results.get(POPULAR), SOURCE_POPULAR, SOURCE_POPULAR_CACHE)
        if popular is None:
            popular = SectionPlan("popular", TITLES["popular"], SOURCE_CATALOG)
        plans.append(popular)

        assembly = assemble(catalog, country, plans, popular.candidates, self.config.section_size)
        observer.catalog_lookups_done(assembly.hits, assembly.misses)
        for section in assembly.sections:
            if section.degraded:
                degraded = True
                observer.fallback(section.key, section.source)
        if not assembly.sections:  # nothing may be shown to this player: not a lobby as it should be
            degraded = True
        last_played = anchor.game_id if anchor is not None else None
        if last_played is None and profile is not None and profile.recent_game_ids:
            last_played = profile.recent_game_ids[0]
        return Lobby(
            player_id=player_id,
            generated_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            last_played_game_id=last_played,
            degraded=degraded,
            sections=tuple(assembly.sections),
        )

    def _cacheable(
        self, name: str, result: Result[Recommendations] | None, live: str, cached: str
    ) -> SectionPlan | None:
        key: SectionKey = "popular" if name == POPULAR else "trending"
        title = TITLES[key]
        if result is None:
            return None
        last_good = self.last_good[name]
        if result.ok and result.value is not None:
            last_good.keep(result.value)
            return SectionPlan(key, title, live, result.value.item_ids, result.value.recommendation_id)
        if last_good.value is not None:
            return SectionPlan(key, title, cached, last_good.value.item_ids, degraded=True)
        if name == POPULAR:
            return SectionPlan(key, title, SOURCE_CATALOG, degraded=True)
        return SectionPlan(key, title, SOURCE_POPULAR_FALLBACK, degraded=True)

    async def refresh_fallbacks(self) -> None:
        """Read popular and trending once for the fallback lists (through their breakers)."""
        config = self.config
        loop = asyncio.get_running_loop()
        for name, count in ((POPULAR, config.popular_candidates), (TRENDING, config.candidates)):
            call = self._campaign_call(name, config.fallback_user_id, count, loop.time() + config.deadline)
            if call is None:
                continue
            result = await call
            if result.ok and result.value is not None:
                self.last_good[name].keep(result.value)

    async def run_fallback_refresh(self, interval: float) -> None:
        """:meth:`refresh_fallbacks` every ``interval`` seconds until cancelled."""
        while True:
            await self.refresh_fallbacks()
            await asyncio.sleep(interval)


def _anchor(catalog: Catalog, profile: PlayerProfile | None) -> CatalogGame | None:
    """The game "because you played" is about: the latest one played that may be shown to the player."""
    if profile is None:
        return None
    for game_id in profile.recent_game_ids:
        game = catalog.shown(game_id, profile.country)
        if game is not None:
            return game
    return None
