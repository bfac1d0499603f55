"""The API's JSON shapes (camelCase), as pydantic models: the OpenAPI description is generated from them
and the tests validate answers against them. The lobby itself is rendered by :func:`pam.api.lobby.render_lobby`
without going through these models (it is on the hot path)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

#: A player id: letters, digits and ``_ . : @ -``, starting with a letter or digit, at most 64 characters.
#: As JSON Schema (ECMA-262) reads it, in the OpenAPI description; in Python, check with :func:`is_player_id`
#: (``re.match`` with this ``$`` would accept a trailing newline).
PLAYER_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$"
PLAYER_ID_MAX_LENGTH: Final = 64
_PLAYER_ID: Final = re.compile(PLAYER_ID_PATTERN)


def is_player_id(value: str) -> bool:
    """Whether all of ``value`` is a player id (:data:`PLAYER_ID_PATTERN`, nothing after it)."""
    return _PLAYER_ID.fullmatch(value) is not None


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Game(ApiModel):
    """A game of the catalog (more catalog columns may follow, camelCase)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    game_id: str
    name: str
    provider: str
    categories: list[str]
    volatility: str | None = None
    rtp: float | None = None
    release_date: str | None = None


class LobbySection(ApiModel):
    key: Literal["because_you_played", "for_you", "trending", "popular"]
    title: str
    source: str = Field(description="where the games came from, e.g. personalize-for-you, cache-popular")
    recommendation_id: str | None = Field(description="Personalize's id, to send back in clickstream events")
    degraded: bool = Field(description="a fallback filled this section")
    games: list[Game]


class LobbyResponse(ApiModel):
    player_id: str
    generated_at: datetime
    last_played_game_id: str | None
    degraded: bool = Field(description="some section used a fallback, or the player could not be read")
    sections: list[LobbySection]


class Problem(ApiModel):
    """An error (RFC 9457 problem details)."""

    type: str
    title: str
    status: int
    detail: str | None = None


class Health(ApiModel):
    status: Literal["ok", "ready"]
    catalog_games: int | None = None


class DependencyState(ApiModel):
    name: str
    state: Literal["closed", "open", "half_open"]
    opened: int = Field(description="how often the breaker opened")
    retry_in_seconds: float
    timeout_ms: float


class DependenciesResponse(ApiModel):
    dependencies: list[DependencyState]


class CatalogRefreshResponse(ApiModel):
    outcome: Literal["updated", "not_modified", "error"]
    games: int | None
    generated_at: str | None
