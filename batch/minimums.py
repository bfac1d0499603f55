"""Dataset minimums: whether Personalize can train on what was written, known before anyone pays for it.

Personalize refuses to train with fewer than 1000 interactions or fewer than 25 users with at least two
interactions each; interactions of items missing from the Items dataset train on items the models
know nothing about and the lobby cannot show. :class:`InteractionStats` counts as the interactions are
written (one counter per user: memory grows with users, not interactions).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from batch.transform import InteractionRecord
from clickstream.limits import MIN_INTERACTIONS, MIN_USERS_WITH_TWO_INTERACTIONS

#: Unknown item ids kept as examples for the report.
MAX_EXAMPLES: Final = 10
#: The check of interactions whose item the Items dataset lacks.
UNKNOWN_ITEMS: Final = "interactions of items not in the Items dataset"


@dataclass(frozen=True, slots=True)
class Check:
    """One minimum: what is required and what the datasets have."""

    name: str
    actual: int
    required: int
    #: True when ``actual`` must be at least ``required``; False when it must be at most.
    at_least: bool = True
    detail: str = ""
    #: What a failure means and what to do about it.
    advice: str = ""

    @property
    def ok(self) -> bool:
        return self.actual >= self.required if self.at_least else self.actual <= self.required

    def line(self) -> str:
        relation = ">=" if self.at_least else "<="
        verdict = "ok  " if self.ok else "FAIL"
        detail = f"  ({self.detail})" if self.detail else ""
        return f"  {verdict} {self.name:<44} {self.actual:>10,} (needs {relation} {self.required:,}){detail}"


@dataclass(frozen=True, slots=True)
class MinimumsReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def lines(self) -> list[str]:
        lines = ["Dataset minimums for training (Amazon Personalize):"]
        lines.extend(check.line() for check in self.checks)
        if self.ok:
            lines.append("Ready for training.")
        else:
            failed = ", ".join(check.name for check in self.checks if not check.ok)
            lines.append(f"NOT ready for training: {failed}.")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [
                {
                    "name": check.name,
                    "actual": check.actual,
                    "required": check.required,
                    "at_least": check.at_least,
                    "ok": check.ok,
                }
                for check in self.checks
            ],
        }


@dataclass(slots=True)
class InteractionStats:
    """What the minimums need, counted interaction by interaction."""

    known_items: Set[str]
    interactions: int = 0
    unknown_item_interactions: int = 0
    unknown_item_examples: list[str] = field(default_factory=list)
    event_types: Counter[str] = field(default_factory=Counter)
    first_timestamp: int | None = None
    last_timestamp: int | None = None
    _per_user: Counter[str] = field(default_factory=Counter)

    def add(self, record: InteractionRecord) -> None:
        self.interactions += 1
        self._per_user[record.user_id] += 1
        self.event_types[record.event_type] += 1
        if record.item_id not in self.known_items:
            self.unknown_item_interactions += 1
            if len(self.unknown_item_examples) < MAX_EXAMPLES and record.item_id not in self.unknown_item_examples:
                self.unknown_item_examples.append(record.item_id)
        if self.first_timestamp is None or record.timestamp < self.first_timestamp:
            self.first_timestamp = record.timestamp
        if self.last_timestamp is None or record.timestamp > self.last_timestamp:
            self.last_timestamp = record.timestamp

    @property
    def users(self) -> int:
        return len(self._per_user)

    @property
    def users_with_two(self) -> int:
        return sum(1 for count in self._per_user.values() if count >= 2)

    def report(self) -> MinimumsReport:
        examples = ", ".join(self.unknown_item_examples)
        return MinimumsReport(
            (
                Check(
                    "interactions",
                    self.interactions,
                    MIN_INTERACTIONS,
                    advice=f"{self.interactions:,} interactions: Personalize trains on {MIN_INTERACTIONS:,} or more",
                ),
                Check(
                    "users with 2 or more interactions",
                    self.users_with_two,
                    MIN_USERS_WITH_TWO_INTERACTIONS,
                    advice=f"{self.users_with_two:,} users with 2 or more interactions: Personalize trains with "
                    f"{MIN_USERS_WITH_TWO_INTERACTIONS:,} or more",
                ),
                Check(
                    UNKNOWN_ITEMS,
                    self.unknown_item_interactions,
                    0,
                    at_least=False,
                    detail=f"e.g. {examples}" if examples else "",
                    advice=f"{self.unknown_item_interactions:,} interactions are of games the items query does not "
                    f"return (e.g. {examples}): check the items query of the queries file (BATCH_QUERIES_FILE)",
                ),
            )
        )

    def span(self) -> str:
        def when(seconds: int | None) -> str:
            return "-" if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")

        return f"{when(self.first_timestamp)} .. {when(self.last_timestamp)}"
