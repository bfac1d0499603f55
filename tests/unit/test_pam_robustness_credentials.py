"""AWS credentials for the lobby's signed calls (:class:`pam.api.aws.client.CredentialSource`): botocore is
asked on a thread, one read at a time, ahead of need; a slow or failing credentials refresh (IRSA's STS
call) never stalls the event loop, and a call without valid credentials waits within its own timeout or
fails as a dependency error; static keys are read once."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import cast

import botocore.session
import pytest
from botocore.credentials import Credentials, RefreshableCredentials

from pam.api.aws.client import (
    CREDENTIALS_MAX_AGE_SECONDS,
    CREDENTIALS_RETRY_SECONDS,
    CREDENTIALS_TTL_SECONDS,
    AwsCallError,
    AwsJsonClient,
    CredentialSource,
    ServiceTarget,
)
from pam.api.deadline.guard import Outcome
from pam.api.dependencies.personalize import RUNTIME_CONTENT_TYPE, RecommendationsCampaign
from tests.unit.test_pam_lobby import FakeCampaign, FakePlayers, Observer, by_key, full, profile, recs

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def metadata(access_key: str) -> dict[str, str]:
    # Expiring within botocore's mandatory refresh window (10 minutes): every read refreshes.
    expiry = datetime.now(UTC) + timedelta(minutes=5)
    return {"access_key": access_key, "secret_key": "SK", "token": "T", "expiry_time": expiry.isoformat()}


class Sts:
    """The refresh function of role credentials (AssumeRoleWithWebIdentity): counts its calls; may be
    slow, held at a gate, or fail."""

    def __init__(self, *, delay: float = 0.0, error: Exception | None = None) -> None:
        self.delay = delay
        self.error = error
        self.gate: threading.Event | None = None
        self.calls = 0
        self.threads: set[str] = set()

    def __call__(self) -> dict[str, str]:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return metadata(f"AK{self.calls}")


class Session:
    """The part of a botocore session the source uses: the chain's credentials, counted."""

    def __init__(self, credentials: Credentials | None) -> None:
        self.credentials = credentials
        self.resolved = 0

    def get_credentials(self) -> Credentials | None:
        self.resolved += 1
        return self.credentials


def role(sts: Sts) -> Session:
    return Session(RefreshableCredentials.create_from_metadata(metadata("AK0"), sts, "assume-role-with-web-identity"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def source(session: Session, clock: Clock | None = None) -> CredentialSource:
    botocore_session = cast(botocore.session.Session, session)
    return CredentialSource(botocore_session, clock=clock) if clock else CredentialSource(botocore_session)


async def settle(credentials: CredentialSource) -> None:
    """Until the background read under way (if any) is done."""
    for _ in range(500):
        if credentials._reading is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the credentials read did not finish")


# --- the event loop is never blocked ----------------------------------------------------------------------


async def test_a_slow_credentials_refresh_neither_stalls_the_loop_nor_blows_the_lobby_deadline() -> None:
    sts = Sts(delay=0.6)
    client = AwsJsonClient(
        ServiceTarget("http://127.0.0.1:9", "us-east-1", "personalize"),
        source(role(sts)),
        content_type=RUNTIME_CONTENT_TYPE,
    )
    observer = Observer()
    lobbies = full(
        players=FakePlayers(profile("g01")),
        for_you=RecommendationsCampaign(client, "arn:campaign/for-you"),
        trending=FakeCampaign(recs("g10", "g11", "g12")),
        popular=FakeCampaign(recs("g14", "g15", "g16", "g17", "g18", "g19")),
        timeout=0.15,
        deadline=0.25,
        observer=observer,
    )
    ticks: list[float] = []

    async def every_other_request() -> None:
        for _ in range(40):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(every_other_request())
    await asyncio.sleep(0.02)
    started = time.monotonic()
    lobby = await lobbies.lobby("p-1")
    elapsed = time.monotonic() - started
    await ticker
    stall = max(b - a for a, b in itertools.pairwise(ticks))
    assert elapsed < 0.4, elapsed  # the deadline is 0.25 s; the refresh takes 0.6 s
    assert stall < 0.3, stall  # the refresh ran on a thread, not on the event loop
    section = by_key(lobby)["for_you"]
    assert (section.source, section.degraded) == ("popular-fallback", True)
    assert ("for_you", Outcome.TIMEOUT) in observer.calls  # waited for the credentials within its timeout
    assert sts.calls == 1
    assert threading.main_thread().name not in sts.threads
    client.close()


async def test_one_read_for_every_caller_waiting_and_a_timed_out_caller_leaves_it_running() -> None:
    sts = Sts()
    sts.gate = threading.Event()
    credentials = source(role(sts))
    waiters = [asyncio.create_task(credentials.wait()) for _ in range(20)]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(credentials.wait(), 0.05)  # a dependency's timeout cancels its wait
    sts.gate.set()
    answers = await asyncio.gather(*waiters)
    assert {answer.access_key for answer in answers} == {"AK1"}
    assert sts.calls == 1
    assert credentials.current() is not None


# --- cached credentials, re-read ahead of need ---------------------------------------------------------------


async def test_cached_credentials_are_used_while_a_due_read_runs_in_the_background() -> None:
    sts = Sts()
    clock = Clock()
    credentials = source(role(sts), clock)
    assert credentials.current() is None
    assert (await credentials.wait()).access_key == "AK1"
    clock.now += CREDENTIALS_TTL_SECONDS - 1
    assert credentials.current() == await credentials.wait()
    assert sts.calls == 1  # not due yet: no read
    clock.now += 1
    sts.gate = threading.Event()
    assert credentials.current() is not None and credentials.current().access_key == "AK1"  # type: ignore[union-attr]
    assert credentials._reading is not None  # due: one read started, the caller did not wait for it
    sts.gate.set()
    await settle(credentials)
    assert credentials.current() is not None and credentials.current().access_key == "AK2"  # type: ignore[union-attr]
    assert sts.calls == 2


async def test_a_failing_refresh_keeps_the_cached_credentials_until_they_are_too_old() -> None:
    sts = Sts()
    clock = Clock()
    credentials = source(role(sts), clock)
    first = await credentials.wait()
    sts.error = RuntimeError("sts unreachable")
    clock.now += CREDENTIALS_TTL_SECONDS
    assert credentials.current() == first  # the read fails in the background; nobody sees it
    await settle(credentials)
    assert credentials.current() == first
    assert sts.calls == 2
    clock.now += CREDENTIALS_RETRY_SECONDS / 2
    assert credentials.current() == first
    assert credentials._reading is None  # no new attempt before the retry delay
    clock.now = 1000.0 + CREDENTIALS_MAX_AGE_SECONDS
    assert credentials.current() is None  # too old to be trusted: calls wait (and fail) instead
    await settle(credentials)
    with pytest.raises(AwsCallError) as failed:
        await credentials.wait()
    assert failed.value.code == "CredentialsError"
    assert "sts unreachable" in str(failed.value)


# --- failures are dependency errors, retried after a delay ---------------------------------------------


async def test_without_credentials_a_failed_read_fails_the_calls_until_the_retry_delay_is_over() -> None:
    sts = Sts(error=RuntimeError("AccessDenied"))
    clock = Clock()
    credentials = source(role(sts), clock)
    for _ in range(3):
        with pytest.raises(AwsCallError, match="AccessDenied"):
            await credentials.wait()
    assert sts.calls == 1  # one read, then failing at once during the retry delay
    clock.now += CREDENTIALS_RETRY_SECONDS
    sts.error = None
    assert (await credentials.wait()).access_key == "AK2"


async def test_a_failing_refresh_is_a_dependency_error_and_the_section_falls_back() -> None:
    client = AwsJsonClient(
        ServiceTarget("http://127.0.0.1:9", "us-east-1", "personalize"),
        source(role(Sts(error=RuntimeError("InvalidIdentityToken")))),
        content_type=RUNTIME_CONTENT_TYPE,
    )
    observer = Observer()
    lobby = await full(
        for_you=RecommendationsCampaign(client, "arn:campaign/for-you"), observer=observer, timeout=2.0, deadline=3.0
    ).lobby("p-1")
    assert by_key(lobby)["for_you"].source == "popular-fallback"
    assert ("for_you", Outcome.ERROR) in observer.calls
    client.close()


async def test_no_credentials_at_all_is_a_no_credentials_error() -> None:
    session = Session(None)
    credentials = source(session)
    with pytest.raises(AwsCallError) as failed:
        await credentials.wait()
    assert failed.value.code == "NoCredentials"
    assert session.resolved == 1


# --- static keys cost nothing ------------------------------------------------------------------------------


async def test_static_credentials_are_read_once_and_then_cost_no_clock_read_and_no_thread() -> None:
    session = Session(Credentials("AKID", "SECRET"))
    clock = Clock()
    credentials = source(session, clock)
    await credentials.prefetch()
    reads = clock.reads
    clock.now += 10 * CREDENTIALS_MAX_AGE_SECONDS
    for _ in range(100):
        assert credentials.current() == ("AKID", "SECRET", None)
    assert clock.reads == reads
    assert credentials._reading is None
    assert session.resolved == 1
