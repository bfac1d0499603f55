"""Batch inference orchestration with a fake Personalize client: choosing the solution version, waiting with
backoff and a deadline, a failed job's reason."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from batch.errors import ConfigurationError
from batch.similar.backoff import Backoff
from batch.similar.errors import DeadlineExceededError, InferenceJobFailedError
from batch.similar.inference import JobWaiter, latest_active_version

SOLUTION = "arn:aws:personalize:us-east-1:1:solution/lobby-sims"


class Paginator:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages

    def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self.pages


class FakePersonalize:
    def __init__(self, statuses: list[dict[str, Any]] | None = None) -> None:
        self.statuses = statuses or []
        self.describes = 0
        self.solutions = [{"name": "lobby-sims", "solutionArn": SOLUTION}, {"name": "other", "solutionArn": "x"}]
        self.versions = [
            {"solutionVersionArn": f"{SOLUTION}/a", "status": "ACTIVE", "creationDateTime": datetime(2024, 5, 1)},
            {"solutionVersionArn": f"{SOLUTION}/b", "status": "ACTIVE", "creationDateTime": datetime(2024, 6, 1)},
            {
                "solutionVersionArn": f"{SOLUTION}/c",
                "status": "CREATE IN_PROGRESS",
                "creationDateTime": datetime(2024, 7, 1),
            },
        ]

    def get_paginator(self, name: str) -> Paginator:
        if name == "list_solutions":
            return Paginator([{"solutions": self.solutions}])
        assert name == "list_solution_versions"
        return Paginator([{"solutionVersions": self.versions}])

    def describe_batch_inference_job(self, batchInferenceJobArn: str) -> dict[str, Any]:
        self.describes += 1
        return {"batchInferenceJob": self.statuses[min(self.describes, len(self.statuses)) - 1]}


class Clock:
    """A fake monotonic clock that sleeping advances."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        monkeypatch.setattr("batch.similar.inference.time.monotonic", lambda: self.now)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_latest_active_version_of_the_named_solution() -> None:
    fake = FakePersonalize()
    version = latest_active_version(fake, "lobby-sims")  # type: ignore[arg-type]
    assert version.arn == f"{SOLUTION}/b"
    assert version.created == datetime(2024, 6, 1, tzinfo=UTC)
    assert version.model.key == f"2024-06-01T00:00:00.000000Z {SOLUTION}/b"
    with pytest.raises(ConfigurationError, match="no Personalize solution named 'nope'"):
        latest_active_version(fake, "nope")  # type: ignore[arg-type]
    fake.versions = fake.versions[2:]
    with pytest.raises(ConfigurationError, match="no ACTIVE version"):
        latest_active_version(fake, "lobby-sims")  # type: ignore[arg-type]


def test_waits_with_growing_jittered_polls_until_active(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    fake = FakePersonalize(
        [{"status": "CREATE PENDING"}] * 2 + [{"status": "CREATE IN_PROGRESS"}] * 6 + [{"status": "ACTIVE"}]
    )
    seen: list[str] = []
    backoff = Backoff(base=1.0, cap=30.0, floor=0.5, rng=random.Random(3))
    waiter = JobWaiter(fake, backoff=backoff, timeout=3600, on_status=lambda s, _: seen.append(s), sleep=clock.sleep)  # type: ignore[arg-type]
    job = waiter.wait("j")
    assert job["status"] == "ACTIVE"
    assert seen[0] == "CREATE PENDING" and seen[-1] == "ACTIVE" and len(seen) == 9
    assert len(clock.sleeps) == 8
    assert all(0.5 <= delay <= min(30.0, 2.0**n) for n, delay in enumerate(clock.sleeps))
    assert max(clock.sleeps[4:]) > 2.0  # the waits grow


def test_failed_job_raises_with_its_failure_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    fake = FakePersonalize(
        [{"status": "CREATE IN_PROGRESS"}, {"status": "CREATE FAILED", "failureReason": "Access denied to s3://b"}]
    )
    with pytest.raises(InferenceJobFailedError, match="CREATE FAILED: Access denied to s3://b"):
        JobWaiter(fake, backoff=Backoff(base=1.0, cap=2.0), timeout=60, sleep=clock.sleep).wait("j")  # type: ignore[arg-type]


def test_deadline_passes_while_the_job_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    fake = FakePersonalize([{"status": "CREATE IN_PROGRESS"}])
    with pytest.raises(DeadlineExceededError, match="still CREATE IN_PROGRESS after 100s"):
        JobWaiter(fake, backoff=Backoff(base=1.0, cap=60.0), timeout=100, sleep=clock.sleep).wait("j")  # type: ignore[arg-type]
    assert clock.now - 1000.0 == pytest.approx(100.0)  # the last wait is cut to the deadline
