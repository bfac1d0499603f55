"""Builds a shard's pipeline from settings: the one place where the steps are composed."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from clickstream.mapping import EventMapping
from clickstream.normalize import Normalizer
from stream_worker import aws
from stream_worker.batcher import Batch, PendingEvent, SessionBatcher
from stream_worker.dead_letter import open_dead_letter_store
from stream_worker.errors import FatalConfigurationError
from stream_worker.limiter import AdaptiveLimiter
from stream_worker.metrics import Telemetry, WorkerMetrics
from stream_worker.pipeline import ShardPipeline
from stream_worker.retry import Backoff
from stream_worker.sender import PutEventsSender
from stream_worker.settings import WorkerSettings

if TYPE_CHECKING:
    from mypy_boto3_personalize_events import PersonalizeEventsClient


def build_pipeline(
    settings: WorkerSettings,
    shard_id: str,
    metrics: WorkerMetrics,
    on_fatal: Callable[[FatalConfigurationError], None],
    *,
    client: PersonalizeEventsClient | None = None,
    mapping: EventMapping | None = None,
) -> ShardPipeline:
    """A ready pipeline for ``shard_id``; raises FatalConfigurationError on a bad setting."""
    tracking_id = settings.require_tracking_id()
    try:
        mapping = mapping or (
            EventMapping.load(settings.mapping_file) if settings.mapping_file else EventMapping.default()
        )
    except ValueError as exc:
        raise FatalConfigurationError(f"STREAM_WORKER_MAPPING_FILE: {exc}") from exc
    events_client = client or aws.personalize_events_client(
        settings.region, max_connections=settings.max_concurrency, timeout=settings.call_timeout_seconds
    )
    try:
        dead_letters = open_dead_letter_store(
            settings.dead_letter_url,
            shard_id,
            lambda: aws.s3_client(settings.region),
            batch_size=settings.dead_letter_batch_size,
            max_age=settings.dead_letter_max_age_seconds,
        )
    except ValueError as exc:
        raise FatalConfigurationError(f"STREAM_WORKER_DEAD_LETTER_URL: {exc}") from exc
    telemetry = Telemetry(metrics, shard_id)
    limiter = AdaptiveLimiter(settings.initial_concurrency, settings.max_concurrency)
    backoff = Backoff(settings.retry_base_seconds, settings.retry_cap_seconds, random.Random())
    telemetry.limits(limiter.limit, limiter.rate)

    def make_sender(
        batches: SessionBatcher,
        on_delivered: Callable[[Batch], None],
        on_rejected: Callable[[PendingEvent, str], None],
        fatal: Callable[[FatalConfigurationError], None],
    ) -> PutEventsSender:
        return PutEventsSender(
            events_client,
            tracking_id,
            batches,
            limiter=limiter,
            backoff=backoff,
            telemetry=telemetry,
            on_delivered=on_delivered,
            on_rejected=on_rejected,
            on_fatal=fatal,
            max_workers=settings.max_concurrency,
        )

    return ShardPipeline(
        shard_id,
        Normalizer(mapping, memory=settings.dedup_memory),
        make_sender,
        dead_letters,
        telemetry,
        linger=settings.linger_seconds,
        backlog_linger=settings.backlog_linger_seconds,
        high_water=settings.high_water_events,
        high_water_bytes=settings.high_water_bytes,
        on_fatal=on_fatal,
    )
