"""Batches are legal PutEvents calls: one (userId, sessionId), 1-10 events, nothing lost."""

from __future__ import annotations

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


def pending(event_id: str, user: str | None, session: str) -> PendingEvent:
    handle = RecordHandle(SequencePosition(1))
    context = RecordContext(handle, "shard-0", "1", 0, "pk", None)
    event = PersonalizeEvent(event_id, "click", session, 1.7e9, user_id=user, item_id="g-1")
    return PendingEvent(event, context, 0, b"{}")


def test_full_group_is_returned_at_ten() -> None:
    batcher = SessionBatcher(1.0, FakeClock())
    results = [batcher.add(pending(str(i), "p1", "s1")) for i in range(10)]
    assert results[:9] == [None] * 9
    batch = results[9]
    assert batch is not None and [p.event.event_id for p in batch] == [str(i) for i in range(10)]
    assert len(batcher) == 0


def test_groups_linger_then_flush_oldest_first() -> None:
    clock = FakeClock()
    batcher = SessionBatcher(2.0, clock)
    batcher.add(pending("a", "p1", "s1"))
    clock.now += 1.0
    batcher.add(pending("b", "p2", "s2"))
    assert batcher.due() == []
    assert batcher.next_due_in() == 1.0
    clock.now += 1.0
    due = batcher.due()
    assert [[p.event.event_id for p in b] for b in due] == [["a"]]
    clock.now += 1.0
    assert [[p.event.event_id for p in b] for b in batcher.due()] == [["b"]]
    assert batcher.next_due_in() is None


def test_anonymous_and_named_users_of_one_session_are_separate_calls() -> None:
    batcher = SessionBatcher(1.0, FakeClock())
    batcher.add(pending("a", None, "s1"))
    batcher.add(pending("b", "p1", "s1"))
    batches = batcher.drain()
    assert sorted(len(b) for b in batches) == [1, 1]


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
        if (batch := batcher.add(pending(str(i), user, session))) is not None:
            batches.append(batch)
        if tick:
            clock.now += 0.3
            batches.extend(batcher.due())
    batches.extend(batcher.drain())
    seen = Counter(p.event.event_id for b in batches for p in b)
    assert seen == Counter(str(i) for i in range(len(ops)))
    for batch in batches:
        assert 1 <= len(batch) <= 10
        assert len({p.group_key for p in batch}) == 1
