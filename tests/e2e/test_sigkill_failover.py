"""A worker crashes (SIGKILL of the supervisor, the KCL daemon and its shard children) while a live
stream is being delivered: the other worker takes its leases, nothing is lost, and what is re-sent is
only what lay past the crashed worker's last checkpoints.

The bound on duplicates. A worker checkpoints every ``CHECKPOINT_INTERVAL_SECONDS`` at the highest
record below which everything is acknowledged; the survivor restarts each of the victim's shards from
that checkpoint. So an event is re-sent only if

- it lies (one of its occurrences) in a record past the victim's last checkpoint of its shard, read from
  the lease table right after the crash, and it was first delivered at most ``CHECKPOINT_LAG_SECONDS``
  before the crash: a record is done within the batcher's linger (at most ``BACKLOG_LINGER_SECONDS``)
  of being read, and the next checkpoint comes within the checkpoint interval; 5 s are added for
  scheduling on a busy 2-core machine;
- or it straddles a checkpoint some shard processor restarted from (the takeover, or a graceful lease
  handoff of KCL 3's balancing, which drains and checkpoints first): a collapsed id (one per session,
  game and type) or a client retry occurs in records on both sides of it, so the restarted processor,
  which does not remember the earlier occurrence, sends it again however old it is.

Asserted per eventId: re-sent at most (1 if the first case applies) + (number of restart checkpoints it
straddles) times; in total, duplicates <= (events of the victim's shards first delivered in the lag
window before the crash) + (sum of those straddles).
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.harness import (
    BACKLOG_LINGER_SECONDS,
    CHECKPOINT_INTERVAL_SECONDS,
    FIRST_LEASE_TIMEOUT,
    Lease,
    Scenario,
    Worker,
    duplicates,
    read_stream,
    stream_origins,
    wait_until,
)

pytestmark = pytest.mark.e2e

SHARDS = 4
CHECKPOINT_LAG_SECONDS = CHECKPOINT_INTERVAL_SECONDS + BACKLOG_LINGER_SECONDS + 5.0
#: Records per second the producer puts: the capture takes ~18 s to go in (a live stream).
PRODUCE_RATE = 300


def is_leader(worker: Worker) -> bool:
    marker = f"Current worker {worker.worker_id} is a leader"
    return any(str(entry.get("msg", "")).startswith(marker) for entry in worker.log_lines())


def test_sigkill_failover(scenario: Scenario) -> None:
    started = time.monotonic()
    stream = scenario.create_stream(SHARDS)
    tracking_id = scenario.create_tracker()
    application = f"app-{stream}"
    capture = scenario.capture("failover", seed=202, sessions=250)
    first = scenario.worker(stream=stream, application=application, tracking_id=tracking_id, name="first")
    second = scenario.worker(stream=stream, application=application, tracking_id=tracking_id, name="second")
    workers = {first.worker_id: first, second.worker_id: second}

    def both_own_leases() -> dict[str, Lease] | None:
        for worker in workers.values():
            worker.check_alive()
        leases = scenario.leases(application)
        owners = {lease.owner for lease in leases.values()}
        return leases if len(leases) == SHARDS and set(workers) <= owners else None

    wait_until(
        both_own_leases, timeout=FIRST_LEASE_TIMEOUT, what=lambda: f"both workers to own leases\n{scenario.tails()}"
    )
    # Crash the worker that is not KCL 3's leader. The leader alone assigns leases, and its lock in the
    # CoordinatorState table is a fixed 2-minute lease (DynamoDBLockBasedLeaderDecider): after a crash
    # of the leader nothing would be reassigned for about two minutes.
    leader = wait_until(
        lambda: next((w for w in (first, second) if is_leader(w)), None), timeout=30, what="a leader in the logs"
    )
    victim = second if leader is first else first
    survivor = leader

    # A live stream, delivered by both workers; the crash comes in the middle of it, once the victim
    # has checkpointed every shard it owns.
    producer = scenario.start_producing(capture, stream, rate=PRODUCE_RATE)

    def midway() -> bool:
        for worker in workers.values():
            worker.check_alive()
        if len(scenario.received(tracking_id)) < len(capture.expected) * 2 // 5:
            return False
        owned = [lease for lease in scenario.leases(application).values() if lease.owner == victim.worker_id]
        return bool(owned) and all(lease.checkpoint and lease.checkpoint.isdigit() for lease in owned)

    wait_until(midway, timeout=90, what=lambda: f"40% of the events and victim checkpoints\n{scenario.tails()}")
    victim.sigkill()
    killed_at = time.time()
    at_kill = scenario.leases(application)
    delivered_at_kill = len(scenario.received(tracking_id))
    assert delivered_at_kill < len(capture.expected), "everything was delivered before the crash"
    producing_at_kill = not producer.done()
    victim_shards = {key for key, lease in at_kill.items() if lease.owner == victim.worker_id}
    assert victim_shards, f"the victim owned no lease at the crash: {at_kill}"
    assert victim.exit_code is not None and victim.exit_code < 0  # killed by the signal, no clean exit
    checkpoint_at_kill = {key: at_kill[key].checkpoint for key in victim_shards}

    # Failover: the survivor takes every lease.
    def survivor_owns_all() -> bool:
        survivor.check_alive()
        leases = scenario.leases(application)
        return len(leases) == SHARDS and all(lease.owner == survivor.worker_id for lease in leases.values())

    wait_until(survivor_owns_all, timeout=60, what=lambda: f"the survivor to own every lease\n{survivor.tail()}")
    failover_seconds = time.time() - killed_at
    producer.wait()
    received = scenario.wait_delivered(tracking_id, capture.expected, alive=[survivor])
    assert set(received) == capture.expected  # nothing lost, nothing unexpected

    # Duplicates: each explained by a restart from a checkpoint, and within the bound.
    extra = duplicates(received)
    origins = stream_origins(read_stream(scenario.kinesis, stream))
    assert set(received) <= origins.keys()  # the stream read back holds every delivered event
    first_received: dict[str, float] = {}
    for event in scenario.emulator.events(tracking_id, fields=["eventId", "receivedAt"]):
        first_received.setdefault(str(event["eventId"]), float(event["receivedAt"]))
    # Every start of a shard processor at a checkpoint: the survivor's takeover of the victim's shards,
    # and any graceful handoff KCL 3's leader made while balancing (it may even hand a lease to the
    # dead worker, which it counts as alive until its WorkerMetricStats are 60 s old).
    restarts = {
        (str(entry["shard"]), int(entry["from"]))
        for worker in (first, second)
        for entry in worker.log_lines()
        if entry.get("msg") == "shard processor started" and str(entry.get("from")).isdigit()
    }

    def past_kill_checkpoint(shard: str, sequence: int) -> bool:
        if shard not in victim_shards:
            return False
        checkpoint = checkpoint_at_kill[shard]
        return checkpoint is None or not checkpoint.isdigit() or sequence > int(checkpoint)

    def crash_resent(event_id: str) -> bool:
        # Past the victim's last checkpoint, and first delivered in the lag window before the crash
        # (+2 s: a call the victim had sent may be answered a moment after the kill).
        recent = killed_at - CHECKPOINT_LAG_SECONDS <= first_received[event_id] <= killed_at + 2.0
        return recent and any(past_kill_checkpoint(shard, sequence) for shard, sequence in origins[event_id])

    def straddled(event_id: str) -> int:
        """How many restart checkpoints have occurrences of the id on both sides."""
        return sum(
            1
            for shard, checkpoint in restarts
            if len({sequence > checkpoint for s, sequence in origins[event_id] if s == shard}) == 2
        )

    allowed = {event_id: int(crash_resent(event_id)) + straddled(event_id) for event_id in origins}
    unexplained = [
        (event_id, n, allowed[event_id], origins[event_id], round(first_received[event_id] - killed_at, 2))
        for event_id, n in extra.items()
        if n > allowed[event_id]
    ]
    assert not unexplained, (
        f"{len(unexplained)} of {len(extra)} duplicates are not explained by a restart from a checkpoint "
        f"(victim's at the crash: {checkpoint_at_kill}; restarts {sorted(restarts)}; lag <= "
        f"{CHECKPOINT_LAG_SECONDS:g}s): {unexplained[:5]}"
    )
    # The count, independently of checkpoints: what the victim's shards delivered in the lag window.
    in_window = sum(
        1
        for event_id, places in origins.items()
        if any(shard in victim_shards for shard, _ in places)
        and killed_at - CHECKPOINT_LAG_SECONDS <= first_received[event_id] <= killed_at + 2.0
    )
    straddling = sum(straddled(event_id) for event_id in origins)
    bound = in_window + straddling
    assert sum(extra.values()) <= bound

    # The survivor checkpoints every shard.
    def all_checkpointed() -> bool:
        leases = scenario.leases(application)
        return all(lease.checkpoint and lease.checkpoint.isdigit() for lease in leases.values())

    wait_until(all_checkpointed, timeout=30, what="a checkpoint on every shard")
    lags = sorted(killed_at - first_received[event_id] for event_id in extra)
    print(
        f"{len(capture.expected)} events; killed {victim.name} owning {sorted(victim_shards)} at {delivered_at_kill} "
        f"delivered (producer still running: {producing_at_kill}); failover took {failover_seconds:.1f}s; "
        f"duplicates {sum(extra.values())} <= bound {bound} "
        f"({in_window} in the {CHECKPOINT_LAG_SECONDS:g}s window, {straddling} straddling {len(restarts)} restarts); "
        f"re-sent events were first delivered {lags[0] if lags else 0:.2f}-{lags[-1] if lags else 0:.2f}s "
        f"before the crash; total {time.monotonic() - started:.1f}s"
    )
