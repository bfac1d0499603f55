"""What can go wrong applying the Personalize config (subclasses of the batch's taxonomy)."""

from __future__ import annotations

from batch.errors import BatchError


class PersonalizeError(BatchError):
    """A Personalize call failed in a way a re-run will not fix by itself (exit status 3)."""


class ResourceFailedError(PersonalizeError):
    """A resource ended in a failed status; ``reason`` is the service's ``failureReason``."""

    def __init__(self, label: str, arn: str, status: str, reason: str | None) -> None:
        self.label = label
        self.arn = arn
        self.status = status
        self.reason = reason or "(the service gave no failureReason)"
        super().__init__(f"{label} is {status}: {self.reason}\n  ({arn})")


class DeadlineExceededError(PersonalizeError):
    """The run's deadline passed while resources were still in progress (they go on; re-run to resume)."""
