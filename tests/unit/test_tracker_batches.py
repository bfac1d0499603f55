"""Registering and sealing a whole processRecords batch at once behaves as record by record."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_worker.pipeline import InputRecord, ShardPipeline
from stream_worker.tracker import SequencePosition, SequenceTracker
from tests.unit.fakes import ScriptedClient
from tests.unit.test_pipeline import MemoryDeadLetters, event, make_pipeline


def test_register_all_refuses_an_out_of_order_batch_and_registers_none_of_it() -> None:
    tracker = SequenceTracker()
    tracker.register_all([SequencePosition(5)])
    with pytest.raises(ValueError, match="registered after"):
        tracker.register_all([SequencePosition(6), SequencePosition(8), SequencePosition(7)])
    assert tracker.unfinished_records == 1
    with pytest.raises(ValueError, match="registered after"):
        tracker.register_all([SequencePosition(5, 0)])
    handles = tracker.register_all([SequencePosition(6), SequencePosition(6, 1)])
    assert [h.position for h in handles] == [SequencePosition(6), SequencePosition(6, 1)]
    assert tracker.unfinished_records == 3


def test_unsealed_records_hold_the_checkpoint_until_seal_all() -> None:
    tracker = SequenceTracker()
    a, b, c = tracker.register_all([SequencePosition(n) for n in (1, 2, 3)])
    tracker.add_units(b)
    tracker.finish(b)
    assert tracker.safe_position is None, "nothing is sealed yet"
    tracker.seal_all([a, b, c])
    assert tracker.safe_position == SequencePosition(3)
    assert tracker.all_done()


@settings(max_examples=200, deadline=None)
@given(
    units=st.lists(st.integers(0, 3), min_size=1, max_size=30),
    order=st.randoms(use_true_random=False),
)
def test_batch_registration_gives_the_same_checkpoints_as_one_by_one(units: list[int], order: object) -> None:
    """Same units, same (shuffled) finishing order: the safe position after every step agrees."""
    import random

    assert isinstance(order, random.Random)
    one, many = SequenceTracker(), SequenceTracker()
    singles = [one.register(SequencePosition(i + 1)) for i in range(len(units))]
    batch = many.register_all([SequencePosition(i + 1) for i in range(len(units))])
    for handles, tracker in ((singles, one), (batch, many)):
        for handle, n in zip(handles, units, strict=True):
            if n:
                tracker.add_units(handle, n)
    for handle in singles:
        one.seal(handle)
    many.seal_all(batch)
    assert one.safe_position == many.safe_position
    finishes = [i for i, n in enumerate(units) for _ in range(n)]
    order.shuffle(finishes)
    for i in finishes:
        one.finish(singles[i])
        many.finish(batch[i])
        assert one.safe_position == many.safe_position
        assert one.pending_units == many.pending_units
    assert one.all_done() and many.all_done()


# -- the pipeline's use of them ---------------------------------------------------------------


def _pipeline() -> tuple[ShardPipeline, MemoryDeadLetters]:
    dead = MemoryDeadLetters()
    pipeline, _ = make_pipeline(ScriptedClient(lambda request, number: None), dead)
    return pipeline, dead


def test_counts_added_once_per_batch_equal_the_events_seen() -> None:
    pipeline, dead = _pipeline()
    try:
        records = []
        for i in range(30):
            lines = [json.dumps(event(i, f"s{i % 3}", kind)).encode() for kind in ("heartbeat", "game_round")]
            if i % 10 == 0:
                lines.append(b"{not json")
            records.append(InputRecord(b"\n".join(lines), str(100 + i), 0, "pk", 1_790_000_100.0))
        records.append(InputRecord(b"\x1f\x8bbroken", "200", 0, "pk", 1_790_000_100.0))
        pipeline.accept(records)
        assert pipeline.drain(timeout=10)
        tally = pipeline.telemetry.tally()
        assert tally["records"] == 31
        assert tally["events_received"] == 30 * 2 + 3 + 1
        # rounds of one session and game collapse: g-{i % 7} and s{i % 3} give 21 distinct pairs
        plays = {(f"s{i % 3}", f"g-{i % 7}") for i in range(30)}
        assert tally["dropped"] == {"not_an_interaction": 30, "collapsed": 30 - len(plays)}
        assert tally["dead_letters"] == {"malformed_json": 3, "corrupt_gzip": 1}
        assert tally["events_sent"] == len(plays)
        assert len(dead.entries) == 4
        assert pipeline.tracker.safe_position == SequencePosition(200)
    finally:
        pipeline.close()


def test_an_error_inside_a_batch_leaves_every_record_of_it_uncheckpointable() -> None:
    pipeline, _ = _pipeline()
    try:
        fine = [
            InputRecord(json.dumps(event(i, "s")).encode(), str(10 + i), 0, "pk", 1_790_000_100.0) for i in range(3)
        ]
        pipeline.accept(fine)
        assert pipeline.drain(timeout=10)
        assert pipeline.tracker.safe_position == SequencePosition(12)
        normalize = pipeline._normalizer.normalize
        calls = 0

        def fails_on_the_third(data: Any, source: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise RuntimeError("a bug")
            return normalize(data, source)

        pipeline._normalizer.normalize = fails_on_the_third  # type: ignore[method-assign]
        batch = [
            InputRecord(json.dumps(event(i, "t")).encode(), str(20 + i), 0, "pk", 1_790_000_100.0) for i in range(5)
        ]
        with pytest.raises(RuntimeError):
            pipeline.accept(batch)
        pipeline.drain(timeout=1)
        # the first two records of the failed batch were delivered, but none of the batch is sealed
        assert pipeline.tracker.safe_position == SequencePosition(12)
        assert pipeline.tracker.unfinished_records == 5
    finally:
        pipeline.close()
