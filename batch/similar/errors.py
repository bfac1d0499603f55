"""What can go wrong in ``batch similar`` (subclasses of the batch's taxonomy)."""

from __future__ import annotations

from batch.errors import BatchError


class InferenceJobFailedError(BatchError):
    """The batch inference job ended CREATE FAILED or CREATE STOPPED; ``reason`` is its ``failureReason``."""

    def __init__(self, arn: str, status: str, reason: str | None) -> None:
        self.arn = arn
        self.status = status
        self.reason = reason or "(the service gave no failureReason)"
        super().__init__(f"batch inference job {arn} is {status}: {self.reason}")


class DeadlineExceededError(BatchError):
    """A wait passed its deadline; what was waited on may still finish (re-run ``batch similar load``)."""


class OutputNotFoundError(BatchError):
    """No batch inference output where the loader was pointed (no ``*.out`` object, or no such key)."""


class LoadFailedError(BatchError):
    """DynamoDB did not take the items: unprocessed after every attempt, or a call failed for good."""
