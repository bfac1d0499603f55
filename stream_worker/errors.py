"""The stream worker's error taxonomy: retryable, fatal configuration, bad input."""

from __future__ import annotations


class StreamWorkerError(Exception):
    """Base of the stream worker's errors."""


class RetryableError(StreamWorkerError):
    """A transient failure (throttling, 5xx, connection): the same call may succeed later."""


class FatalConfigurationError(StreamWorkerError):
    """The worker cannot deliver anything as configured (unknown tracker, access denied, bad settings).

    Nothing is checkpointed past it: the processor stops and reports unhealthy.
    """


class BadInputError(StreamWorkerError):
    """One event or record can never be delivered; it goes to the dead-letter store with the reason."""
