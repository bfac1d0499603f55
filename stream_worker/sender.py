"""Step 4: send PutEvents batches to the Personalize event tracker.

A dispatcher thread waits for a call slot from the :class:`AdaptiveLimiter` first, and only then
takes the next ready batch from the :class:`SessionBatcher`: while every slot is busy (or the rate
limit holds), groups keep filling. Calls run on a thread pool. Throttling, 5xx and connection
errors are retried with exponential backoff and jitter, without limit: an outage holds the
checkpoint back, it never loses an event. A batch rejected as invalid input is bisected until
the bad event is alone; only that one is rejected. A fatal configuration error (unknown tracker,
access denied) stops the sender and is reported through ``on_fatal``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
)

from stream_worker.batcher import Batch, PendingEvent, SessionBatcher
from stream_worker.errors import FatalConfigurationError
from stream_worker.limiter import AdaptiveLimiter
from stream_worker.metrics import CallOutcome, Telemetry
from stream_worker.retry import Backoff

if TYPE_CHECKING:
    from mypy_boto3_personalize_events import PersonalizeEventsClient

log = logging.getLogger(__name__)

THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
INVALID_INPUT_CODES = frozenset({"InvalidInputException", "ValidationException", "SerializationException"})
#: Codes that mean a request may succeed if simply tried again (credentials refresh, for example).
TRANSIENT_CODES = frozenset({"ExpiredTokenException", "RequestTimeout", "RequestTimeoutException", "InternalFailure"})


class Verdict(Enum):
    OK = "ok"
    THROTTLED = "throttled"
    RETRY = "retryable_error"
    INVALID = "invalid_input"
    FATAL = "fatal"


def classify(error: BaseException) -> tuple[Verdict, str]:
    """What to do about a failed PutEvents call, and the error code to report."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", "Unknown"))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in THROTTLING_CODES or status == 429:
            return Verdict.THROTTLED, code
        if code in INVALID_INPUT_CODES:
            return Verdict.INVALID, code
        if status >= 500 or code in TRANSIENT_CODES:
            return Verdict.RETRY, code
        return Verdict.FATAL, code
    if isinstance(error, ParamValidationError):
        return Verdict.INVALID, "ParamValidationError"
    if isinstance(error, NoCredentialsError):
        return Verdict.FATAL, "NoCredentialsError"
    if isinstance(error, (ConnectionError, HTTPClientError)):
        return Verdict.RETRY, type(error).__name__
    if isinstance(error, BotoCoreError):
        return Verdict.RETRY, type(error).__name__
    return Verdict.FATAL, type(error).__name__


class PutEventsSender:
    """Delivers batches asynchronously; every batch ends in exactly one of the three callbacks.

    ``on_delivered(batch)`` after Personalize accepted it; ``on_rejected(event, message)`` for an
    event Personalize refuses on its own; ``on_fatal(error)`` once, when the configuration is
    wrong. After :meth:`stop` (or a fatal error) unfinished batches are abandoned, unacknowledged.
    """

    def __init__(
        self,
        client: PersonalizeEventsClient,
        tracking_id: str,
        batches: SessionBatcher,
        *,
        limiter: AdaptiveLimiter,
        backoff: Backoff,
        telemetry: Telemetry,
        on_delivered: Callable[[Batch], None],
        on_rejected: Callable[[PendingEvent, str], None],
        on_fatal: Callable[[FatalConfigurationError], None],
        max_workers: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._tracking_id = tracking_id
        self._batches = batches
        self._limiter = limiter
        self._backoff = backoff
        self._telemetry = telemetry
        self._on_delivered = on_delivered
        self._on_rejected = on_rejected
        self._on_fatal = on_fatal
        self._clock = clock
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="put-events")
        # A batch is handed to the pool only when a thread can run it at once: a batch queued
        # behind busy threads would hold a call slot that the running (retrying) ones need.
        self._threads = threading.BoundedSemaphore(max_workers)
        self._fatal_reported = False
        self._fatal_lock = threading.Lock()
        self._dispatcher = threading.Thread(target=self._dispatch, name="put-events-dispatch", daemon=True)
        self._dispatcher.start()

    @property
    def limiter(self) -> AdaptiveLimiter:
        return self._limiter

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _dispatch(self) -> None:
        """Batch ready, then slot, then take: a batch leaves the batcher only when its call can
        start, so it keeps filling while every slot is busy. Never holds a slot while waiting for
        a batch (retries need slots too)."""
        try:
            while not self._stop.is_set():
                if not self._batches.wait_ready(0.25):
                    continue
                if not self._threads.acquire(timeout=0.25):
                    continue
                if not self._limiter.acquire(self._stop):
                    self._threads.release()
                    return
                batch = self._batches.take(timeout=0)
                if batch is None:  # only the dispatcher takes, so this is not expected
                    self._limiter.release()
                    self._threads.release()
                    continue
                self._pool.submit(self._guarded, batch)
        except Exception as exc:
            log.exception("unexpected error in the PutEvents dispatcher")
            self._fatal(FatalConfigurationError(f"unexpected dispatcher error: {exc!r}"), "InternalError")

    def stop(self) -> None:
        """Stop sending: calls in progress finish, nothing new starts, retries end."""
        self._stop.set()
        self._limiter.wake()
        self._batches.wake()

    def close(self) -> None:
        """Stop and wait for the dispatcher and the pool's threads to end."""
        self.stop()
        self._dispatcher.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _guarded(self, batch: Batch) -> None:
        """Deliver a batch whose first call slot the dispatcher already holds."""
        try:
            self._deliver(batch, holding_slot=True)
        except Exception as exc:  # a bug must not leave units pending forever
            log.exception("unexpected error in the PutEvents sender")
            self._fatal(FatalConfigurationError(f"unexpected sender error: {exc!r}"), "InternalError")
        finally:
            self._threads.release()

    def _request(self, batch: Batch) -> dict[str, Any]:
        first = batch[0].event
        request: dict[str, Any] = {
            "trackingId": self._tracking_id,
            "sessionId": first.session_id,
            "eventList": [item.event.to_api() for item in batch],
        }
        if first.user_id is not None:
            request["userId"] = first.user_id
        return request

    def _deliver(self, batch: Batch, *, holding_slot: bool = False) -> None:
        attempt = 0
        while True:
            if holding_slot:
                holding_slot = False
            elif not self._limiter.acquire(self._stop):
                return
            started = self._clock()
            try:
                self._client.put_events(**self._request(batch))
            except Exception as exc:
                verdict, code = classify(exc)
                message = str(exc)
            else:
                self._limiter.release(succeeded=True)
                self._telemetry.call("ok", self._clock() - started, len(batch))
                self._on_delivered(batch)
                return
            elapsed = self._clock() - started
            self._limiter.release(throttled=verdict is Verdict.THROTTLED)
            outcome: CallOutcome = verdict.value
            self._telemetry.call(outcome, elapsed, len(batch))
            self._telemetry.limits(self._limiter.limit, self._limiter.rate)
            if verdict is Verdict.INVALID:
                self._bisect(batch, message)
                return
            if verdict is Verdict.FATAL:
                self._fatal(FatalConfigurationError(f"PutEvents failed with {code}: {message}"), code)
                return
            attempt += 1
            if self._stop.wait(self._backoff.delay(attempt)):
                return
            self._telemetry.retried()
            if attempt in (1, 10) or attempt % 50 == 0:
                log.warning(
                    "PutEvents retrying",
                    extra={"code": code, "attempt": attempt, "events": len(batch)},
                )

    def _bisect(self, batch: Batch, message: str) -> None:
        if len(batch) == 1:
            self._on_rejected(batch[0], message)
            return
        middle = len(batch) // 2
        self._deliver(batch[:middle])
        if not self._stop.is_set():
            self._deliver(batch[middle:])

    def _fatal(self, error: FatalConfigurationError, code: str) -> None:
        self.stop()
        with self._fatal_lock:
            if self._fatal_reported:
                return
            self._fatal_reported = True
        self._telemetry.fatal(code)
        log.critical("fatal configuration error: stopping delivery", extra={"code": code})
        self._on_fatal(error)
