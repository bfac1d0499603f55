"""Step 3: group events by (userId, sessionId) into PutEvents batches of at most 10.

A group is handed on when it is full or when it has lingered ``linger`` seconds since its first
event. PutEvents takes one userId and one sessionId per call, so these groups are the only legal
batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from clickstream.limits import MAX_EVENTS_PER_CALL
from clickstream.outcomes import PersonalizeEvent
from stream_worker.tracker import RecordHandle


@dataclass(frozen=True, slots=True)
class RecordContext:
    """What every event of one record shares: its tracker handle and where it came from."""

    handle: RecordHandle
    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    arrival_time: float | None


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event on its way to Personalize, with what is needed to acknowledge or dead-letter it."""

    event: PersonalizeEvent
    record: RecordContext
    position: int
    raw: bytes

    @property
    def group_key(self) -> tuple[str | None, str]:
        return (self.event.user_id, self.event.session_id)


Batch = list[PendingEvent]


class _Group:
    __slots__ = ("events", "opened")

    def __init__(self, opened: float) -> None:
        self.opened = opened
        self.events: Batch = []


class SessionBatcher:
    """Open groups by (userId, sessionId); not thread-safe (the pipeline holds a lock around it)."""

    def __init__(
        self, linger: float, clock: Callable[[], float], max_events: int = MAX_EVENTS_PER_CALL
    ) -> None:
        if not 1 <= max_events <= MAX_EVENTS_PER_CALL:
            raise ValueError(f"max_events must be 1..{MAX_EVENTS_PER_CALL}")
        self._linger = linger
        self._clock = clock
        self._max = max_events
        self._groups: dict[tuple[str | None, str], _Group] = {}
        self._held = 0

    def add(self, item: PendingEvent) -> Batch | None:
        """Hold ``item``; returns its group as a batch when that group is now full."""
        key = item.group_key
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(self._clock())
        group.events.append(item)
        self._held += 1
        if len(group.events) >= self._max:
            del self._groups[key]
            self._held -= len(group.events)
            return group.events
        return None

    def due(self) -> list[Batch]:
        """Remove and return the groups that have lingered long enough (oldest first)."""
        deadline = self._clock() - self._linger
        batches: list[Batch] = []
        for group in self._groups.values():
            if group.opened > deadline:
                break
            batches.append(group.events)
        for batch in batches:
            del self._groups[batch[0].group_key]
            self._held -= len(batch)
        return batches

    def next_due_in(self) -> float | None:
        """Seconds until the oldest group is due (None when nothing is held)."""
        for group in self._groups.values():
            return max(0.0, group.opened + self._linger - self._clock())
        return None

    def drain(self) -> list[Batch]:
        """Remove and return every group, full or not."""
        batches = [group.events for group in self._groups.values()]
        self._groups.clear()
        self._held = 0
        return batches

    def __len__(self) -> int:
        """Events held."""
        return self._held
