"""``stream-worker process`` as the MultiLangDaemon runs it: a child process speaking the MultiLang
protocol on stdin/stdout, driven by :class:`~stream_worker.multilang_driver.MultiLangDriver`, delivering
to the Personalize emulator.

Every checkpoint request is audited the moment it arrives: the emulator must already hold every event
(and the dead-letter folder every dead letter) of every record at or below it. stdout carries only
protocol messages (the driver fails on anything else) and every stderr line is JSON (checked when each
child ends).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clickstream.capture import read_capture
from devstack.personalize.client import EmulatorProcess, error_fault, latency_fault, outage_fault
from stream_worker.multilang_driver import Checkpoint, CheckpointPolicy, MultiLangDriver, ProtocolError
from tests.integration.support import (
    DELIVER,
    FIXTURES,
    Expectation,
    SourcedRecord,
    batches,
    by_label,
    check_expected_file,
    dead_letter_entries,
    expect,
    json_lines,
    read_local_dead_letters,
    read_multiprocess_metrics,
    shard_records,
    stream_worker_command,
    wait_for,
    worker_env,
)

TRACKER = "tracker-processor-it"
SHARD = "shardId-000000000000"
#: Settings of every child: checkpoint whenever possible, short linger and retry cap (fast tests).
BASE_SETTINGS: dict[str, object] = {
    "checkpoint_interval_seconds": 0,
    "linger_seconds": 0.05,
    "retry_cap_seconds": 0.5,
    "dead_letter_max_age_seconds": 0.2,
}
EXIT_FATAL = 3
#: How long the driver waits for the child to answer one action (the longest legitimate wait is a few seconds).
DRIVER_TIMEOUT = 20.0


# --- the records ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def capture_records() -> list[SourcedRecord]:
    """kinesis_capture.jsonl as one shard receives it (its own, increasing sequence numbers)."""
    return shard_records(read_capture(FIXTURES / "kinesis_capture.jsonl"), SHARD)


@pytest.fixture(scope="module")
def all_records(capture_records: list[SourcedRecord]) -> list[SourcedRecord]:
    """The clean capture, then the records of broken_kinesis.jsonl numbered after it."""
    last = int(capture_records[-1].key)
    broken = shard_records(
        read_capture(FIXTURES / "broken_kinesis.jsonl"), SHARD, sequence=lambda i, _: str(last + 1 + i)
    )
    records = capture_records + broken
    check_expected_file(expect(broken), "broken_kinesis.jsonl")
    return records


@pytest.fixture
def emulator(personalize_emulator: EmulatorProcess) -> EmulatorProcess:
    personalize_emulator.create_tracker(TRACKER, quota_per_second=None)
    return personalize_emulator


# --- the child and its audit ------------------------------------------------------------------------------


@dataclass
class Child:
    driver: MultiLangDriver
    dead_letters: Path
    metrics: Path
    stderr_path: Path

    @property
    def checkpoints(self) -> list[Checkpoint]:
        return self.driver.checkpoints

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def send(self, records: Sequence[SourcedRecord]) -> None:
        self.driver.process_records([r.to_driver() for r in records])

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.driver.process.wait(timeout)


@contextlib.contextmanager
def shard_child(
    tmp_path: Path,
    emulator: EmulatorProcess,
    policy: CheckpointPolicy | None = None,
    *,
    tracking_id: str = TRACKER,
    extra_env: dict[str, str] | None = None,
    settings: Mapping[str, object] | None = None,
) -> Iterator[Child]:
    """A started ``stream-worker process`` child (initialized for SHARD); ended by closing its stdin.

    On the way out, every line the child wrote to stderr must be a JSON object.
    """
    dead_letters = tmp_path / "dead-letters"
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    stderr_path = tmp_path / "stderr.log"
    env = worker_env(
        emulator_url=emulator.url,
        tracking_id=tracking_id,
        dead_letter_url=dead_letters,
        metrics_dir=metrics,
        extra=extra_env,
        settings={**BASE_SETTINGS, **(settings or {})},
    )
    with stderr_path.open("wb") as stderr:
        driver = MultiLangDriver(
            stream_worker_command("process"),
            env=env,
            policy=policy or (lambda _: None),
            timeout=DRIVER_TIMEOUT,
            stderr=stderr,
        )
        driver.start()
        child = Child(driver, dead_letters, metrics, stderr_path)
        try:
            driver.initialize(SHARD)
            yield child
        finally:
            if driver.process.poll() is None:
                driver.close(timeout=5)
    json_lines(child.stderr())


@dataclass
class CheckpointAudit:
    """A checkpoint policy that checks, when a checkpoint arrives, that everything at and below it is
    done: its events accepted by the emulator and its dead letters on disk. ``answer`` decides the reply."""

    emulator: EmulatorProcess
    expectation: Expectation
    dead_letters: Path
    answer: Callable[[Checkpoint], str | None] = lambda _: None
    violations: list[str] = field(default_factory=list)
    audited: int = 0

    def __call__(self, checkpoint: Checkpoint) -> str | None:
        done = self.expectation.through(checkpoint.sequence_number)
        if checkpoint.sequence_number is not None and not done.records:
            self.violations.append(f"checkpoint {checkpoint.sequence_number} is below every record")
        accepted = set(self.emulator.event_ids(TRACKER))
        missing = [event_id for event_id in done.delivered_ids if event_id not in accepted]
        if missing:
            self.violations.append(
                f"checkpoint {checkpoint.sequence_number} during {checkpoint.during} passes "
                f"{len(missing)} undelivered events, e.g. {missing[:3]}"
            )
        written = dead_letter_entries(read_local_dead_letters(self.dead_letters))
        unwritten = done.dead_letter_entries() - written
        if unwritten:
            self.violations.append(
                f"checkpoint {checkpoint.sequence_number} passes {sum(unwritten.values())} unwritten dead letters"
            )
        self.audited += 1
        return self.answer(checkpoint)


def audited_child(
    tmp_path: Path,
    emulator: EmulatorProcess,
    expectation: Expectation,
    answer: Callable[[Checkpoint], str | None] = lambda _: None,
    *,
    extra_env: dict[str, str] | None = None,
    settings: Mapping[str, object] | None = None,
) -> tuple[contextlib.AbstractContextManager[Child], CheckpointAudit]:
    audit = CheckpointAudit(emulator, expectation, tmp_path / "dead-letters", answer)
    return shard_child(tmp_path, emulator, audit, extra_env=extra_env, settings=settings), audit


@contextlib.contextmanager
def sampled_gauge(child: Child, name: str) -> Iterator[list[float]]:
    """The sum of the gauge ``name`` over the child's multiprocess files, sampled every 50 ms while inside."""
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            samples.append(sum(read_multiprocess_metrics(child.metrics).get(name, {}).values()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join(5)


def accepted_ids(emulator: EmulatorProcess) -> Counter[str | None]:
    return Counter(emulator.event_ids(TRACKER))


def sequence(checkpoint: Checkpoint) -> int:
    assert checkpoint.sequence_number is not None
    return int(checkpoint.sequence_number)


def assert_honest_checkpoints(checkpoints: list[Checkpoint], audit: CheckpointAudit) -> None:
    assert not audit.violations, audit.violations
    assert audit.audited == len(checkpoints)
    numbered = [sequence(c) for c in checkpoints if c.sequence_number is not None]
    assert numbered == sorted(numbered), f"checkpoints went backwards: {numbered}"


# --- the tests ----------------------------------------------------------------------------------------------


def test_every_event_is_delivered_once_and_checkpoints_trail_delivery(
    tmp_path: Path, emulator: EmulatorProcess, all_records: list[SourcedRecord]
) -> None:
    expectation = expect(all_records)
    context, audit = audited_child(tmp_path, emulator, expectation)
    with context as child:
        for batch in batches(all_records, 20):
            child.send(batch)
        child.driver.shard_ended()
        assert child.driver.close() == 0

    assert accepted_ids(emulator) == Counter(expectation.delivered_ids)
    assert dead_letter_entries(read_local_dead_letters(child.dead_letters)) == expectation.dead_letter_entries()
    checkpoints = child.checkpoints
    assert_honest_checkpoints(checkpoints, audit)
    assert all(c.error is None for c in checkpoints)
    assert len(checkpoints) >= 3, "expected checkpoints along the way, not only at the end"
    numbered = [sequence(c) for c in checkpoints[:-1]]
    assert len(set(numbered)) == len(numbered), f"a position was checkpointed twice: {numbered}"
    final = checkpoints[-1]
    assert (final.during, final.sequence_number) == ("shardEnded", None), "the last checkpoint is SHARD_END"
    assert all(c.during == "processRecords" for c in checkpoints[:-1])


def test_stdout_is_protocol_only_and_stderr_is_json_even_at_debug_level(
    tmp_path: Path, emulator: EmulatorProcess, all_records: list[SourcedRecord]
) -> None:
    # Debug logging, dead letters and a failed checkpoint make the child log a lot: none of it may
    # reach stdout (the driver rejects any line that is not a protocol message).
    answers = iter(["ThrottlingException"])
    expectation = expect(all_records)
    context, audit = audited_child(
        tmp_path, emulator, expectation, lambda _: next(answers, None), extra_env={"LOG_LEVEL": "DEBUG"}
    )
    with context as child:
        for batch in batches(all_records, 50):
            child.send(batch)
        child.driver.shard_ended()
        assert child.driver.close() == 0

    logs = json_lines(child.stderr())
    assert logs, "the child logged nothing"
    assert all({"ts", "level", "logger", "msg"} <= set(entry) for entry in logs)
    messages = {entry["msg"] for entry in logs}
    assert "shard processor started" in messages
    assert "checkpoint failed; will retry" in messages
    assert {entry["level"] for entry in logs} >= {"debug", "info", "warning"}
    assert not audit.violations


def test_a_failed_checkpoint_is_retried_later(
    tmp_path: Path, emulator: EmulatorProcess, capture_records: list[SourcedRecord]
) -> None:
    answers = iter(["ThrottlingException"])
    expectation = expect(capture_records)
    context, audit = audited_child(tmp_path, emulator, expectation, lambda _: next(answers, None))
    with context as child:
        for batch in batches(capture_records, 20):
            child.send(batch)
        child.driver.shard_ended()
        assert child.driver.close() == 0

    checkpoints = child.checkpoints
    assert_honest_checkpoints(checkpoints, audit)
    failed, *later = checkpoints
    assert failed.error == "ThrottlingException"
    assert failed.sequence_number is not None
    retried = [c for c in later if c.sequence_number is not None]
    assert retried, "no checkpoint after the failed one"
    assert all(c.error is None for c in later)
    assert sequence(retried[0]) >= sequence(failed)
    assert (later[-1].during, later[-1].sequence_number) == ("shardEnded", None)
    assert accepted_ids(emulator) == Counter(expectation.delivered_ids)
    assert any(entry["msg"] == "checkpoint failed; will retry" for entry in json_lines(child.stderr()))


def test_a_throttled_shard_end_checkpoint_is_retried(
    tmp_path: Path, emulator: EmulatorProcess, capture_records: list[SourcedRecord]
) -> None:
    # KCL answers ThrottlingException when checkpoints come too fast; at the end of a shard, too, the
    # processor must try again rather than die (its children cannot start before SHARD_END is stored).
    records = capture_records[:60]
    expectation = expect(records)
    answers = iter(["ThrottlingException"])
    context, audit = audited_child(
        tmp_path, emulator, expectation, lambda c: next(answers, None) if c.sequence_number is None else None
    )
    with context as child:
        child.send(records)
        try:
            child.driver.shard_ended()
        except ProtocolError as exc:
            pytest.fail(f"the child died on a throttled SHARD_END checkpoint: {exc}")
        assert child.driver.close() == 0

    assert_honest_checkpoints(child.checkpoints, audit)
    shard_end = [(c.during, c.sequence_number, c.error) for c in child.checkpoints if c.sequence_number is None]
    assert shard_end == [("shardEnded", None, "ThrottlingException"), ("shardEnded", None, None)]


def test_a_lease_lost_at_the_shard_end_checkpoint_ends_the_child_quietly(
    tmp_path: Path, emulator: EmulatorProcess, capture_records: list[SourcedRecord]
) -> None:
    # ShutdownException answers a checkpoint when another worker holds the lease now: nothing is wrong
    # with this child, which stops as it does when the same answer comes during processRecords.
    records = capture_records[:60]
    with shard_child(tmp_path, emulator, lambda c: "ShutdownException" if c.sequence_number is None else None) as child:
        child.send(records)
        try:
            child.driver.shard_ended()
        except ProtocolError as exc:
            pytest.fail(f"the child died when its lease was lost at the shard end: {exc}")
        assert child.driver.close() == 0

    assert [c.sequence_number for c in child.checkpoints].count(None) == 1
    assert not [entry for entry in json_lines(child.stderr()) if entry["level"] == "critical"]


def test_a_checkpoint_refused_with_shutdown_exception_stops_the_shard(
    tmp_path: Path, emulator: EmulatorProcess, capture_records: list[SourcedRecord]
) -> None:
    # Calls take a while, so that events are still unsent when the lease turns out to be gone.
    emulator.set_faults([latency_fault(300, operation="PutEvents")])
    groups = batches(capture_records, 20)
    sent = 0
    lost_after: list[int] = []

    def answer(checkpoint: Checkpoint) -> str | None:
        lost_after.append(sent)
        return "ShutdownException"

    with shard_child(tmp_path, emulator, answer) as child:
        for batch in groups:
            sent += 1
            child.send(batch)
        # The daemon follows a lost lease with leaseLost, then ends the child.
        child.driver.lease_lost()
        assert child.driver.close() == 0

    assert len(child.checkpoints) == 1, [(c.sequence_number, c.during) for c in child.checkpoints]
    assert lost_after, "the child never asked for a checkpoint"
    before = [r for batch in groups[: lost_after[0]] for r in batch]
    after = [r for batch in groups[lost_after[0] :] for r in batch]
    assert after, "every batch was sent before the checkpoint; the test needs later ones"
    expectation = expect(before + after)
    sent_before = set(expectation.through(before[-1].key).delivered_ids)
    accepted = accepted_ids(emulator)
    assert set(accepted) <= sent_before, "events of records handed over after the lease was lost were sent"
    assert all(n == 1 for n in accepted.values())


def test_a_lease_lost_while_process_records_waits_for_capacity_ends_the_wait(
    tmp_path: Path, emulator: EmulatorProcess, capture_records: list[SourcedRecord]
) -> None:
    # Slow calls and a tiny high-water mark: process_records waits for capacity, checkpointing meanwhile;
    # that checkpoint says the lease is gone. The sender stops, so what is in flight never finishes: the
    # wait must end there, or the daemon can never tell the child leaseLost (the child hangs for good).
    emulator.set_faults([latency_fault(300, operation="PutEvents")])
    records = capture_records[5:65]
    expectation = expect(records)
    assert len(expectation.delivered_ids) > 3 * 20, "the batch must be far over the mark"
    settings = {"high_water_events": 20, "initial_concurrency": 2, "max_concurrency": 2}
    with shard_child(tmp_path, emulator, lambda _: "ShutdownException", settings=settings) as child:
        child.driver.timeout = 10
        started = time.monotonic()
        try:
            child.send(records)
        except ProtocolError as exc:
            pytest.fail(f"processRecords never answered after the lease was lost: {exc}")
        took = time.monotonic() - started
        child.driver.lease_lost()
        assert child.driver.close() == 0

    assert took < 10
    assert len(child.checkpoints) == 1, [(c.sequence_number, c.during) for c in child.checkpoints]
    assert child.checkpoints[0].during == "processRecords"
    accepted = accepted_ids(emulator)
    assert set(accepted) < set(expectation.delivered_ids), "delivery stopped with the lease"
    assert all(n == 1 for n in accepted.values())
    assert not [entry for entry in json_lines(child.stderr()) if entry["level"] == "critical"]


def test_shutdown_requested_drains_and_checkpoints_the_last_record(
    tmp_path: Path, emulator: EmulatorProcess, capture_records: list[SourcedRecord]
) -> None:
    records = capture_records[:100]
    expectation = expect(records)
    emulator.set_faults([latency_fault(300, operation="PutEvents")])
    context, audit = audited_child(tmp_path, emulator, expectation, settings={"shutdown_grace_seconds": 20})
    with context as child:
        for batch in batches(records, 25):
            child.send(batch)
        started = time.monotonic()
        child.driver.shutdown_requested()
        took = time.monotonic() - started
        assert child.driver.close() == 0

    assert took < 20
    checkpoints = child.checkpoints
    assert_honest_checkpoints(checkpoints, audit)
    assert any(c.during == "shutdownRequested" for c in checkpoints), "the drain was checkpointed"
    assert checkpoints[-1].sequence_number == records[-1].key
    assert accepted_ids(emulator) == Counter(expectation.delivered_ids)


def test_shutdown_requested_gives_up_after_the_grace_period_and_checkpoints_only_what_is_done(
    tmp_path: Path, emulator: EmulatorProcess, capture_records: list[SourcedRecord]
) -> None:
    records = capture_records[:100]
    expectation = expect(records)
    context, audit = audited_child(tmp_path, emulator, expectation, settings={"shutdown_grace_seconds": 1})
    with context as child:
        child.send(records[:50])
        wait_for(
            lambda: len(accepted_ids(emulator)) >= len(expectation.through(records[49].key).delivered_ids),
            timeout=20,
            what="the first half to be delivered",
        )
        emulator.set_faults([outage_fault(60, operation="PutEvents")])
        child.send(records[50:])
        started = time.monotonic()
        child.driver.shutdown_requested()
        took = time.monotonic() - started
        assert child.driver.close() == 0

    assert 0.9 <= took < 10, f"shutdownRequested took {took:.2f}s with a 1s grace period"
    assert_honest_checkpoints(child.checkpoints, audit)
    done = set(accepted_ids(emulator))
    assert done < set(expectation.delivered_ids), "the outage should have kept some events back"
    assert child.checkpoints, "the delivered first half is checkpointed"
    assert sequence(child.checkpoints[-1]) < int(records[-1].key)


def test_lease_lost_checkpoints_nothing(
    tmp_path: Path, emulator: EmulatorProcess, capture_records: list[SourcedRecord]
) -> None:
    records = capture_records[:100]
    emulator.set_faults([latency_fault(300, operation="PutEvents")])
    with shard_child(tmp_path, emulator) as child:
        for batch in batches(records, 25):
            child.send(batch)
        before = len(child.checkpoints)
        child.driver.lease_lost()
        assert child.driver.close() == 0

    assert len(child.checkpoints) == before
    assert all(c.during == "processRecords" for c in child.checkpoints)


@pytest.mark.parametrize("misconfiguration", ["unknown tracker", "access denied"])
def test_a_misconfigured_tracker_stops_the_child_without_checkpointing(
    tmp_path: Path, emulator: EmulatorProcess, capture_records: list[SourcedRecord], misconfiguration: str
) -> None:
    tracking_id = TRACKER
    if misconfiguration == "unknown tracker":
        tracking_id = "tracker-that-does-not-exist"
    else:
        emulator.set_faults([error_fault(code="AccessDeniedException", operation="PutEvents")])
    # Start at the first record with an event to deliver: nothing can ever be checkpointed.
    expectation = expect(capture_records)
    first = next(
        i for i, (_, outcomes) in enumerate(expectation.records) if any(o.outcome == DELIVER for o in outcomes)
    )
    records = capture_records[first:]
    with shard_child(tmp_path, emulator, tracking_id=tracking_id) as child:
        with contextlib.suppress(ProtocolError):
            for batch in batches(records, 20):
                child.send(batch)
            child.driver.shard_ended()
        status = child.wait_exit()

    assert status == EXIT_FATAL
    assert child.checkpoints == []
    assert accepted_ids(emulator) == Counter()
    assert any(entry["level"] == "critical" for entry in json_lines(child.stderr()))
    fatal = by_label(read_multiprocess_metrics(child.metrics), "stream_worker_fatal_errors_total", "code")
    expected_code = "ResourceNotFoundException" if misconfiguration == "unknown tracker" else "AccessDeniedException"
    assert fatal == {expected_code: 1.0}


def test_an_outage_holds_checkpoints_back_and_then_everything_is_delivered(
    tmp_path: Path, emulator: EmulatorProcess, capture_records: list[SourcedRecord]
) -> None:
    expectation = expect(capture_records)
    groups = batches(capture_records, 20)
    # A small pool, so that more batches wait for their retry than there are sender threads.
    context, audit = audited_child(tmp_path, emulator, expectation, settings={"max_concurrency": 4})
    with context as child:
        for batch in groups[:3]:
            child.send(batch)
        emulator.set_faults([outage_fault(2.0, operation="PutEvents")])
        for batch in groups[3:]:
            child.send(batch)
        # The outage is over two seconds after it began; retries (at most 0.5 s apart) deliver the rest.
        child.driver.timeout = 10
        try:
            child.driver.shard_ended()
        except ProtocolError as exc:
            pytest.fail(f"the shard did not drain after the outage ended: {exc}")
        assert child.driver.close() == 0

    assert_honest_checkpoints(child.checkpoints, audit)
    assert (child.checkpoints[-1].during, child.checkpoints[-1].sequence_number) == ("shardEnded", None)
    assert accepted_ids(emulator) == Counter(expectation.delivered_ids)
    assert emulator.stats()["calls"]["PutEvents"]["fault"] > 0, "the outage never hit a call"


def test_process_records_blocks_while_in_flight_events_are_above_the_high_water_mark(
    tmp_path: Path, emulator: EmulatorProcess, capture_records: list[SourcedRecord]
) -> None:
    high_water = 20
    latency = 0.4
    records = capture_records[5:65]
    expectation = expect(records)
    groups = batches(records, 20)
    units = [
        sum(1 for _, outcomes in expectation.records[i : i + 20] for o in outcomes if o.outcome == DELIVER)
        for i in range(0, len(records), 20)
    ]
    assert all(n > high_water for n in units), f"each batch must pass the mark on its own: {units}"
    emulator.set_faults([latency_fault(latency * 1000, operation="PutEvents")])

    with shard_child(
        tmp_path, emulator, settings={"high_water_events": high_water, "initial_concurrency": 4, "max_concurrency": 4}
    ) as child:
        with sampled_gauge(child, "stream_worker_in_flight_events") as samples:
            durations = []
            delivered_at_return = []
            for group in groups:
                started = time.monotonic()
                child.send(group)
                durations.append(time.monotonic() - started)
                delivered_at_return.append(len(accepted_ids(emulator)))
            child.driver.shard_ended()
        assert child.driver.close() == 0
        metrics = read_multiprocess_metrics(child.metrics)

    for took in durations:
        assert took >= latency * 0.9, f"process_records returned after {took:.2f}s, before any call could finish"
    cumulative = 0
    for group_units, delivered in zip(units, delivered_at_return, strict=True):
        cumulative += group_units
        assert delivered >= cumulative - high_water, "process_records returned with more in flight than the mark"
    assert samples and max(samples) <= high_water + max(units)
    waited = sum(metrics["stream_worker_backpressure_wait_seconds_total"].values())
    assert waited >= latency * 0.9 * len(groups)
    assert accepted_ids(emulator) == Counter(expectation.delivered_ids)


def test_metrics_in_the_multiprocess_directory_match_what_happened(
    tmp_path: Path, emulator: EmulatorProcess, all_records: list[SourcedRecord]
) -> None:
    expectation = expect(all_records)
    with shard_child(tmp_path, emulator) as child:
        for batch in batches(all_records, 40):
            child.send(batch)
        child.driver.shard_ended()
        assert child.driver.close() == 0

    metrics = read_multiprocess_metrics(child.metrics)
    accepted = emulator.stats()["eventsAccepted"]
    assert accepted == len(expectation.delivered_ids)
    assert sum(metrics["stream_worker_events_delivered_total"].values()) == accepted
    assert sum(metrics["stream_worker_records_total"].values()) == len(all_records)
    assert sum(metrics["stream_worker_events_received_total"].values()) == expectation.events_received
    assert by_label(metrics, "stream_worker_events_dropped_total", "reason") == dict(expectation.dropped)
    assert by_label(metrics, "stream_worker_dead_letters_total", "reason") == dict(expectation.dead_letters)
    ok_checkpoints = sum(1 for c in child.checkpoints if c.error is None)
    assert by_label(metrics, "stream_worker_checkpoints_total", "outcome") == {"ok": ok_checkpoints}
    calls = by_label(metrics, "stream_worker_put_events_calls_total", "outcome")
    assert calls == {"ok": emulator.stats()["calls"]["PutEvents"]["ok"]}


def test_records_read_late_go_out_without_a_second_linger_and_fresh_ones_linger(
    tmp_path: Path, emulator: EmulatorProcess, capture_records: list[SourcedRecord]
) -> None:
    """millisBehindLatest 0 with records that arrived two minutes ago (a stall, then one large read): every
    event that could join their groups has been read, so they go out at once although the linger is 30 s.
    The same records arriving now must wait for their linger (only full groups and logouts go out)."""
    records = capture_records[:60]
    expectation = expect(records)
    delivered = Counter(expectation.delivered_ids)
    assert delivered, "the records must hold deliverable events"
    settings = {"linger_seconds": 30.0}

    (tmp_path / "fresh").mkdir()
    (tmp_path / "late").mkdir()
    fresh = [dataclasses.replace(r, arrival_time=time.time()) for r in records]
    with shard_child(tmp_path / "fresh", emulator, settings=settings) as child:
        child.driver.process_records([r.to_driver() for r in fresh], millis_behind_latest=0)
        child.driver.process_records([], millis_behind_latest=0)  # a later, empty read: the horizon moves
        time.sleep(1.0)  # an absence can only be observed over a window
        early = sum(accepted_ids(emulator).values())
        # Only full groups and ended sessions (logouts) may go out (10 of 89 events here).
        assert early <= sum(delivered.values()) // 2, f"{early} fresh events went out before their linger"

    emulator.reset()
    emulator.create_tracker(TRACKER, quota_per_second=None)
    late = [dataclasses.replace(r, arrival_time=time.time() - 120.0) for r in records]
    with shard_child(tmp_path / "late", emulator, settings=settings) as child:
        started = time.monotonic()
        child.driver.process_records([r.to_driver() for r in late], millis_behind_latest=0)
        wait_for(lambda: accepted_ids(emulator) == delivered or None, timeout=15.0, what="the late events")
        took = time.monotonic() - started
    assert took < 15.0, f"the late events waited {took:.1f} s: the linger was not cut short"


def padded(record: SourcedRecord, padding: int) -> SourcedRecord:
    """``record`` as plain JSON lines, each event carrying ``padding`` bytes in a field the worker ignores."""
    raw = gzip.decompress(record.data) if record.data[:2] == b"\x1f\x8b" else record.data
    lines = []
    for line in raw.splitlines():
        event = json.loads(line)
        if isinstance(event, dict):
            event["padding"] = "x" * padding
        lines.append(json.dumps(event).encode())
    return dataclasses.replace(record, data=b"\n".join(lines))


def test_process_records_blocks_while_in_flight_bytes_are_above_their_mark(
    tmp_path: Path, emulator: EmulatorProcess, capture_records: list[SourcedRecord]
) -> None:
    """STREAM_WORKER_HIGH_WATER_BYTES reaches the child and bounds the raw bytes it holds, even when
    the events are few: each event here carries 100 KB that the worker ignores but must keep until it
    is delivered (a dead letter would need it), and Personalize is slow."""
    high_water_bytes = 1024 * 1024
    padding = 100_000
    latency = 0.3
    records = [padded(r, padding) for r in capture_records[5:45]]
    expectation = expect(records)
    assert len(expectation.delivered_ids) * padding > 3 * high_water_bytes, "the events must pass the mark"
    emulator.set_faults([latency_fault(latency * 1000, operation="PutEvents")])

    settings = {
        "high_water_bytes": high_water_bytes,
        "high_water_events": 10_000,
        "initial_concurrency": 2,
        "max_concurrency": 2,
    }
    with shard_child(tmp_path, emulator, settings=settings) as child:
        with sampled_gauge(child, "stream_worker_in_flight_bytes") as samples:
            started = time.monotonic()
            child.send(records)  # one GetRecords call of them all
            returned_after = time.monotonic() - started
            delivered_at_return = len(accepted_ids(emulator))
            child.driver.shard_ended()
        assert child.driver.close() == 0
        metrics = read_multiprocess_metrics(child.metrics)

    # The call could only return once enough was delivered to bring the bytes back under the mark.
    assert returned_after >= latency * 0.9
    assert delivered_at_return * padding >= len(expectation.delivered_ids) * padding - high_water_bytes - padding
    max_line = max(len(line) for r in records for line in r.data.splitlines())
    assert samples and max(samples) <= high_water_bytes + max_line
    assert sum(metrics["stream_worker_backpressure_wait_seconds_total"].values()) >= latency * 0.9
    assert accepted_ids(emulator) == Counter(expectation.delivered_ids)
