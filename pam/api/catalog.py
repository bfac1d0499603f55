"""The games catalog the lobby shows: ``games.json`` as ``batch datasets`` writes it, indexed in memory.

``{"version": 1, "generated_at": ..., "games": [{"game_id", "title", "provider", "category",
"volatility", "rtp", "release_date", "jurisdictions", ...}]}`` (a bare list of games is read too). A
game with ``"enabled": false`` is never shown; ``jurisdictions`` lists the countries a game may be
shown in (a catalog without that column shows every game everywhere; countries are compared trimmed
and upper-case, see :func:`country_code`). Each game's API form is serialized once, when the catalog
is loaded.

:class:`CatalogStore` keeps the last good catalog and refreshes it in the background: a conditional GET
(``If-None-Match``) on S3, the modification time of a file; a failed refresh keeps the last good copy.
A catalog without a game to show, or one that lost more than ``max_shrink`` of the games shown now, is
taken for a bad ``batch datasets`` run (an empty or wrong platform database): the refresh fails and the
last good copy stays.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

log = logging.getLogger("pam.api")

#: A refresh is refused when the new catalog has lost more than this fraction of the current one's games.
DEFAULT_MAX_SHRINK: Final = 0.5
#: Catalog columns that never reach the API (they decide what is shown, they are not shown).
HIDDEN_FIELDS: Final = frozenset({"game_id", "title", "name", "category", "categories", "jurisdictions", "enabled"})


class CatalogError(Exception):
    """The catalog could not be read or is not a catalog."""


def country_code(value: object) -> str | None:
    """A country (a player's, or one of a game's jurisdictions) as the catalog compares them: trimmed and
    upper-case (``" se"`` is ``SE``); None for nothing or a blank."""
    if value is None:
        return None
    code = str(value).strip().upper()
    return code or None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _categories(entry: Mapping[str, Any]) -> list[str]:
    value = entry.get("categories", entry.get("category"))
    if isinstance(value, str):
        return [part for part in value.split("|") if part]
    if isinstance(value, list):
        return [str(part) for part in value if part is not None]
    return []


@dataclass(frozen=True, slots=True)
class CatalogGame:
    game_id: str
    name: str
    provider: str
    categories: tuple[str, ...]
    #: Countries the game may be shown in; None: everywhere.
    jurisdictions: frozenset[str] | None
    #: The API form (``gameId``, ``name``, ``provider``, ``categories`` and the other columns, camelCase).
    api: dict[str, Any]
    #: ``api`` as JSON, serialized once.
    json: bytes

    def available_in(self, country: str | None, universal: frozenset[str]) -> bool:
        if self.jurisdictions is None:
            return True
        if country is None:
            return self.game_id in universal
        return country in self.jurisdictions


def _game(entry: Mapping[str, Any]) -> CatalogGame | None:
    game_id = entry.get("game_id", entry.get("gameId", entry.get("id")))
    if not isinstance(game_id, str) or not game_id or entry.get("enabled", True) is False:
        return None
    name = entry.get("title", entry.get("name"))
    provider = entry.get("provider")
    categories = _categories(entry)
    raw_jurisdictions = entry.get("jurisdictions")
    jurisdictions: frozenset[str] | None
    if raw_jurisdictions is None and "jurisdictions" not in entry:
        jurisdictions = None
    elif isinstance(raw_jurisdictions, str | list):
        parts = raw_jurisdictions.split("|") if isinstance(raw_jurisdictions, str) else raw_jurisdictions
        jurisdictions = frozenset(code for code in map(country_code, parts) if code is not None)
    else:
        jurisdictions = frozenset()
    api: dict[str, Any] = {
        "gameId": game_id,
        "name": str(name) if name is not None else game_id,
        "provider": str(provider) if provider is not None else "",
        "categories": categories,
    }
    for column, value in entry.items():
        if column not in HIDDEN_FIELDS and (value is None or isinstance(value, str | int | float | bool)):
            api.setdefault(_camel(column), value)
    return CatalogGame(
        game_id=game_id,
        name=api["name"],
        provider=api["provider"],
        categories=tuple(categories),
        jurisdictions=jurisdictions,
        api=api,
        json=json.dumps(api, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
    )


@dataclass(frozen=True, slots=True)
class Catalog:
    """An immutable catalog: enabled games by id, in catalog order."""

    games: Mapping[str, CatalogGame]
    generated_at: str | None = None
    #: Games shown everywhere the catalog knows (what a player of unknown jurisdiction may see).
    universal: frozenset[str] = field(default_factory=frozenset)
    #: Disabled or unusable entries left out.
    skipped: int = 0

    #: :meth:`visible` per country, computed on first use (the catalog itself never changes).
    _visible: dict[str | None, Mapping[str, CatalogGame]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def order(self) -> Iterable[str]:
        return self.games.keys()

    def visible(self, country: str | None) -> Mapping[str, CatalogGame]:
        """The games a player of ``country`` (None: unknown) may be shown, by id, in catalog order."""
        games = self._visible.get(country)
        if games is None:
            universal = self.universal
            games = {game_id: game for game_id, game in self.games.items() if game.available_in(country, universal)}
            self._visible[country] = games
        return games

    def shown(self, game_id: str, country: str | None) -> CatalogGame | None:
        """The game when it may be shown to a player of ``country`` (None: unknown), else None."""
        return self.visible(country).get(game_id)


def parse_catalog(data: bytes) -> Catalog:
    """A catalog from ``games.json``; :class:`CatalogError` when it is not one."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise CatalogError(f"the catalog is not JSON: {exc}") from None
    entries = document.get("games") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise CatalogError("the catalog holds no 'games' list")
    games: dict[str, CatalogGame] = {}
    skipped = 0
    for entry in entries:
        game = _game(entry) if isinstance(entry, dict) else None
        if game is None or game.game_id in games:
            skipped += 1
            continue
        games[game.game_id] = game
    known = frozenset().union(*(game.jurisdictions or () for game in games.values()))
    universal = frozenset(
        game.game_id for game in games.values() if game.jurisdictions is None or known <= game.jurisdictions
    )
    generated_at = document.get("generated_at") if isinstance(document, dict) else None
    return Catalog(games, str(generated_at) if generated_at else None, universal, skipped)


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetch's answer: ``data`` None means "not modified since ``tag``"."""

    data: bytes | None
    tag: str | None


class CatalogSource(Protocol):
    def fetch(self, tag: str | None) -> Fetched:
        """The catalog's bytes unless its version is still ``tag`` (blocking)."""
        ...


class FileCatalogSource:
    """A local ``games.json``; its modification time and size are the version."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fetch(self, tag: str | None) -> Fetched:
        try:
            stat = self.path.stat()
            current = f"{stat.st_mtime_ns}-{stat.st_size}"
            if current == tag:
                return Fetched(None, tag)
            return Fetched(self.path.read_bytes(), current)
        except OSError as exc:
            raise CatalogError(f"cannot read the catalog file: {exc.strerror or exc}") from None


class S3CatalogSource:
    """``games.json`` in S3, read with ``If-None-Match`` on the last ETag."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._client = client
        self.bucket = bucket
        self.key = key

    def fetch(self, tag: str | None) -> Fetched:
        from botocore.exceptions import BotoCoreError, ClientError

        options: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if tag:
            options["IfNoneMatch"] = tag
        try:
            answer = self._client.get_object(**options)
            return Fetched(answer["Body"].read(), answer.get("ETag"))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 304 or error.get("Code") in ("304", "NotModified"):
                return Fetched(None, tag)
            raise CatalogError(f"S3 answered {error.get('Code', status)}") from None
        except BotoCoreError as exc:
            raise CatalogError(f"S3 unreachable: {type(exc).__name__}") from None


class RefreshObserver(Protocol):
    def catalog_refresh(self, outcome: str, games: int | None) -> None: ...


class CatalogStore:
    """The last good catalog, and the refresh that replaces it.

    ``max_shrink``: a new catalog that has lost more than this fraction of the current one's games is
    refused (1: any size is taken, except no game at all, which is always refused)."""

    def __init__(
        self,
        source: CatalogSource,
        observer: RefreshObserver,
        *,
        max_shrink: float = DEFAULT_MAX_SHRINK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < max_shrink <= 1:
            raise ValueError(f"max_shrink must be within (0, 1], got {max_shrink}")
        self._source = source
        self._observer = observer
        self._max_shrink = max_shrink
        self._clock = clock
        self._tag: str | None = None
        #: The tag of the last catalog fetched but not taken (malformed, empty or shrunk too much) and why:
        #: while the source still has it, it is neither downloaded (when the source honours the tag) nor
        #: parsed nor warned about again.
        self._refused: tuple[str, str] | None = None
        self.catalog: Catalog | None = None
        self.loaded_at: float | None = None
        self.last_error: str | None = None

    def refresh_blocking(self) -> str:
        """Fetch once: ``updated``, ``not_modified`` or ``error`` (the last good catalog stays).

        A refused catalog is an ``error`` (and a warning) once per version: while the source still has
        it, a refresh is ``not_modified`` and ``last_error`` keeps saying why it was refused."""
        refused = self._refused
        try:
            if refused is not None:
                asked: str | None = refused[0]
            else:
                asked = self._tag if self.catalog is not None else None
            fetched = self._source.fetch(asked)
            if refused is not None and (fetched.data is None or fetched.tag == refused[0]):
                # Still the refused catalog (a source may send it again despite the tag): not again.
                self.last_error = refused[1]
                outcome = "not_modified"
            elif fetched.data is None:
                outcome = "not_modified"
                self.loaded_at = self._clock()
                self.last_error = None
            else:
                self._refused = None
                outcome = self._take(fetched)
        except CatalogError as exc:
            self.last_error = str(exc)
            log.warning("catalog refresh failed: %s", exc)
            outcome = "error"
        self._observer.catalog_refresh(outcome, len(self.catalog.games) if self.catalog else None)
        return outcome

    def _take(self, fetched: Fetched) -> str:
        """Parse and check ``fetched`` and make it the catalog: ``updated``; :class:`CatalogError` (its
        tag remembered as refused) when it is malformed, empty or shrunk too much."""
        assert fetched.data is not None
        try:
            catalog = parse_catalog(fetched.data)
            self._check_size(catalog)
        except CatalogError as exc:
            if fetched.tag is not None:
                self._refused = (fetched.tag, str(exc))
            raise
        self.catalog, self._tag = catalog, fetched.tag
        self.loaded_at = self._clock()
        self.last_error = None
        return "updated"

    def _check_size(self, catalog: Catalog) -> None:
        """:class:`CatalogError` when ``catalog`` has no game to show, or far fewer than the current one."""
        games = len(catalog.games)
        if games == 0:
            raise CatalogError(f"the new catalog has no enabled game ({catalog.skipped} left out): not taken")
        current = len(self.catalog.games) if self.catalog is not None else 0
        lost = current - games
        if lost > current * self._max_shrink:
            raise CatalogError(
                f"the new catalog has {games} enabled games, {lost / current:.0%} fewer than the {current}"
                f" shown (more than {self._max_shrink:.0%} fewer is refused): not taken"
            )

    async def refresh(self) -> str:
        return await asyncio.to_thread(self.refresh_blocking)

    async def run(self, interval: float) -> None:
        """Refresh every ``interval`` seconds (every second while no catalog is loaded) until cancelled;
        the first refresh comes after the first wait."""
        while True:
            await asyncio.sleep(interval if self.catalog is not None else min(interval, 1.0))
            await self.refresh()
