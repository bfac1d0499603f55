"""Waiting for Personalize resources to become ACTIVE (botocore has no Personalize waiters).

:class:`StatusWaiter` polls a group of resources together: one Describe each per round, rounds spaced
by :class:`Backoff` (exponential, with jitter so parallel runs do not poll in step), until each is
ACTIVE, has failed, or the run's :class:`Deadline` passes. Failures are collected and reported together
with the service's ``failureReason`` once nothing is left in progress.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from batch.personalize.errors import DeadlineExceededError, PersonalizeError, ResourceFailedError

ACTIVE: Final = "ACTIVE"


@dataclass(frozen=True, slots=True)
class Observed:
    """A resource's status (or its update's) as one Describe saw it."""

    status: str
    failure_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    @property
    def failed(self) -> bool:
        """Ended without becoming ACTIVE: ``CREATE FAILED``, ``UPDATE FAILED``, ``CREATE STOPPED``, or
        being deleted."""
        return self.status.endswith(("FAILED", "STOPPED")) or self.status.startswith("DELETE")

    @property
    def settled(self) -> bool:
        return self.active or self.failed


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before poll round ``n`` (0-based): ``min(maximum, initial * factor**n)``, scaled by a random
    factor in ``[1 - jitter, 1]``."""

    initial: float = 2.0
    maximum: float = 60.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"invalid backoff {self}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return ceiling * (1.0 - self.jitter * rng.random())


class Deadline:
    """A point in time a whole run must finish by (monotonic clock)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._ends = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._ends - self._clock())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0


@dataclass(frozen=True, slots=True)
class Pending:
    """One resource to wait for: ``describe`` returns its current status."""

    label: str
    arn: str
    describe: Callable[[], Observed]


#: Called after each Describe with what it saw (progress display).
PollCallback = Callable[[Pending, Observed], None]


class StatusWaiter:
    """Polls resources until each is ACTIVE; raises :class:`ResourceFailedError` (or a
    :class:`PersonalizeError` listing several) for the failed ones, :class:`DeadlineExceededError` when the
    deadline passes first. Resources still in progress at the deadline go on in the service."""

    def __init__(
        self,
        backoff: Backoff,
        deadline: Deadline,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        on_poll: PollCallback | None = None,
    ) -> None:
        self.backoff = backoff
        self.deadline = deadline
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.on_poll = on_poll
        #: Describe calls made (for tests and the summary).
        self.polls = 0
        #: The last status seen of every resource waited on, by ARN (also after a failure or the deadline).
        self.seen: dict[str, Observed] = {}

    def wait(self, resources: Sequence[Pending]) -> Mapping[str, Observed]:
        """The final status of each resource by ARN, all ACTIVE."""
        waiting = list(resources)
        final: dict[str, Observed] = {}
        last: dict[str, Observed] = {}
        failures: list[ResourceFailedError] = []
        attempt = 0
        while True:
            still: list[Pending] = []
            for pending in waiting:
                observed = pending.describe()
                self.polls += 1
                last[pending.arn] = self.seen[pending.arn] = observed
                if self.on_poll is not None:
                    self.on_poll(pending, observed)
                if observed.active:
                    final[pending.arn] = observed
                elif observed.failed:
                    final[pending.arn] = observed
                    failures.append(
                        ResourceFailedError(pending.label, pending.arn, observed.status, observed.failure_reason)
                    )
                else:
                    still.append(pending)
            waiting = still
            if not waiting:
                break
            remaining = self.deadline.remaining()
            if remaining <= 0:
                names = ", ".join(f"{p.label} ({last[p.arn].status})" for p in waiting)
                raise DeadlineExceededError(
                    f"still in progress after the {self.deadline.seconds:g} s deadline: {names}; they go on in "
                    "Personalize, and running the command again waits for them (BATCH_PERSONALIZE_WAIT_TIMEOUT_SECONDS)"
                )
            self._sleep(min(self.backoff.delay(attempt, self._rng), remaining))
            attempt += 1
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise PersonalizeError("\n".join(str(failure) for failure in failures))
        return final
