"""A 30-second Personalize outage while a backlog is being delivered: checkpoints stop, memory stays
bounded (backpressure blocks process_records), the worker shows it is behind, and once Personalize is
back everything is delivered."""

from __future__ import annotations

import time

import pytest

from devstack.personalize.client import outage_fault
from tests.e2e.harness import Scenario, duplicates, wait_until

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 30.0
HIGH_WATER = 500
MAX_RECORDS = 200
#: Calls already answered when the outage began may finish and be checkpointed within this time.
SETTLE_SECONDS = 4.0


def test_personalize_outage(scenario: Scenario) -> None:
    started = time.monotonic()
    stream = scenario.create_stream(1)
    tracking_id = scenario.create_tracker()
    application = f"app-{stream}"
    # One event per record: one KCL batch of MAX_RECORDS records holds at most MAX_RECORDS events.
    capture = scenario.capture("outage", seed=501, sessions=250, multi_event_fraction=0.0)
    worker = scenario.worker(
        stream=stream,
        application=application,
        tracking_id=tracking_id,
        name="outage",
        high_water_events=HIGH_WATER,
        max_records=MAX_RECORDS,
    )
    summary = scenario.produce(capture, stream)
    [(shard, shard_summary)] = summary["shards"].items()
    last_sequence = shard_summary["last_sequence_number"]

    def delivery_started() -> bool:
        worker.check_alive()
        return len(scenario.received(tracking_id)) > 0

    wait_until(delivery_started, timeout=120, what=lambda: f"the first delivery\n{worker.tail()}", interval=0.2)
    scenario.emulator.set_faults([outage_fault(OUTAGE_SECONDS, operation="PutEvents")])
    outage_start = time.monotonic()
    outage_end = outage_start + OUTAGE_SECONDS

    samples: list[dict[str, float | str | None]] = []
    while time.monotonic() < outage_end - 1.0:
        worker.check_alive()
        metrics = worker.metrics()
        assert metrics is not None
        lease = scenario.leases(application).get(shard)
        samples.append(
            {
                "t": round(time.monotonic() - outage_start, 1),
                "in_flight": metrics.value("stream_worker_in_flight_events"),
                "behind": metrics.value("stream_worker_behind_latest_seconds", shard=shard),
                "checkpoint": lease.checkpoint if lease else None,
                "received": len(scenario.emulator.event_ids(tracking_id)),
            }
        )
        time.sleep(1.0)
    during = [s for s in samples if float(s["t"] or 0) >= SETTLE_SECONDS]
    assert len(during) >= 15, samples

    # Memory stays bounded: at most the high-water mark plus one KCL batch in flight.
    in_flight = [float(s["in_flight"] or 0) for s in samples]
    assert max(in_flight) <= HIGH_WATER + MAX_RECORDS, samples
    assert max(in_flight) > HIGH_WATER * 3 // 4, f"backpressure never engaged: {samples}"
    # Nothing is acknowledged, so nothing is checkpointed, during the outage.
    assert len({s["received"] for s in during}) == 1, during
    assert len({s["checkpoint"] for s in during}) == 1, during
    # The worker shows that it is behind while records wait in the stream.
    assert all(float(s["behind"] or 0) > 0 for s in during), during

    received = scenario.wait_delivered(tracking_id, capture.expected, alive=[worker])
    recovered_after = time.monotonic() - outage_end
    assert set(received) == capture.expected
    extra = duplicates(received)
    assert not extra, extra  # failed calls are retried, never half-delivered twice

    # Checkpoints resume up to the last record; the retries and the backpressure were counted.
    wait_until(
        lambda: (lease := scenario.leases(application).get(shard)) is not None and lease.checkpoint == last_sequence,
        timeout=30,
        what=f"the checkpoint at the last record {last_sequence}",
    )
    metrics = worker.metrics()
    assert metrics is not None
    assert (metrics.value("stream_worker_put_events_calls_total", outcome="retryable_error") or 0) > 0
    assert (metrics.value("stream_worker_backpressure_wait_seconds_total") or 0) > 0
    assert scenario.emulator.stats()["calls"]["PutEvents"]["fault"] > 0  # the outage answered calls
    print(
        f"{len(capture.expected)} events from {capture.records} records; in flight during the outage "
        f"max {max(in_flight):.0f} (bound {HIGH_WATER + MAX_RECORDS}); behind_latest "
        f"{[s['behind'] for s in during][:3]}...{[s['behind'] for s in during][-3:]}; everything delivered "
        f"{recovered_after:.1f}s after the outage; total {time.monotonic() - started:.1f}s"
    )
