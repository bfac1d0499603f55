"""The sequence tracker never lets the checkpoint pass an unfinished record."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_worker.tracker import SequencePosition, SequenceTracker


def pos(n: int, sub: int = 0) -> SequencePosition:
    return SequencePosition(n, sub)


def test_safe_position_is_the_end_of_the_done_prefix() -> None:
    tracker = SequenceTracker()
    a, b, c = (tracker.register(pos(n)) for n in (10, 20, 30))
    for handle in (a, b, c):
        tracker.add_units(handle, 2)
        tracker.seal(handle)
    tracker.finish(c, 2)
    tracker.finish(b, 2)
    assert tracker.safe_position is None, "record 10 is not done"
    tracker.finish(a, 1)
    assert tracker.safe_position is None
    tracker.finish(a, 1)
    assert tracker.safe_position == pos(30)
    assert tracker.all_done()


def test_unsealed_record_blocks_even_with_no_units() -> None:
    tracker = SequenceTracker()
    first = tracker.register(pos(1))
    second = tracker.register(pos(2))
    tracker.seal(second)
    assert tracker.safe_position is None
    tracker.seal(first)
    assert tracker.safe_position == pos(2)


def test_positions_must_increase() -> None:
    tracker = SequenceTracker()
    tracker.register(pos(5, 1))
    tracker.register(pos(5, 2))
    with pytest.raises(ValueError, match="registered after"):
        tracker.register(pos(5, 2))
    with pytest.raises(ValueError):
        tracker.register(pos(4))


def test_more_finished_than_pending_is_a_bug() -> None:
    tracker = SequenceTracker()
    handle = tracker.register(pos(1))
    tracker.add_units(handle, 1)
    with pytest.raises(ValueError):
        tracker.finish(handle, 2)


def test_sequence_numbers_compare_numerically() -> None:
    assert pos(int("9" * 20)) > pos(int("10" * 5))
    assert pos(7, 2) > pos(7, 1)


@settings(max_examples=300, deadline=None)
@given(
    units=st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=30),
    data=st.data(),
)
def test_checkpoint_never_passes_an_unfinished_record(units: list[int], data: st.DataObject) -> None:
    """Whatever order acknowledgements arrive in, the safe position only covers done records."""
    tracker = SequenceTracker()
    handles = [tracker.register(pos(100 + 7 * i)) for i in range(len(units))]
    remaining = {}
    for i, (handle, n) in enumerate(zip(handles, units, strict=True)):
        tracker.add_units(handle, n)
        tracker.seal(handle)
        remaining[i] = n
    acks = [i for i, n in enumerate(units) for _ in range(n)]
    order = data.draw(st.permutations(acks))
    previous = tracker.safe_position
    for i in order:
        tracker.finish(handles[i], 1)
        remaining[i] -= 1
        safe = tracker.safe_position
        if safe is not None:
            covered = [j for j, h in enumerate(handles) if h.position <= safe]
            assert all(remaining[j] == 0 for j in covered)
            # ... and it is the longest such prefix
            first_open = next((j for j in range(len(units)) if remaining[j] > 0), len(units))
            assert len(covered) == first_open
        if previous is not None:
            assert safe is not None and safe >= previous, "the safe position never moves back"
        previous = safe
    assert tracker.all_done()
    assert tracker.safe_position == handles[-1].position
