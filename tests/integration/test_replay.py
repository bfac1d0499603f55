"""``stream-worker replay`` against the Personalize emulator.

The fixtures are replayed the way a user runs it (the console script, as a subprocess); the runs that
need to look inside the pipeline while it works (the adaptive limiter, the in-flight count) call
:func:`stream_worker.replay.replay` in-process.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clickstream.capture import write_capture
from clickstream.generator import generate_catalog, generate_events, inject_broken, pack_records
from clickstream.generator.config import DEFAULT_CONFIG, SHORT_SESSIONS
from devstack.personalize.client import EmulatorProcess, error_fault, latency_fault, outage_fault
from stream_worker import replay as replay_module
from stream_worker.assembly import build_pipeline as assembled_pipeline
from stream_worker.pipeline import ShardPipeline
from stream_worker.settings import WorkerSettings
from tests.integration.support import (
    FIXTURES,
    Expectation,
    check_expected_file,
    dead_letter_entries,
    expect,
    read_local_dead_letters,
    replay_records,
    stream_worker_command,
    worker_env,
)

TRACKER = "tracker-replay-it"
#: 2026-11-01T00:00Z: the generated captures start here, like the fixtures (replays run after it).
CAPTURE_START = 1_793_491_200.0
FIXTURE_FILES = ["clean.jsonl", "clean.jsonl.gz", "kinesis_capture.jsonl", "broken.jsonl", "broken_kinesis.jsonl"]


@pytest.fixture
def emulator(personalize_emulator: EmulatorProcess) -> EmulatorProcess:
    personalize_emulator.create_tracker(TRACKER, quota_per_second=None)
    return personalize_emulator


@dataclass
class ReplayRun:
    returncode: int
    stdout: str
    stderr: str
    summary: dict[str, Any] | None


def run_replay(
    tmp_path: Path,
    emulator: EmulatorProcess,
    *args: str,
    tracking_id: str | None = TRACKER,
    timeout: float = 60.0,
    settings: Mapping[str, object] | None = None,
) -> ReplayRun:
    """``stream-worker replay ARGS --summary-json ... --no-progress`` in a subprocess."""
    summary_path = tmp_path / "summary.json"
    env = worker_env(
        emulator_url=emulator.url,
        tracking_id=tracking_id,
        dead_letter_url=tmp_path / "dead-letters",
        settings={"linger_seconds": 0.1, **(settings or {})},
    )
    command = stream_worker_command("replay", *args, "--summary-json", str(summary_path), "--no-progress")
    done = subprocess.run(command, env=env, capture_output=True, timeout=timeout, check=False)
    summary = None
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    return ReplayRun(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
        summary,
    )


def assert_summary_matches(summary: dict[str, Any], expectation: Expectation) -> None:
    """Counts by reason as expected, and every event accounted for exactly once."""
    assert summary["drained"] is True, f"the replay did not drain: {summary}"
    assert summary["unfinished_records"] == 0
    assert summary["records"] == len(expectation.records)
    assert summary["events_received"] == expectation.events_received
    assert summary["events_sent"] == len(expectation.delivered_ids)
    assert summary["dropped"] == dict(expectation.dropped)
    assert summary["dead_letters"] == dict(expectation.dead_letters)
    # Every event has exactly one outcome; an undecodable record counts as one event, dead-lettered whole.
    outcomes = summary["events_sent"] + sum(summary["dropped"].values()) + sum(summary["dead_letters"].values())
    assert summary["events_received"] == outcomes
    assert summary["last_done_line"] == max(r.line for r, _ in expectation.records if r.line is not None)


# --- the fixtures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("capture", FIXTURE_FILES)
def test_replaying_a_fixture_delivers_each_event_once_and_dead_letters_the_rest(
    tmp_path: Path, emulator: EmulatorProcess, capture: str
) -> None:
    path = FIXTURES / capture
    expectation = expect(replay_records(path, time.time()))
    check_expected_file(expectation, capture)

    run = run_replay(tmp_path, emulator, str(path))

    assert run.returncode == 0, run.stderr[-3000:]
    assert run.summary is not None
    assert json.loads(run.stdout) == run.summary, "stdout holds the same summary"
    assert_summary_matches(run.summary, expectation)
    assert Counter(emulator.event_ids(TRACKER)) == Counter(expectation.delivered_ids)
    calls = emulator.stats()["calls"].get("PutEvents", {})
    assert calls.get("invalid", 0) == 0, "the worker sent a request Personalize refuses"
    assert run.summary["put_events_calls"] == calls.get("ok", 0)

    entries = read_local_dead_letters(tmp_path / "dead-letters")
    assert dead_letter_entries(entries) == expectation.dead_letter_entries()
    for entry in entries:
        assert entry["shardId"] == f"replay:{capture}"
        assert entry["detail"], entry
    if capture.startswith("clean") or capture == "kinesis_capture.jsonl":
        assert not expectation.dead_letters and not entries
    else:
        assert expectation.dead_letters, "a broken fixture must have dead letters"


def test_dead_letters_hold_the_original_bytes_of_the_broken_lines(tmp_path: Path, emulator: EmulatorProcess) -> None:
    raw_lines = (FIXTURES / "broken.jsonl").read_bytes().split(b"\n")
    run = run_replay(tmp_path, emulator, str(FIXTURES / "broken.jsonl"))
    assert run.returncode == 0, run.stderr[-3000:]
    entries = read_local_dead_letters(tmp_path / "dead-letters")
    assert entries
    for entry in entries:
        # broken.jsonl holds one event a line: a dead letter is its line, byte for byte (bad UTF-8 too).
        assert base64.b64decode(entry["data"]) == raw_lines[int(entry["sequenceNumber"]) - 1]


# --- under stress ------------------------------------------------------------------------------------------


def generated_capture(path: Path, *, sessions: int, seed: int, broken: float = 0.0, short: bool = False) -> int:
    """A generated Kinesis capture (multi-event and gzip records); returns the number of records."""
    catalog = generate_catalog(300, seed)
    events = generate_events(
        catalog,
        n_players=500,
        n_sessions=sessions,
        seed=seed,
        start=CAPTURE_START,
        config=SHORT_SESSIONS if short else DEFAULT_CONFIG,
    )
    records = pack_records(inject_broken(events, broken, seed), multi_event_fraction=0.2, gzip_fraction=0.1, seed=seed)
    return write_capture(path, records, kind="kinesis")


@pytest.fixture
def in_process(personalize_emulator_env: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> EmulatorProcess:
    """The emulator with the SDK pointed at it in this process, and no STREAM_WORKER_* from outside."""
    for name in [n for n in os.environ if n.startswith("STREAM_WORKER_")]:
        monkeypatch.delenv(name)
    personalize_emulator_env.create_tracker(TRACKER, quota_per_second=None)
    return personalize_emulator_env


@dataclass
class Watched:
    """The pipeline replay() builds, sampled from a thread while it runs."""

    pipelines: list[ShardPipeline]
    samples: list[tuple[float, float | None, int]]


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> Iterator[Watched]:
    """Samples (concurrency limit, rate limit, pending units) of the replay's pipeline every 10 ms."""
    seen = Watched([], [])
    build = assembled_pipeline

    def capturing(*args: Any, **kwargs: Any) -> ShardPipeline:
        pipeline = build(*args, **kwargs)
        seen.pipelines.append(pipeline)
        return pipeline

    monkeypatch.setattr(replay_module, "build_pipeline", capturing)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            if seen.pipelines:
                pipeline = seen.pipelines[0]
                limiter = pipeline.sender.limiter
                seen.samples.append((limiter.limit, limiter.rate, pipeline.tracker.pending_units))

    thread = threading.Thread(target=sample, name="pipeline-sampler", daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(5)


def test_every_event_arrives_once_through_throttling_errors_latency_and_an_outage(
    tmp_path: Path, in_process: EmulatorProcess, watched: Watched
) -> None:
    path = tmp_path / "generated.jsonl"
    generated_capture(path, sessions=150, seed=3, broken=0.01)
    expectation = expect(replay_records(path, time.time()))
    assert expectation.events_received > 20_000
    # A quota far below what the worker would send, 5xx on a fifth of the calls, slow answers, and a
    # two-second outage once the replay is under way.
    in_process.create_tracker(TRACKER, quota_per_second=20)
    in_process.set_faults(
        [
            error_fault(0.2, status=503, operation="PutEvents"),
            latency_fault(20, 30, operation="PutEvents"),
            outage_fault(2.0, operation="PutEvents", start_in_seconds=1.0),
        ],
        seed=5,
    )
    settings = WorkerSettings(
        tracking_id=TRACKER, dead_letter_url=str(tmp_path / "dead-letters"), linger_seconds=0.05, retry_cap_seconds=1.0
    )

    summary = replay_module.replay(path, settings, progress=False, drain_timeout=30)

    assert_summary_matches(summary, expectation)
    assert Counter(in_process.event_ids(TRACKER)) == Counter(expectation.delivered_ids)
    stats = in_process.stats()["calls"]["PutEvents"]
    assert stats["throttled"] > 0 and stats["fault"] > 0
    assert summary["throttles"] == stats["throttled"] > 0
    assert summary["retries"] > 0
    assert summary["calls_by_outcome"]["retryable_error"] == stats["fault"]
    assert summary["put_events_calls"] == stats["ok"]
    # The limiter backs off: a throttle cuts the concurrency limit and switches on a rate limit. A sender
    # that kept its pace would see several throttles per accepted call at this quota; this one sees
    # well under two, however the outage and the throttles interleave.
    limits = [limit for limit, _, _ in watched.samples]
    assert any(later < earlier for earlier, later in itertools.pairwise(limits)), "the concurrency limit never fell"
    assert any(rate is not None for _, rate, _ in watched.samples), "the rate limit never engaged"
    assert stats["throttled"] < 2 * stats["ok"], stats
    dead = read_local_dead_letters(tmp_path / "dead-letters")
    assert dead_letter_entries(dead) == expectation.dead_letter_entries()


def test_pending_events_stay_below_the_high_water_mark_plus_one_chunk(
    tmp_path: Path, in_process: EmulatorProcess, watched: Watched
) -> None:
    path = tmp_path / "generated.jsonl"
    generated_capture(path, sessions=120, seed=4, short=True)
    expectation = expect(replay_records(path, time.time()))
    chunk_units = [
        sum(1 for _, outcomes in chunk for o in outcomes if o.outcome == "deliver" or o.dead_letter)
        for chunk in batched(expectation.records, replay_module.CHUNK)
    ]
    high_water = 50
    assert min(chunk_units[:-1]) > high_water, f"every full chunk must pass the mark on its own: {chunk_units}"
    in_process.set_faults([latency_fault(100, operation="PutEvents")])
    settings = WorkerSettings(
        tracking_id=TRACKER,
        dead_letter_url=str(tmp_path / "dead-letters"),
        high_water_events=high_water,
        linger_seconds=0.05,
        initial_concurrency=4,
        max_concurrency=8,
    )

    summary = replay_module.replay(path, settings, progress=False, drain_timeout=30)

    assert_summary_matches(summary, expectation)
    pending = [units for _, _, units in watched.samples]
    assert len(pending) > 50
    assert max(pending) > high_water, "the mark was never reached: the test proves nothing"
    assert max(pending) <= high_water + max(chunk_units)
    assert Counter(in_process.event_ids(TRACKER)) == Counter(expectation.delivered_ids)


def batched(items: list[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


# --- the command line ------------------------------------------------------------------------------------


def test_rate_paces_the_replay(tmp_path: Path, emulator: EmulatorProcess) -> None:
    lines = (FIXTURES / "clean.jsonl").read_bytes().splitlines(keepends=True)[:150]
    path = tmp_path / "slice.jsonl"
    path.write_bytes(b"".join(lines))
    rate = 100.0

    started = time.monotonic()
    run = run_replay(tmp_path, emulator, str(path), "--rate", str(rate))
    wall = time.monotonic() - started

    assert run.returncode == 0, run.stderr[-3000:]
    assert run.summary is not None and run.summary["records"] == 150
    minimum = (150 - 1) / rate
    assert run.summary["elapsed_seconds"] >= minimum * 0.95
    assert wall < minimum + 20, "pacing slower than any reasonable overhead"


def test_a_missing_file_is_a_usage_error(tmp_path: Path, emulator: EmulatorProcess) -> None:
    missing = tmp_path / "no-such-capture.jsonl"
    run = run_replay(tmp_path, emulator, str(missing))
    assert run.returncode == 2
    assert str(missing) in run.stderr and "not a readable file" in run.stderr
    assert run.stdout == "" and run.summary is None


def test_a_missing_tracking_id_is_named(tmp_path: Path, emulator: EmulatorProcess) -> None:
    run = run_replay(tmp_path, emulator, str(FIXTURES / "broken.jsonl"), tracking_id=None)
    assert run.returncode == 2
    assert "STREAM_WORKER_TRACKING_ID" in run.stderr
    assert run.stdout == "" and run.summary is None
    assert emulator.stats()["eventsAccepted"] == 0


@pytest.mark.parametrize(
    ("setting", "value"),
    [("linger_seconds", "-1"), ("high_water_events", "3"), ("max_concurrency", "many")],
)
def test_a_bad_setting_is_named(tmp_path: Path, emulator: EmulatorProcess, setting: str, value: str) -> None:
    run = run_replay(tmp_path, emulator, str(FIXTURES / "broken.jsonl"), settings={setting: value})
    assert run.returncode == 2
    assert f"STREAM_WORKER_{setting.upper()}" in run.stderr
    assert run.stdout == "" and run.summary is None
    assert emulator.stats()["eventsAccepted"] == 0


def test_a_bad_rate_is_a_usage_error(tmp_path: Path, emulator: EmulatorProcess) -> None:
    run = run_replay(tmp_path, emulator, str(FIXTURES / "broken.jsonl"), "--rate", "0")
    assert run.returncode == 2
    assert "--rate" in run.stderr
