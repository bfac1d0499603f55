"""The lobby service's Prometheus metrics, in a registry of its own (one per app)."""

from __future__ import annotations

from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pam.api.deadline.breaker import STATE_VALUES, BreakerState
from pam.api.deadline.guard import Outcome

MetricName = Literal[
    "pam_http_request_duration_seconds",  # request latency by route template, method and status
    "pam_dependency_duration_seconds",  # dependency call latency by dependency and outcome
    "pam_dependency_calls_total",  # dependency calls by dependency and outcome (ok/timeout/error/breaker_open)
    "pam_lobby_fallbacks_total",  # sections served by a fallback, by section and source
    "pam_breaker_state",  # 0 closed, 1 half-open, 2 open, by dependency
    "pam_breaker_opened_total",  # how often a breaker opened
    "pam_catalog_lookups_total",  # catalog cache lookups of recommended games: hit / miss (unknown game)
    "pam_catalog_refreshes_total",  # catalog refreshes: updated / not_modified / error
    "pam_catalog_games",  # games in the catalog served
]

REQUEST_BUCKETS: Final = (0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)
DEPENDENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25)


class LobbyMetrics:
    """Every metric of one app; labelled children are cached so the hot path only observes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Histogram(
            "pam_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["route", "method", "status"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.dependency_seconds = Histogram(
            "pam_dependency_duration_seconds",
            "Dependency call latency by dependency and outcome.",
            ["dependency", "outcome"],
            buckets=DEPENDENCY_BUCKETS,
            registry=r,
        )
        self.dependency_calls = Counter(
            "pam_dependency_calls", "Dependency calls by outcome.", ["dependency", "outcome"], registry=r
        )
        self.fallbacks = Counter(
            "pam_lobby_fallbacks", "Lobby sections served by a fallback.", ["section", "source"], registry=r
        )
        self.breaker_state = Gauge(
            "pam_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", ["dependency"], registry=r
        )
        self.breaker_opened = Counter("pam_breaker_opened", "Breaker openings.", ["dependency"], registry=r)
        self.catalog_lookups = Counter(
            "pam_catalog_lookups", "Catalog lookups of recommended games.", ["outcome"], registry=r
        )
        self.catalog_refreshes = Counter(
            "pam_catalog_refreshes", "Catalog refreshes by outcome.", ["outcome"], registry=r
        )
        self.catalog_games = Gauge("pam_catalog_games", "Games in the catalog served.", registry=r)
        self._hits = self.catalog_lookups.labels("hit")
        self._misses = self.catalog_lookups.labels("miss")
        self._request_children: dict[tuple[str, str, int], Histogram] = {}
        self._dependency_children: dict[tuple[str, Outcome], tuple[Histogram, Counter]] = {}

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(route, method, str(status))
        child.observe(seconds)

    def dependency_call(self, name: str, outcome: Outcome, seconds: float) -> None:
        key = (name, outcome)
        children = self._dependency_children.get(key)
        if children is None:
            children = self._dependency_children[key] = (
                self.dependency_seconds.labels(name, outcome.value),
                self.dependency_calls.labels(name, outcome.value),
            )
        if outcome is not Outcome.BREAKER_OPEN:
            children[0].observe(seconds)
        children[1].inc()

    def fallback(self, section: str, source: str) -> None:
        self.fallbacks.labels(section, source).inc()

    def breaker_changed(self, name: str, state: BreakerState) -> None:
        self.breaker_state.labels(name).set(STATE_VALUES[state])
        if state is BreakerState.OPEN:
            self.breaker_opened.labels(name).inc()

    def catalog_lookups_done(self, hits: int, misses: int) -> None:
        if hits:
            self._hits.inc(hits)
        if misses:
            self._misses.inc(misses)

    def catalog_refresh(self, outcome: str, games: int | None) -> None:
        self.catalog_refreshes.labels(outcome).inc()
        if games is not None:
            self.catalog_games.set(games)
