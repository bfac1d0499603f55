"""SIGTERM drains and checkpoints within the grace period; a new worker of the same application
resumes from those checkpoints: everything arrives, and nothing delivered before the stop is re-sent
(except collapsed ids that straddle the checkpoint, which any restart re-sends)."""

from __future__ import annotations

import time

import pytest

from tests.e2e.harness import (
    FIRST_LEASE_TIMEOUT,
    SHUTDOWN_GRACE_MILLIS,
    Scenario,
    duplicates,
    read_stream,
    stream_origins,
    wait_until,
)

pytestmark = pytest.mark.e2e

SHARDS = 2
#: The supervisor SIGKILLs the daemon 10 s after the grace period; a graceful stop must end well before.
STOP_MARGIN_SECONDS = 5.0


def test_sigterm_drains_and_resumes(scenario: Scenario) -> None:
    started = time.monotonic()
    stream = scenario.create_stream(SHARDS)
    tracking_id = scenario.create_tracker()
    application = f"app-{stream}"
    part1 = scenario.capture("part1", seed=301, sessions=200)
    part2 = scenario.capture("part2", seed=302, sessions=100)
    assert not part1.expected & part2.expected
    worker = scenario.worker(stream=stream, application=application, tracking_id=tracking_id, name="before")

    def leased() -> bool:
        worker.check_alive()
        leases = scenario.leases(application)
        return len(leases) == SHARDS and all(lease.owner == worker.worker_id for lease in leases.values())

    wait_until(leased, timeout=FIRST_LEASE_TIMEOUT, what=lambda: f"the worker to own both leases\n{worker.tail()}")
    producer = scenario.start_producing(part1, stream, rate=300)  # a live stream of ~15 s

    def partly_delivered() -> dict[str, int] | None:
        # Part of the stream is delivered, and every shard has had records (KCL may hand one shard its
        # first batch seconds after the other's): each has checkpointed once.
        worker.check_alive()
        if len(scenario.received(tracking_id)) < len(part1.expected) // 5:
            return None
        leases = scenario.leases(application)
        if not all((lease.checkpoint or "").isdigit() for lease in leases.values()):
            return None
        return {key: int(lease.checkpoint or 0) for key, lease in leases.items()}

    before_stop = wait_until(
        partly_delivered, timeout=60, what=lambda: f"a fifth of part 1 on every shard\n{worker.tail()}", interval=0.2
    )
    stopping = time.monotonic()
    worker.sigterm()
    code = worker.wait(timeout=SHUTDOWN_GRACE_MILLIS / 1000 + 15)
    took = time.monotonic() - stopping
    assert code == 0, worker.tail()
    assert took <= SHUTDOWN_GRACE_MILLIS / 1000 + STOP_MARGIN_SECONDS, f"the graceful stop took {took:.1f}s"
    delivered_before = scenario.received(tracking_id)
    assert 0 < len(delivered_before) < len(part1.expected) + len(part2.expected)
    assert not duplicates(delivered_before)

    at_stop = scenario.leases(application)
    assert len(at_stop) == SHARDS
    assert all(lease.checkpoint and lease.checkpoint.isdigit() for lease in at_stop.values()), at_stop
    checkpoints = {key: int(lease.checkpoint or 0) for key, lease in at_stop.items()}
    assert all(checkpoints[key] >= position for key, position in before_stop.items())
    messages = [entry.get("msg", "") for entry in worker.log_lines()]
    assert messages.count("shutdown requested: checkpointed what is done") == SHARDS
    drained = [e.get("drained") for e in worker.log_lines() if e.get("msg", "").startswith("shutdown requested")]
    assert drained == [True] * SHARDS
    assert "the KCL daemon stopped gracefully" in messages

    producer.wait()
    scenario.produce(part2, stream)
    after = scenario.worker(stream=stream, application=application, tracking_id=tracking_id, name="after")
    expected = part1.expected | part2.expected
    received = scenario.wait_delivered(tracking_id, expected, alive=[after])
    assert set(received) == expected

    # The new worker started each shard at the checkpoint the stopped one wrote.
    starts = {e.get("shard"): e.get("from") for e in after.log_lines() if e.get("msg") == "shard processor started"}
    assert {shard: int(position) for shard, position in starts.items()} == checkpoints, starts

    # Re-sent: only collapsed ids (or client retries) with occurrences on both sides of a checkpoint.
    origins = stream_origins(read_stream(scenario.kinesis, stream))
    assert set(received) <= origins.keys()  # the stream read back holds every delivered event
    extra = duplicates(received)
    for event_id in extra:
        sides = {sequence > checkpoints[shard] for shard, sequence in origins[event_id]}
        assert sides == {True, False}, (event_id, origins[event_id], checkpoints)
        assert event_id in delivered_before
    straddling = sum(
        1 for places in origins.values() if len({sequence > checkpoints[shard] for shard, sequence in places}) == 2
    )
    print(
        f"part 1 {len(part1.expected)} + part 2 {len(part2.expected)} events; {len(delivered_before)} delivered "
        f"before SIGTERM, which took {took:.1f}s (exit {code}); duplicates after resuming {sum(extra.values())} "
        f"(ids straddling a checkpoint: {straddling}); total {time.monotonic() - started:.1f}s"
    )
