"""A shard split under a running worker: the parent is drained and checkpointed at SHARD_END, its two
children are leased and consumed, and nothing is lost on either side of the split."""

from __future__ import annotations

import time

import pytest

from tests.e2e.harness import (
    FIRST_LEASE_TIMEOUT,
    Lease,
    Scenario,
    duplicates,
    list_shards,
    wait_stream_active,
    wait_until,
)

pytestmark = pytest.mark.e2e


def test_shard_split(scenario: Scenario) -> None:
    started = time.monotonic()
    stream = scenario.create_stream(1)
    tracking_id = scenario.create_tracker()
    application = f"app-{stream}"
    part1 = scenario.capture("before-split", seed=401, sessions=120)
    part2 = scenario.capture("after-split", seed=402, sessions=120)
    assert not part1.expected & part2.expected
    worker = scenario.worker(stream=stream, application=application, tracking_id=tracking_id, name="splitter")

    scenario.produce(part1, stream)
    scenario.wait_delivered(tracking_id, part1.expected, alive=[worker])
    delivered_before = time.monotonic() - started

    [parent] = list_shards(scenario.kinesis, stream)
    low = int(parent["HashKeyRange"]["StartingHashKey"])
    high = int(parent["HashKeyRange"]["EndingHashKey"])
    scenario.kinesis.split_shard(
        StreamName=stream, ShardToSplit=parent["ShardId"], NewStartingHashKey=str((low + high) // 2 + 1)
    )
    wait_stream_active(scenario.kinesis, stream)
    shards = list_shards(scenario.kinesis, stream)
    children = {s["ShardId"] for s in shards if s.get("ParentShardId") == parent["ShardId"]}
    assert len(children) == 2, shards
    summary = scenario.produce(part2, stream)
    assert set(summary["shards"]) == children, summary["shards"]  # part 2 landed on both children only

    # The parent ends at SHARD_END (KCL may later delete a finished parent's lease: watch as it goes);
    # both children are leased by the worker and checkpointed at a sequence number.
    seen_shard_end = False
    last: dict[str, Lease] = {}

    def split_handled() -> bool:
        nonlocal seen_shard_end, last
        worker.check_alive()
        last = scenario.leases(application)
        lease = last.get(parent["ShardId"])
        seen_shard_end |= lease is not None and lease.checkpoint == "SHARD_END"
        consumed = all(
            key in last and last[key].owner == worker.worker_id and (last[key].checkpoint or "").isdigit()
            for key in children
        )
        return seen_shard_end and consumed

    expected = part1.expected | part2.expected
    received = scenario.wait_delivered(tracking_id, expected, alive=[worker])
    wait_until(
        split_handled,
        timeout=FIRST_LEASE_TIMEOUT,
        what=lambda: f"SHARD_END on {parent['ShardId']} and checkpoints on {children}: {last}\n{worker.tail()}",
    )
    assert set(received) == expected
    extra = duplicates(received)
    assert not extra, extra  # one worker, no restart: every event exactly once
    children_leases = {key: last[key] for key in children}
    assert all(set(lease.parents) == {parent["ShardId"]} for lease in children_leases.values()), children_leases
    messages = [entry.get("msg", "") for entry in worker.log_lines()]
    assert "shard ended: drained and checkpointed at SHARD_END" in messages
    print(
        f"part 1 {len(part1.expected)} events (delivered after {delivered_before:.1f}s), part 2 "
        f"{len(part2.expected)} on {sorted(summary['shards'])}; parent {parent['ShardId']} at SHARD_END; "
        f"total {time.monotonic() - started:.1f}s"
    )
