"""How the generated clickstream behaves: session rates, event mix, and how clients format events."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final


def _fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, not {value}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {value}")


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """Knobs of the synthetic clickstream; validated on construction (ValueError names the knob).

    Client formatting is decided per session, as a real app version would: ``camel_case_fraction`` of
    sessions send camelCase keys, and each session sends timestamps as ISO-8601 strings, epoch seconds
    or epoch milliseconds with the relative weights of ``timestamp_mix``.
    """

    #: Average session starts per hour (modulated by time of day, see ``diurnal_amplitude``).
    sessions_per_hour: float = 720.0
    #: 0 = flat; 0.5 = the evening peak has three times the sessions of the early-morning low.
    diurnal_amplitude: float = 0.5
    #: Sessions played without logging in: no ``player_id`` on any of their events.
    anonymous_fraction: float = 0.08
    camel_case_fraction: float = 0.2
    #: Relative weights of (ISO-8601 string, epoch seconds, epoch milliseconds) timestamps.
    timestamp_mix: tuple[float, float, float] = (0.6, 0.15, 0.25)
    #: Events that carry a client ``event_id``.
    event_id_fraction: float = 0.95
    #: Events the client sends twice (a retry: same ``event_id``, same content).
    duplicate_fraction: float = 0.002
    games_per_session_mean: float = 2.5
    max_games_per_session: int = 8
    rounds_per_game_mean: float = 30.0
    max_rounds_per_game: int = 400
    search_probability: float = 0.2
    deposit_probability: float = 0.15
    favorite_probability: float = 0.06
    #: After a game, the chance that the player removes one of the session's favourites.
    unfavorite_probability: float = 0.1
    #: Clicks on a recommendation row that carry the row's ``recommendation_id``.
    recommendation_fraction: float = 0.7
    heartbeat_seconds: float = 60.0

    def __post_init__(self) -> None:
        for name in (
            "anonymous_fraction",
            "camel_case_fraction",
            "event_id_fraction",
            "duplicate_fraction",
            "search_probability",
            "deposit_probability",
            "favorite_probability",
            "unfavorite_probability",
            "recommendation_fraction",
            "diurnal_amplitude",
        ):
            _fraction(name, getattr(self, name))
        for name in (
            "sessions_per_hour",
            "games_per_session_mean",
            "rounds_per_game_mean",
            "heartbeat_seconds",
        ):
            _positive(name, getattr(self, name))
        if len(self.timestamp_mix) != 3 or min(self.timestamp_mix) < 0 or sum(self.timestamp_mix) <= 0:
            raise ValueError("timestamp_mix must be three non-negative weights, not all zero")
        if self.max_games_per_session < 1 or self.max_rounds_per_game < 1:
            raise ValueError("max_games_per_session and max_rounds_per_game must be at least 1")

    def with_(self, **changes: object) -> GeneratorConfig:
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)  # type: ignore[arg-type]


#: Realistic defaults: long play sessions, mostly rounds and heartbeats.
DEFAULT_CONFIG: Final = GeneratorConfig()
#: Short sessions with more lobby activity per event: small captures that still show every event type.
SHORT_SESSIONS: Final = GeneratorConfig(
    rounds_per_game_mean=6.0,
    max_rounds_per_game=30,
    duplicate_fraction=0.01,
    search_probability=0.3,
    favorite_probability=0.2,
)
