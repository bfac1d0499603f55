"""The sequence tracker: where it is safe to checkpoint.

Every record of a batch is registered, in arrival order, before any of it is processed. A record
is done once it is sealed (all its units are known) and every unit (an event to deliver or a dead
letter to write) is finished. The checkpoint is the last record of the longest done prefix: the
highest sequence number below which every record is delivered or dead-lettered, whatever order
acknowledgements arrive in. Thread-safe.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class SequencePosition:
    """A point in a shard: (sequence number, sub-sequence number), ordered numerically."""

    sequence: int
    sub_sequence: int = 0

    @property
    def sequence_number(self) -> str:
        return str(self.sequence)


class RecordHandle:
    """One registered record: pending units, and whether all of them have been added."""

    __slots__ = ("pending", "position", "sealed")

    def __init__(self, position: SequencePosition) -> None:
        self.position = position
        self.pending = 0
        self.sealed = False

    @property
    def done(self) -> bool:
        return self.sealed and self.pending == 0


class SequenceTracker:
    """Records in order, their unfinished units, and the safe checkpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: deque[RecordHandle] = deque()
        self._safe: SequencePosition | None = None
        self._pending_units = 0
        self._last: SequencePosition | None = None
        self.changed = threading.Condition(self._lock)

    def register(self, position: SequencePosition) -> RecordHandle:
        """Add a record at the end; positions must increase (a shard is read in order)."""
        handle = RecordHandle(position)
        with self._lock:
            if self._last is not None and position <= self._last:
                raise ValueError(f"record {position} registered after {self._last}")
            self._last = position
            self._records.append(handle)
        return handle

    def register_all(self, positions: Sequence[SequencePosition]) -> list[RecordHandle]:
        """:meth:`register` for a whole batch under one lock; all or none (a position out of order
        registers nothing)."""
        handles = [RecordHandle(position) for position in positions]
        with self._lock:
            last = self._last
            for position in positions:
                if last is not None and position <= last:
                    raise ValueError(f"record {position} registered after {last}")
                last = position
            self._last = last
            self._records.extend(handles)
        return handles

    def add_units(self, handle: RecordHandle, n: int = 1) -> None:
        """``n`` more units must finish before ``handle`` is done; only before it is sealed."""
        with self._lock:
            if handle.sealed:
                raise ValueError("units added to a sealed record")
            handle.pending += n
            self._pending_units += n

    def seal(self, handle: RecordHandle) -> None:
        """Every unit of ``handle`` is known."""
        with self._lock:
            handle.sealed = True
            self._advance()

    def seal_all(self, handles: Iterable[RecordHandle]) -> None:
        """:meth:`seal` for many records under one lock."""
        with self._lock:
            for handle in handles:
                handle.sealed = True
            self._advance()

    def finish(self, handle: RecordHandle, n: int = 1) -> None:
        """``n`` units of ``handle`` are delivered or dead-lettered."""
        with self._lock:
            if handle.pending < n:
                raise ValueError(f"{n} units finished but only {handle.pending} pending")
            handle.pending -= n
            self._pending_units -= n
            self._advance()

    def _advance(self) -> None:
        records = self._records
        while records and records[0].done:
            self._safe = records.popleft().position
        self.changed.notify_all()

    @property
    def safe_position(self) -> SequencePosition | None:
        """The highest position at and below which every record is done (None: none yet)."""
        with self._lock:
            return self._safe

    @property
    def pending_units(self) -> int:
        with self._lock:
            return self._pending_units

    @property
    def unfinished_records(self) -> int:
        with self._lock:
            return len(self._records)

    def all_done(self) -> bool:
        with self._lock:
            return not self._records

    def wait(self, predicate_timeout: float) -> None:
        """Block until something finishes or ``predicate_timeout`` seconds pass."""
        with self._lock:
            self.changed.wait(predicate_timeout)
