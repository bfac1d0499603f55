"""Two ``stream-worker run`` workers share a 4-shard stream: the leases split between them, every
event arrives, and every shard has a checkpoint."""

from __future__ import annotations

import time

import pytest

from tests.e2e.harness import FIRST_LEASE_TIMEOUT, Lease, Scenario, duplicates, wait_until

pytestmark = pytest.mark.e2e

SHARDS = 4


def test_two_workers_four_shards(scenario: Scenario) -> None:
    started = time.monotonic()
    stream = scenario.create_stream(SHARDS)
    tracking_id = scenario.create_tracker()
    application = f"app-{stream}"
    capture = scenario.capture("two-workers", seed=101, sessions=250)
    first = scenario.worker(stream=stream, application=application, tracking_id=tracking_id, name="first")
    second = scenario.worker(stream=stream, application=application, tracking_id=tracking_id, name="second")
    workers = {first.worker_id: first, second.worker_id: second}

    # Both workers own leases at some point (KCL 3's leader assigns them; poll the table).
    owners_seen: dict[str, set[str]] = {first.worker_id: set(), second.worker_id: set()}
    last: dict[str, Lease] = {}

    def both_own_leases() -> bool:
        nonlocal last
        for worker in workers.values():
            worker.check_alive()
        last = scenario.leases(application)
        for lease in last.values():
            if lease.owner in owners_seen:
                owners_seen[lease.owner].add(lease.key)
        return len(last) == SHARDS and all(owners_seen.values())

    scenario.produce(capture, stream)
    wait_until(
        both_own_leases,
        timeout=FIRST_LEASE_TIMEOUT + 30,
        what=lambda: f"both workers to own leases; table: {last}\n{scenario.tails()}",
    )
    received = scenario.wait_delivered(tracking_id, capture.expected, alive=workers.values())
    delivered_after = time.monotonic() - started

    # Every expected event, nothing else.
    assert set(received) == capture.expected
    extra = duplicates(received)

    # A checkpoint for every shard, at a sequence number (not TRIM_HORIZON) once everything is done.
    def checkpointed() -> dict[str, Lease] | None:
        leases = scenario.leases(application)
        done = len(leases) == SHARDS and all(
            lease.checkpoint and lease.checkpoint.isdigit() for lease in leases.values()
        )
        return leases if done else None

    leases = wait_until(checkpointed, timeout=30, what="a sequence-number checkpoint on every shard")
    assert {lease.owner for lease in leases.values()} <= set(workers)
    # No lease changed hands (none was seen with two owners): nothing may have been re-sent.
    moved = [
        key
        for key, lease in leases.items()
        if sum(key in keys for keys in owners_seen.values()) > 1 or key not in owners_seen.get(lease.owner or "", set())
    ]
    if not moved:
        assert not extra, extra
    for worker in workers.values():
        worker.check_alive()
        assert worker.metric("stream_worker_daemon_up") == 1
    delivered_metric = sum(worker.metric("stream_worker_events_delivered_total") or 0 for worker in workers.values())
    assert delivered_metric >= len(capture.expected)
    print(
        f"{len(capture.expected)} events from {capture.records} records; delivered after {delivered_after:.1f}s; "
        f"duplicates {sum(extra.values())}; leases moved {moved}; leases seen per worker "
        f"{ {w: sorted(keys) for w, keys in owners_seen.items()} }; final owners "
        f"{ {k: v.owner for k, v in leases.items()} }"
    )
