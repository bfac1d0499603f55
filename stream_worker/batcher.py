"""Step 3: group events by (userId, sessionId) into PutEvents batches of at most 10.

A group becomes ready when it is full, when its session ended (a logout), or once it has lingered
``linger`` seconds since its first event — ``backlog_linger`` while the shard is behind, where
latency is already lost and fewer, fuller calls drain the backlog sooner. When the shard catches up,
the groups the backlog left open are ready at once: their events have waited in the stream far longer
than a linger, and holding them longer would only delay the end of the catch-up. When more than
``max_held`` events wait, the oldest groups are ready at once, so memory stays bounded. And while the
producer is blocked by backpressure (:meth:`set_blocked`), every group is ready: no event can join
one until the producer resumes, so lingering would only hold back the deliveries it is waiting for.

Outside a backlog the linger is also measured on the stream's clock: the processor tells the batcher
how far the shard has been read (its *horizon*: the read's time less millisBehindLatest), and a group
whose first event arrived in the stream ``linger`` or more before the horizon is ready at once. Every
event that could still join it within its linger has been read already, so waiting longer would add
delay and no event. This matters when records come late, in one large read after a stall or a burst:
their groups go out as soon as the read is processed, not a whole linger after it. In a backlog this
rule is off (the backlog linger is about fewer, fuller calls, in wall-clock time), and events without
an arrival time follow the wall clock only.

A ready group stays open for more events until the sender actually takes it: when Personalize is
slow or rate-limited, groups keep filling while they wait, so calls carry more
events exactly when calls are scarce. PutEvents takes one userId and one sessionId per call, so
these groups are the only legal batches. Thread-safe.
"""

from __future__ import annotations

import math
import threading
from collections import deque
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
    __slots__ = ("arrived", "events", "opened")

    def __init__(self, opened: float, arrived: float | None) -> None:
        self.opened = opened
        #: When the group's first event arrived in the stream (epoch seconds), if known.
        self.arrived = arrived
        self.events: Batch = []


class SessionBatcher:
    """Open groups by (userId, sessionId), and the full batches waiting to be taken."""

    def __init__(
        self,
        linger: float,
        clock: Callable[[], float],
        max_events: int = MAX_EVENTS_PER_CALL,
        *,
        backlog_linger: float | None = None,
        max_held: int | None = None,
    ) -> None:
        if not 1 <= max_events <= MAX_EVENTS_PER_CALL:
            raise ValueError(f"max_events must be 1..{MAX_EVENTS_PER_CALL}")
        self._normal_linger = linger
        self._backlog_linger = max(linger, backlog_linger if backlog_linger is not None else linger)
        self._linger = linger
        self._max_held = max_held
        self._clock = clock
        self._max = max_events
        self._groups: dict[tuple[str | None, str], _Group] = {}
        self._full: deque[Batch] = deque()
        self._held = 0
        self._flush_all = False
        self._behind = False
        self._blocked = False
        self._horizon = -math.inf
        self._cond = threading.Condition()

    def add(self, item: PendingEvent) -> None:
        """Hold ``item`` in its session's group."""
        key = item.group_key
        with self._cond:
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group(self._clock(), item.record.arrival_time)
                if len(self._groups) == 1 or (self._max_held is not None and self._held >= self._max_held):
                    self._cond.notify()
            group.events.append(item)
            self._held += 1
            if len(group.events) >= self._max:
                del self._groups[key]
                self._full.append(group.events)
                self._cond.notify()

    def set_backlog(self, behind: bool) -> None:
        """Use the backlog linger while the shard is behind, the normal one once caught up; at the
        moment it catches up, every group open then (the backlog's last ones) is ready."""
        with self._cond:
            self._behind = behind
            linger = self._backlog_linger if behind else self._normal_linger
            if linger != self._linger:
                if linger < self._linger:
                    for group in self._groups.values():
                        group.opened = -math.inf
                self._linger = linger
                self._cond.notify_all()

    def advance_horizon(self, horizon: float) -> None:
        """The shard has been read up to ``horizon`` (epoch seconds on the stream's arrival clock):
        every record that arrived by then has been added. It only moves forward."""
        with self._cond:
            if horizon > self._horizon:
                self._horizon = horizon
                self._cond.notify_all()

    def set_blocked(self, blocked: bool) -> None:
        """Whether the producer waits for capacity: meanwhile every group is ready, full or not."""
        with self._cond:
            self._blocked = blocked
            if blocked:
                self._cond.notify_all()

    def end_session(self, key: tuple[str | None, str]) -> None:
        """The session ended: its open group is ready now."""
        with self._cond:
            group = self._groups.pop(key, None)
            if group is not None:
                self._full.append(group.events)
                self._cond.notify()

    def _first_ready(self, first: _Group) -> bool:
        if self._flush_all or self._blocked or first.opened + self._linger <= self._clock():
            return True
        if not self._behind and first.arrived is not None and first.arrived + self._linger <= self._horizon:
            return True
        return self._max_held is not None and self._held > self._max_held

    def _ready_locked(self) -> bool:
        if self._full:
            return True
        first = next(iter(self._groups.values()), None)
        return first is not None and self._first_ready(first)

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until a batch is ready to be taken; True if one is.

        A ready batch stays ready (it can only grow) until someone takes it, unless the linger grows
        meanwhile (a backlog begins) or the producer it was ready for resumes (:meth:`set_blocked`).
        """
        with self._cond:
            deadline = self._clock() + timeout
            while not self._ready_locked():
                wait = deadline - self._clock()
                if wait <= 0:
                    return False
                due = self._next_due_locked()
                self._cond.wait(wait if due is None else min(wait, max(due, 0.001)))
            return True

    def _take_locked(self) -> Batch | None:
        if self._full:
            batch = self._full.popleft()
        else:
            first = next(iter(self._groups.values()), None)
            if first is None or not self._first_ready(first):
                return None
            batch = first.events
            del self._groups[batch[0].group_key]
        self._held -= len(batch)
        return batch

    def take(self, timeout: float | None = None) -> Batch | None:
        """The next ready batch (full groups first, then the oldest lingered group), waiting up
        to ``timeout`` seconds for one; None if none became ready."""
        with self._cond:
            batch = self._take_locked()
            if batch is not None or (timeout is not None and timeout <= 0):
                return batch
            deadline = None if timeout is None else self._clock() + timeout
            while batch is None:
                wait = 0.25 if deadline is None else deadline - self._clock()
                if wait <= 0:
                    return None
                due = self._next_due_locked()
                self._cond.wait(wait if due is None else min(wait, max(due, 0.001)))
                batch = self._take_locked()
            return batch

    def _next_due_locked(self) -> float | None:
        first = next(iter(self._groups.values()), None)
        if first is None:
            return None
        return 0.0 if self._first_ready(first) else first.opened + self._linger - self._clock()

    def next_due_in(self) -> float | None:
        """Seconds until the oldest open group is ready (None when no group is open)."""
        with self._cond:
            due = self._next_due_locked()
        return None if due is None else max(0.0, due)

    def flush_all(self) -> None:
        """From now on every group is ready at once, full or not (drain)."""
        with self._cond:
            self._flush_all = True
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def __len__(self) -> int:
        """Events held (open groups and full batches not yet taken)."""
        with self._cond:
            return self._held
