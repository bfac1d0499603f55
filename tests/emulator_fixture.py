"""Pytest fixtures for the Personalize emulator.

Register with ``pytest_plugins = ["tests.emulator_fixture"]`` (or ``-p tests.emulator_fixture``).

- ``personalize_emulator_server`` (session): one emulator subprocess for the whole run.
- ``personalize_emulator`` (function): the same emulator, reset before the test (no events, stats, faults,
  or trackers but the start-up ones).
- ``personalize_events``: a boto3 ``personalize-events`` client on it, retries disabled.
- ``personalize_emulator_env``: the emulator, with ``AWS_ENDPOINT_URL_PERSONALIZE*`` and dummy
  credentials/region set in the environment, so unmodified code finds it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

from devstack.personalize.client import EmulatorProcess, run_emulator

if TYPE_CHECKING:
    from mypy_boto3_personalize_events import PersonalizeEventsClient

EMULATOR_REGION = "us-east-1"


def make_events_client(
    emulator: EmulatorProcess, *, total_attempts: int = 1, validate: bool = True, **config: Any
) -> PersonalizeEventsClient:
    """A boto3 personalize-events client on ``emulator``.

    ``total_attempts`` counts the first try (1: retries disabled); ``validate=False`` skips botocore's
    own parameter checks, so the server alone judges the request.
    """
    return boto3.client(
        "personalize-events",
        endpoint_url=emulator.url,
        region_name=EMULATOR_REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(
            retries={"total_max_attempts": total_attempts, "mode": "standard"},
            parameter_validation=validate,
            **config,
        ),
    )


@pytest.fixture(scope="session")
def personalize_emulator_server() -> Iterator[EmulatorProcess]:
    """One emulator subprocess (free port, in memory, seeded faults) for the whole session."""
    with run_emulator(seed=20240601) as emulator:
        yield emulator


@pytest.fixture
def personalize_emulator(personalize_emulator_server: EmulatorProcess) -> EmulatorProcess:
    """The session's emulator, reset: no events, stats or faults, only the start-up trackers."""
    if personalize_emulator_server.process.poll() is not None:
        pytest.fail(f"the Personalize emulator died:\n{personalize_emulator_server.logs()[-4000:]}")
    personalize_emulator_server.reset()
    return personalize_emulator_server


@pytest.fixture
def personalize_events(personalize_emulator: EmulatorProcess) -> PersonalizeEventsClient:
    """A boto3 personalize-events client on the emulator, with retries disabled."""
    return make_events_client(personalize_emulator)


@pytest.fixture
def personalize_emulator_env(personalize_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> EmulatorProcess:
    """The emulator, with the SDK's endpoint variables and dummy credentials set for the test."""
    for name, value in personalize_emulator.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", EMULATOR_REGION)
    return personalize_emulator
