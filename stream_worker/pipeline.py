"""One shard's pipeline: decode -> normalize -> batch -> send -> acknowledge -> track.

The caller (the KCL record processor, or replay) hands records in with :meth:`ShardPipeline.accept`
(which waits for capacity whenever what it adds passes a high-water mark), applies backpressure
with :meth:`wait_for_capacity` after it, checkpoints at ``tracker.safe_position`` (also from the
``on_wait`` callback while either waits), and ends with :meth:`drain` or :meth:`abandon`. The sender
takes ready batches from the batcher.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from clickstream.normalize import Normalizer, Source
from clickstream.outcomes import Drop, DropReason
from stream_worker.batcher import Batch, PendingEvent, RecordContext, SessionBatcher
from stream_worker.dead_letter import DeadLetter, DeadLetterStore
from stream_worker.decode import decode_record
from stream_worker.errors import FatalConfigurationError
from stream_worker.metrics import Telemetry
from stream_worker.sender import PutEventsSender
from stream_worker.settings import DEFAULT_HIGH_WATER_BYTES
from stream_worker.tracker import RecordHandle, SequencePosition, SequenceTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InputRecord:
    """A Kinesis record as the pipeline sees it (base64 already decoded)."""

    data: bytes
    sequence_number: str
    sub_sequence_number: int = 0
    partition_key: str = ""
    #: Approximate arrival time, epoch seconds.
    arrival_time: float | None = None
    #: Where the record was first read (shard id, sequence number), when that is not this pipeline's
    #: shard and ``sequence_number`` (replay of a capture): deterministic eventIds derive from it.
    origin: tuple[str, str] | None = None


class _DeliveryStoppedError(Exception):
    """Nothing more can be delivered (fatal error, sender stopped): ``accept`` ends its call."""


SenderFactory = Callable[
    [
        SessionBatcher,
        Callable[[Batch], None],
        Callable[[PendingEvent, str], None],
        Callable[[FatalConfigurationError], None],
    ],
    PutEventsSender,
]


class ShardPipeline:
    """The delivery pipeline of one shard. ``accept`` and ``wait_for_capacity`` are single-caller."""

    def __init__(
        self,
        shard_id: str,
        normalizer: Normalizer,
        sender_factory: SenderFactory,
        dead_letters: DeadLetterStore,
        telemetry: Telemetry,
        *,
        linger: float,
        high_water: int,
        high_water_bytes: int = DEFAULT_HIGH_WATER_BYTES,
        backlog_linger: float | None = None,
        on_fatal: Callable[[FatalConfigurationError], None],
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shard_id = shard_id
        self.tracker = SequenceTracker()
        self.telemetry = telemetry
        self._normalizer = normalizer
        self._session_end = normalizer.mapping.session_end
        self._dead_letters = dead_letters
        self._high_water = high_water
        self._high_water_bytes = high_water_bytes
        #: Units that ``accept`` may still add before the mark is passed (as it last saw it).
        self._room = high_water
        # The bytes in flight: the raw bytes of every unfinished unit (an event's line, kept until it is
        # delivered in case it must be dead-lettered; a dead letter's data, until it is written).
        # ``_bytes_in`` is only written by the caller's thread (accept), ``_bytes_out`` by the
        # acknowledgement callbacks, under ``_bytes_lock``. accept may add bytes until ``_bytes_in``
        # passes ``_bytes_limit`` (the mark plus ``_bytes_out`` as it last saw it) before it checks again.
        self._bytes_in = 0
        self._bytes_out = 0
        self._bytes_lock = threading.Lock()
        self._bytes_limit = high_water_bytes
        self._on_fatal_hook = on_fatal
        self._wall = wall_clock
        self._clock = clock
        self._batcher = SessionBatcher(
            linger, clock, backlog_linger=backlog_linger, max_held=max(10, high_water * 2 // 3)
        )
        self.fatal: FatalConfigurationError | None = None
        self._closed = threading.Event()
        self.sender = sender_factory(self._batcher, self._delivered, self._rejected, self._fatal)
        self._gauges = threading.Thread(target=self._gauge_loop, name=f"gauges-{shard_id}", daemon=True)
        self._gauges.start()

    # -- intake -------------------------------------------------------------------------------

    def accept(self, records: Sequence[InputRecord], on_wait: Callable[[], None] | None = None) -> None:
        """Register every record, then decode, normalize and batch each one, within the high-water marks.

        Registration comes first so that no record can be checkpointed past before it is known. One
        call may bring far more events than the mark (a GetRecords call returns up to 10,000 records,
        each of up to 10,000 events), so whenever the units added (or their bytes) would pass the
        mark (``high_water``, ``high_water_bytes``), accept waits
        for capacity (:meth:`wait_for_capacity`, ``on_wait`` called meanwhile) before the next event,
        in the middle of a record if need be. Before it waits, it seals the records it has finished,
        so that the checkpoints taken meanwhile may pass them; the record in progress and the ones
        after it stay unsealed (nothing is checkpointed past them) until they are finished. The last
        ones are sealed when the call ends; an error on the way leaves the unfinished ones unsealed.
        Once nothing more can be delivered (a fatal error, the sender stopped) accept returns at its
        next wait, leaving the rest unsealed. Counts of received and dropped events are added to the
        metrics once per call.
        """
        tracker = self.tracker
        handles = tracker.register_all(
            [SequencePosition(int(record.sequence_number), record.sub_sequence_number) for record in records]
        )
        self.telemetry.records_received(len(records))
        drops: Counter[DropReason] = Counter()
        received = 0
        accept_one = self._accept_one
        sealed = current = 0

        def make_room() -> tuple[int, int]:
            """Wait until the units and bytes in flight are below the marks; the units that may be
            added then, and the ``_bytes_in`` they may take it up to."""
            nonlocal sealed
            if sealed < current:
                tracker.seal_all(handles[sealed:current])
                sealed = current
            self.wait_for_capacity(on_wait)
            if self.stopped:
                raise _DeliveryStoppedError
            return self._high_water - tracker.pending_units, self._bytes_out + self._high_water_bytes

        self._room = self._high_water - tracker.pending_units
        self._bytes_limit = self._bytes_out + self._high_water_bytes
        try:
            for index, (record, handle) in enumerate(zip(records, handles, strict=True)):
                current = index
                received += accept_one(record, handle, drops, make_room)
            tracker.seal_all(handles[sealed:])
        except _DeliveryStoppedError:
            log.info("delivery stopped: the rest of the batch is left unprocessed", extra={"shard": self.shard_id})
        self.telemetry.events_received(received)
        for reason, n in drops.items():
            self.telemetry.dropped(reason, n)

    def _context(self, record: InputRecord, handle: RecordHandle) -> RecordContext:
        return RecordContext(
            handle,
            self.shard_id,
            record.sequence_number,
            record.sub_sequence_number,
            record.partition_key,
            record.arrival_time,
        )

    def _accept_one(
        self,
        record: InputRecord,
        handle: RecordHandle,
        drops: Counter[DropReason],
        make_room: Callable[[], tuple[int, int]],
    ) -> int:
        """Decode, normalize and batch one record's events (its handle is sealed by the caller);
        returns how many raw events it counts as (an undecodable record is one).

        ``self._room`` is how many more units may be added before the high-water mark is passed,
        ``self._bytes_limit`` how far ``self._bytes_in`` may go (both as last seen: deliveries
        meanwhile only leave more room); when either runs out, ``make_room`` waits for capacity and
        says how much there is then. Per event that costs a decrement, an add and two compares.
        """
        decoded = decode_record(record.data)
        if isinstance(decoded, Drop):
            if self._room < 0 or self._bytes_in > self._bytes_limit:
                self._room, self._bytes_limit = make_room()
            self._room -= 1
            self._bytes_in += len(record.data)
            self._dead_letter(self._context(record, handle), decoded, record.data, None)
            return 1  # one undecodable unit, so the totals add up
        context: RecordContext | None = None
        normalize = self._normalizer.normalize
        stream_id, sequence = record.origin or (self.shard_id, record.sequence_number)
        room = self._room
        limit = self._bytes_limit
        try:
            for item in decoded:
                if room < 0 or self._bytes_in > limit:
                    room, limit = make_room()
                if item.data is None:
                    assert item.failure is not None
                    context = context or self._context(record, handle)
                    room -= 1
                    self._bytes_in += len(item.raw)
                    self._dead_letter(context, item.failure, item.raw, item.position)
                    continue
                source = Source(stream_id, sequence, record.sub_sequence_number, item.position, record.arrival_time)
                outcome = normalize(item.data, source)
                if isinstance(outcome, Drop):
                    reason = outcome.reason
                    if reason.is_bad_input:
                        context = context or self._context(record, handle)
                        room -= 1
                        self._bytes_in += len(item.raw)
                        self._dead_letter(context, outcome, item.raw, item.position)
                    else:
                        drops[reason] += 1
                        if reason is DropReason.NOT_AN_INTERACTION and outcome.detail in self._session_end:
                            self._end_session(item.data)
                    continue
                context = context or self._context(record, handle)
                room -= 1
                self._bytes_in += len(item.raw)  # before the event can be delivered and counted out
                self.tracker.add_units(handle)
                self._batcher.add(PendingEvent(outcome, context, item.position, item.raw))
        finally:
            self._room = room
            self._bytes_limit = limit
        return len(decoded)

    def _end_session(self, data: dict[str, Any]) -> None:
        session = data.get("session_id", data.get("sessionId"))
        if isinstance(session, str) and session:
            player = data.get("player_id", data.get("playerId"))
            self._batcher.end_session((player if isinstance(player, str) and player else None, session))

    def set_backlog(self, behind: bool) -> None:
        """Whether the shard is behind the tip of the stream (batching matters more than latency)."""
        self._batcher.set_backlog(behind)

    def advance_horizon(self, horizon: float) -> None:
        """Every record that arrived in the stream by ``horizon`` (epoch seconds) has been accepted."""
        self._batcher.advance_horizon(horizon)

    def _dead_letter(
        self,
        context: RecordContext,
        drop: Drop,
        data: bytes,
        position: int | None,
        event: str | None = None,
        *,
        counted: bool = False,
    ) -> None:
        """Write a dead letter; its unit finishes only once the store confirms the write."""
        if not counted:
            self.tracker.add_units(context.handle)
        entry = DeadLetter(
            reason=drop.reason.value,
            detail=drop.detail,
            shard_id=context.shard_id,
            sequence_number=context.sequence_number,
            sub_sequence_number=context.sub_sequence_number,
            partition_key=context.partition_key,
            data=data,
            time=self._wall(),
            position=position,
            event=event,
        )
        handle = context.handle

        size = len(data)

        def written() -> None:
            self.telemetry.dead_lettered(drop.reason.value)
            self._bytes_done(size)
            self.tracker.finish(handle)

        self._dead_letters.write(entry, written)

    # -- acknowledgements (sender threads) ------------------------------------------------------

    def _delivered(self, batch: Batch) -> None:
        now = self._wall()
        size = 0
        units: dict[RecordHandle, int] = {}  # a batch's events mostly come from a few records
        for item in batch:
            arrival = item.record.arrival_time
            self.telemetry.delivered_delay(now - item.event.sent_at, None if arrival is None else now - arrival)
            size += len(item.raw)
            handle = item.record.handle
            units[handle] = units.get(handle, 0) + 1
        self._bytes_done(size)  # before the units finish, so that a waiter they wake sees both
        finish = self.tracker.finish
        for handle, n in units.items():  # one tracker lock per record, not per event
            finish(handle, n)

    def _bytes_done(self, size: int) -> None:
        with self._bytes_lock:
            self._bytes_out += size

    def _rejected(self, item: PendingEvent, message: str) -> None:
        drop = Drop(DropReason.REJECTED, message[:500])
        self._dead_letter(item.record, drop, item.raw, item.position, item.event.to_json(), counted=True)

    def _fatal(self, error: FatalConfigurationError) -> None:
        self.fatal = error
        with self.tracker.changed:
            self.tracker.changed.notify_all()
        self._on_fatal_hook(error)

    # -- gauges ----------------------------------------------------------------------------------

    def _gauge_loop(self) -> None:
        while not self._closed.wait(0.5):
            self.update_gauges()

    def update_gauges(self) -> None:
        self.telemetry.in_flight_set(self.tracker.pending_units, self.bytes_in_flight)
        limiter = self.sender.limiter
        self.telemetry.limits(limiter.limit, limiter.rate)

    # -- flow control and the end ---------------------------------------------------------------

    @property
    def bytes_in_flight(self) -> int:
        """Raw bytes of the unfinished units: event lines not yet delivered, dead letters not yet
        written (as of the last record ``accept`` finished, or the event it waits before)."""
        return self._bytes_in - self._bytes_out

    def wait_for_capacity(self, on_wait: Callable[[], None] | None = None) -> float:
        """Block while more than ``high_water`` units are unfinished, or more than ``high_water_bytes``
        bytes (:attr:`bytes_in_flight`): backpressure.

        Waits until both drop to three quarters of their marks; calls ``on_wait`` about twice a
        second meanwhile (the processor checkpoints there). Returns the seconds waited. Returns
        early on a fatal error, and once the sender is stopped (:meth:`abandon`, e.g. by ``on_wait``
        when the lease is lost): nothing in flight can finish then.
        """
        tracker = self.tracker
        if tracker.pending_units <= self._high_water and self.bytes_in_flight <= self._high_water_bytes:
            return 0.0
        started = self._clock()
        resume_at = self._high_water * 3 // 4
        resume_bytes = self._high_water_bytes * 3 // 4
        # Nothing can join the open groups while we wait: let them all go now, rather than wait their
        # linger (whatever the batcher may hold, e.g. with a mark so small that max_held is not below
        # resume_at), and write the buffered dead letters.
        self._batcher.set_blocked(True)
        self._dead_letters.flush()
        try:
            while (tracker.pending_units > resume_at or self.bytes_in_flight > resume_bytes) and not self.stopped:
                tracker.wait(0.5)
                if on_wait is not None:
                    on_wait()
        finally:
            self._batcher.set_blocked(False)
        waited = self._clock() - started
        self.telemetry.backpressure_wait(waited)
        return waited

    @property
    def stopped(self) -> bool:
        """Nothing more will be delivered: a fatal error, or the sender was stopped (abandoned)."""
        return self.fatal is not None or self.sender.stopped

    def drain(self, timeout: float | None) -> bool:
        """Send everything held and wait until every record is done; False on timeout or fatal."""
        self._batcher.flush_all()
        self._dead_letters.flush()
        deadline = None if timeout is None else self._clock() + timeout
        tracker = self.tracker
        while not tracker.all_done():
            if self.stopped:
                return False
            remaining = 0.5 if deadline is None else min(0.5, deadline - self._clock())
            if remaining <= 0:
                return False
            tracker.wait(remaining)
        return True

    def abandon(self) -> None:
        """Stop sending; whatever is unfinished stays unacknowledged (and uncheckpointed)."""
        self.sender.stop()

    def close(self) -> None:
        """Stop the flusher and the sender's threads, and close the dead-letter store."""
        self._closed.set()
        self._gauges.join(timeout=5)
        self.sender.close()
        self._dead_letters.close()
