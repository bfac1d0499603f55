"""Batches are legal PutEvents calls: one (userId, sessionId), 1-10 events, nothing lost."""

from __future__ import annotations

import threading
import time
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream.outcomes import PersonalizeEvent
from stream_worker.batcher import PendingEvent, RecordContext, SessionBatcher
from stream_worker.tracker import RecordHandle, SequencePosition


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pending(event_id: str, user: str | None, session: str, arrived: float | None = None) -> PendingEvent:
    handle = RecordHandle(SequencePosition(1))
    context = RecordContext(handle, "shard-0", "1", 0, "pk", arrived)
    event = PersonalizeEvent(event_id, "click", session, 1.7e9, user_id=user, item_id="g-1")
    return PendingEvent(event, context, 0, b"{}")


def behind_batcher(clock: FakeClock) -> SessionBatcher:
    """Linger 1 s, 20 s in a backlog, and the shard behind."""
    batcher = SessionBatcher(1.0, clock, backlog_linger=20.0)
    batcher.set_backlog(True)
    return batcher


def ids(batch: list[PendingEvent] | None) -> list[str]:
    assert batch is not None
    return [p.event.event_id for p in batch]


def test_full_group_is_ready_at_ten() -> None:
    batcher = SessionBatcher(1.0, FakeClock())
    for i in range(9):
        batcher.add(pending(str(i), "p1", "s1"))
    assert batcher.take(timeout=0) is None, "nine events, no linger yet: not ready"
    batcher.add(pending("9", "p1", "s1"))
    assert ids(batcher.take(timeout=0)) == [str(i) for i in range(10)]
    assert len(batcher) == 0


def test_groups_linger_then_are_ready_oldest_first() -> None:
    clock = FakeClock()
    batcher = SessionBatcher(2.0, clock)
    batcher.add(pending("a", "p1", "s1"))
    clock.now += 1.0
    batcher.add(pending("b", "p2", "s2"))
    assert batcher.take(timeout=0) is None
    assert batcher.next_due_in() == 1.0
    clock.now += 1.0
    assert ids(batcher.take(timeout=0)) == ["a"]
    assert batcher.take(timeout=0) is None
    clock.now += 1.0
    assert ids(batcher.take(timeout=0)) == ["b"]
    assert batcher.next_due_in() is None


def test_a_lingered_group_keeps_filling_until_taken() -> None:
    clock = FakeClock()
    batcher = SessionBatcher(1.0, clock)
    batcher.add(pending("a", "p1", "s1"))
    clock.now += 5.0  # long past its linger, but no sender took it yet
    batcher.add(pending("b", "p1", "s1"))
    assert ids(batcher.take(timeout=0)) == ["a", "b"]


def test_full_batches_go_before_lingered_groups() -> None:
    clock = FakeClock()
    batcher = SessionBatcher(1.0, clock)
    batcher.add(pending("old", "p1", "s1"))
    clock.now += 2.0
    for i in range(10):
        batcher.add(pending(f"f{i}", "p2", "s2"))
    assert len(ids(batcher.take(timeout=0))) == 10
    assert ids(batcher.take(timeout=0)) == ["old"]


def test_flush_all_makes_every_group_ready() -> None:
    batcher = SessionBatcher(60.0, FakeClock())
    batcher.add(pending("a", None, "s1"))
    batcher.add(pending("b", "p1", "s1"))
    assert batcher.take(timeout=0) is None
    batcher.flush_all()
    assert sorted(ids(batcher.take(timeout=0)) + ids(batcher.take(timeout=0))) == ["a", "b"]
    assert batcher.take(timeout=0) is None


def test_take_waits_for_a_batch_with_a_deadline() -> None:
    import threading
    import time

    batcher = SessionBatcher(60.0, time.monotonic)
    got: list[list[PendingEvent] | None] = []
    taker = threading.Thread(target=lambda: got.append(batcher.take(timeout=5)))
    taker.start()
    for i in range(10):
        batcher.add(pending(str(i), "p", "s"))
    taker.join(5)
    assert got and got[0] is not None and len(got[0]) == 10
    assert batcher.take(timeout=0.05) is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["p1", "p2", None]), st.sampled_from(["s1", "s2", "s3"]), st.booleans()),
        max_size=200,
    )
)
def test_every_event_leaves_in_exactly_one_legal_batch(ops: list[tuple[str | None, str, bool]]) -> None:
    clock = FakeClock()
    batcher = SessionBatcher(0.5, clock)
    batches = []
    for i, (user, session, tick) in enumerate(ops):
        batcher.add(pending(str(i), user, session))
        if tick:
            clock.now += 0.3
            while (batch := batcher.take(timeout=0)) is not None:
                batches.append(batch)
    batcher.flush_all()
    while (batch := batcher.take(timeout=0)) is not None:
        batches.append(batch)
    seen = Counter(p.event.event_id for b in batches for p in b)
    assert seen == Counter(str(i) for i in range(len(ops)))
    assert len(batcher) == 0
    for batch in batches:
        assert 1 <= len(batch) <= 10
        assert len({p.group_key for p in batch}) == 1


def test_backlog_linger_holds_groups_longer_while_behind() -> None:
    clock = FakeClock()
    batcher = behind_batcher(clock)
    batcher.add(pending("a", "p1", "s1"))
    clock.now += 5.0
    assert batcher.take(timeout=0) is None, "behind: the group may wait for more of its session"
    batcher.set_backlog(False)
    assert ids(batcher.take(timeout=0)) == ["a"], "caught up: the normal linger applies again"


def test_catching_up_makes_the_backlogs_groups_ready_at_once_and_later_groups_linger() -> None:
    clock = FakeClock()
    batcher = behind_batcher(clock)
    batcher.add(pending("a", "p1", "s1"))
    clock.now += 0.5
    batcher.add(pending("b", "p2", "s2"))  # the backlog's last batch: opened 0 s before catching up
    batcher.set_backlog(True)  # still behind: nothing changes
    assert batcher.take(timeout=0) is None
    batcher.set_backlog(False)
    batcher.add(pending("a2", "p1", "s1"))  # a ready group stays open until it is taken
    batcher.add(pending("c", "p3", "s3"))  # opened after catching up: the normal linger
    assert ids(batcher.take(timeout=0)) == ["a", "a2"]
    assert ids(batcher.take(timeout=0)) == ["b"]
    assert batcher.take(timeout=0) is None
    assert batcher.next_due_in() == 1.0
    clock.now += 1.0
    assert ids(batcher.take(timeout=0)) == ["c"]


def test_falling_behind_does_not_make_groups_ready() -> None:
    clock = FakeClock()
    batcher = SessionBatcher(1.0, clock, backlog_linger=20.0)
    batcher.add(pending("a", "p1", "s1"))
    batcher.set_backlog(True)
    clock.now += 1.0
    assert batcher.take(timeout=0) is None, "behind now: the group may wait the backlog linger"
    clock.now += 19.0
    assert ids(batcher.take(timeout=0)) == ["a"]


def test_session_end_makes_its_group_ready() -> None:
    batcher = SessionBatcher(60.0, FakeClock())
    batcher.add(pending("a", "p1", "s1"))
    batcher.add(pending("b", "p2", "s2"))
    batcher.end_session(("p1", "s1"))
    batcher.end_session(("p9", "unknown"))  # nothing open: no effect
    assert ids(batcher.take(timeout=0)) == ["a"]
    assert batcher.take(timeout=0) is None


def test_too_many_held_events_make_the_oldest_groups_ready() -> None:
    batcher = SessionBatcher(60.0, FakeClock(), max_held=3)
    for i, session in enumerate(["s1", "s2", "s3"]):
        batcher.add(pending(str(i), "p", session))
    assert batcher.take(timeout=0) is None, "at the mark, not over it"
    batcher.add(pending("3", "p", "s4"))
    assert ids(batcher.take(timeout=0)) == ["0"]
    assert batcher.take(timeout=0) is None


# Arrival times on the stream's clock (epoch seconds), far from FakeClock's monotonic values on purpose.
ARRIVED = 1.8e9


def test_a_group_whose_linger_has_passed_on_the_streams_clock_is_ready_at_once() -> None:
    clock = FakeClock()
    batcher = SessionBatcher(1.0, clock)
    batcher.add(pending("old", "p1", "s1", arrived=ARRIVED))
    batcher.add(pending("recent", "p2", "s2", arrived=ARRIVED + 9.5))
    assert batcher.take(timeout=0) is None, "no horizon yet: the wall-clock linger applies"
    batcher.advance_horizon(ARRIVED + 10.0)  # read up to 10 s after the first event arrived
    assert ids(batcher.take(timeout=0)) == ["old"], "nothing left to read could still join it"
    assert batcher.take(timeout=0) is None, "arrived 0.5 s before the horizon: it may still grow"
    batcher.advance_horizon(ARRIVED + 10.2)
    assert batcher.take(timeout=0) is None
    batcher.advance_horizon(ARRIVED + 10.5)
    assert ids(batcher.take(timeout=0)) == ["recent"]


def test_the_horizon_only_moves_forward_and_the_wall_clock_linger_still_bounds_the_wait() -> None:
    clock = FakeClock()
    batcher = SessionBatcher(1.0, clock)
    batcher.advance_horizon(ARRIVED + 5.0)
    batcher.advance_horizon(ARRIVED)  # an older read reported late: ignored
    batcher.add(pending("a", "p1", "s1", arrived=ARRIVED + 4.5))
    assert batcher.take(timeout=0) is None
    clock.now += 1.0  # the reads stall, the horizon does not move: the linger ends on the wall clock
    assert ids(batcher.take(timeout=0)) == ["a"]


def test_a_backlog_ignores_the_horizon() -> None:
    clock = FakeClock()
    batcher = behind_batcher(clock)
    batcher.add(pending("a", "p1", "s1", arrived=ARRIVED))
    batcher.advance_horizon(ARRIVED + 60.0)
    assert batcher.take(timeout=0) is None, "behind: groups wait the backlog linger for fuller calls"
    batcher.set_backlog(False)
    assert ids(batcher.take(timeout=0)) == ["a"]


def test_events_without_an_arrival_time_follow_the_wall_clock_only() -> None:
    clock = FakeClock()
    batcher = SessionBatcher(1.0, clock)
    batcher.add(pending("a", "p1", "s1"))
    batcher.advance_horizon(ARRIVED + 1e6)
    assert batcher.take(timeout=0) is None
    clock.now += 1.0
    assert ids(batcher.take(timeout=0)) == ["a"]


def test_a_waiting_taker_wakes_when_the_horizon_moves() -> None:
    batcher = SessionBatcher(30.0, time.monotonic)
    batcher.add(pending("a", "p1", "s1", arrived=ARRIVED))
    taken: list[list[str]] = []
    taker = threading.Thread(target=lambda: taken.append(ids(batcher.take(timeout=20.0))))
    taker.start()
    batcher.advance_horizon(ARRIVED + 31.0)
    taker.join(timeout=10.0)
    assert not taker.is_alive(), "the taker must wake on the horizon, not wait out the 30 s linger"
    assert taken == [["a"]]


def test_while_the_producer_is_blocked_every_group_is_ready() -> None:
    clock = FakeClock()
    batcher = behind_batcher(clock)
    batcher.add(pending("a", "p1", "s1"))
    batcher.add(pending("b", "p2", "s2"))
    assert batcher.take(timeout=0) is None, "a 20 s backlog linger: nothing ready yet"
    batcher.set_blocked(True)  # backpressure: nothing can join these groups until it ends
    assert ids(batcher.take(timeout=0)) == ["a"]
    batcher.set_blocked(False)
    assert batcher.take(timeout=0) is None, "the producer resumed: the others linger again"
    batcher.add(pending("c", "p2", "s2"))
    clock.now += 20.0
    assert ids(batcher.take(timeout=0)) == ["b", "c"]


def test_a_waiting_taker_wakes_when_the_producer_blocks() -> None:
    batcher = behind_batcher(FakeClock())
    batcher.add(pending("a", "p1", "s1"))
    taken: list[list[str]] = []
    taker = threading.Thread(target=lambda: taken.append(ids(batcher.take(timeout=5))))
    taker.start()
    taker.join(0.2)
    assert taker.is_alive()
    batcher.set_blocked(True)
    taker.join(2)
    assert taken == [["a"]]
