"""The model version stamped on every row: what made it (a solution version ARN or a job name) and when.

Rows compare by :attr:`ModelVersion.key`, ``"<creation time, UTC, fixed width> <source>"``: its text order
is the creation order (the source breaks ties), in Python as in a DynamoDB condition expression.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

_KEY_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True, slots=True, order=True)
class ModelVersion:
    """Creation time (timezone-aware) and source; ordered by time, then source."""

    created: datetime
    source: str

    def __post_init__(self) -> None:
        if self.created.tzinfo is None:
            raise ValueError("a model version's creation time needs a timezone")
        if not self.source or any(ch.isspace() for ch in self.source) or "@" in self.source:
            raise ValueError(f"a model version's source has no spaces or '@': {self.source!r}")

    @property
    def key(self) -> str:
        """The text stored as ``modelVersion``: sorts as the versions do."""
        return f"{self.created.astimezone(UTC).strftime(_KEY_TIME)} {self.source}"

    @property
    def created_iso(self) -> str:
        return self.created.astimezone(UTC).isoformat()

    def __str__(self) -> str:
        return self.key

    @classmethod
    def parse(cls, text: str) -> ModelVersion:
        """``SOURCE@ISO-TIME`` (as given on the command line) or a stored key ``ISO-TIME SOURCE``.

        Raises ValueError with the expected forms.
        """
        text = text.strip()
        if "@" in text:
            source, _, when = text.rpartition("@")
        elif " " in text:
            when, _, source = text.partition(" ")
        else:
            raise ValueError(
                f"not a model version: {text!r}; give SOURCE@ISO-TIME, e.g. my-sims-v3@2024-06-01T12:00:00Z"
            )
        try:
            created = datetime.fromisoformat(when.strip())
        except ValueError:
            raise ValueError(f"not an ISO-8601 time in model version {text!r}: {when!r}") from None
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return cls(created, source.strip())
