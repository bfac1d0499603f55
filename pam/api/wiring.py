"""Builds the real services from the settings: the database, the AWS clients, breakers and timeouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

from pam.api.app import AppServices
from pam.api.auth import TokenVerifier
from pam.api.aws.client import AwsJsonClient, CredentialSource, resolve_target
from pam.api.catalog import CatalogSource, CatalogStore, FileCatalogSource, S3CatalogSource
from pam.api.deadline.breaker import BreakerPolicy, CircuitBreaker
from pam.api.deadline.guard import GuardedDependency
from pam.api.dependencies.personalize import RUNTIME_CONTENT_TYPE, RecommendationsCampaign
from pam.api.dependencies.players import PlayerDirectory
from pam.api.dependencies.similar import DYNAMODB_CONTENT_TYPE, SimilarGamesTable
from pam.api.lobby import DATABASE, FOR_YOU, POPULAR, SIMILAR, TRENDING, Campaign, LobbyConfig, LobbyService
from pam.api.metrics import LobbyMetrics
from pam.db.engine import create_platform_engine
from pam.settings import PamSettings, personalize_arns

#: The catalog is read off the hot path: a few seconds and one retry are fine.
CATALOG_CLIENT_CONFIG = Config(
    connect_timeout=2, read_timeout=10, retries={"total_max_attempts": 2, "mode": "standard"}
)


def catalog_source(settings: PamSettings) -> CatalogSource:
    url = settings.catalog_url
    if url.startswith("s3://"):
        bucket, _, key = url[5:].partition("/")
        return S3CatalogSource(boto3.client("s3", config=CATALOG_CLIENT_CONFIG), bucket, key)
    return FileCatalogSource(Path(url))


def build_services(settings: PamSettings, *, metrics: LobbyMetrics | None = None) -> AppServices:
    """Everything ``create_app`` needs, from ``settings`` and the SDK's configuration.

    Raises :class:`~pam.settings.SettingsError` for a wrong key, outputs file or endpoint."""
    metrics = metrics or LobbyMetrics()
    verifier = TokenVerifier(settings)
    arns = personalize_arns(settings)
    policy = BreakerPolicy(
        failures=settings.breaker_failures,
        failure_rate=settings.breaker_failure_rate,
        window=settings.breaker_window,
        min_calls=settings.breaker_min_calls,
        cooldown=settings.breaker_cooldown_seconds,
    )
    timeouts = {
        DATABASE: settings.database_timeout_ms,
        SIMILAR: settings.similar_timeout_ms,
        FOR_YOU: settings.personalize_timeout_ms,
        TRENDING: settings.personalize_timeout_ms,
        POPULAR: settings.personalize_timeout_ms,
    }
    guards = {
        name: GuardedDependency(
            name, CircuitBreaker(name, policy, on_change=metrics.breaker_changed), timeout_ms / 1000, metrics
        )
        for name, timeout_ms in timeouts.items()
    }
    for name, guard in guards.items():
        metrics.breaker_changed(name, guard.breaker.state)

    session = botocore.session.get_session()
    credentials = CredentialSource(session)
    connect_timeout = max(settings.similar_timeout_ms, settings.personalize_timeout_ms) / 1000
    dynamodb = AwsJsonClient(
        resolve_target(session, "dynamodb"),
        credentials,
        content_type=DYNAMODB_CONTENT_TYPE,
        max_connections=settings.aws_max_connections,
        connect_timeout=connect_timeout,
    )
    closers: list[Any] = [dynamodb.close]
    campaigns: dict[str, Campaign | None] = {FOR_YOU: None, TRENDING: None, POPULAR: None}
    if arns.popular or arns.trending or arns.for_you:
        runtime = AwsJsonClient(
            resolve_target(session, "personalize-runtime"),
            credentials,
            content_type=RUNTIME_CONTENT_TYPE,
            max_connections=settings.aws_max_connections,
            connect_timeout=connect_timeout,
        )
        closers.append(runtime.close)
        if arns.for_you:
            campaigns[FOR_YOU] = RecommendationsCampaign(runtime, arns.for_you, filter_arn=arns.unavailable_filter)
        if arns.trending:
            campaigns[TRENDING] = RecommendationsCampaign(runtime, arns.trending)
        if arns.popular:
            campaigns[POPULAR] = RecommendationsCampaign(runtime, arns.popular)

    url = settings.database_url.get_secret_value()
    engine_options: dict[str, Any] = {}
    threads = settings.database_threads
    if url.startswith("sqlite"):
        # A local file: a lookup takes tens of microseconds, less than a hand-over to a thread.
        threads = 0
    else:
        engine_options = {"pool_size": settings.database_threads, "max_overflow": 0}
    players = PlayerDirectory(create_platform_engine(url, **engine_options), threads=threads)
    closers.append(players.close)

    store = CatalogStore(catalog_source(settings), metrics, max_shrink=settings.catalog_max_shrink)
    lobby = LobbyService(
        catalog=lambda: store.catalog,
        players=players,
        similar=SimilarGamesTable(dynamodb, settings.similar_table, settings.similar_key),
        campaigns=campaigns,
        guards=guards,
        config=LobbyConfig(
            section_size=settings.section_size,
            candidates=settings.candidates,
            popular_candidates=settings.popular_candidates,
            deadline=settings.request_deadline_ms / 1000,
            sequential=settings.dependency_calls == "sequential",
            fallback_user_id=settings.fallback_user_id,
        ),
        observer=metrics,
    )
    return AppServices(
        lobby=lobby,
        catalog=store,
        verifier=verifier,
        metrics=metrics,
        catalog_refresh_seconds=settings.catalog_refresh_seconds,
        fallback_refresh_seconds=settings.fallback_refresh_seconds,
        closers=closers,
        warmups=[credentials.prefetch],
    )
