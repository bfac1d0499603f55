"""Hostile records through a real ``stream-worker process`` child, driven over the MultiLang protocol by
:class:`~stream_worker.multilang_driver.MultiLangDriver` and delivering to the Personalize emulator.

Each bad record must end as dead letters with their reasons while the child keeps running: an exception
out of decoding would end the child, and KCL would restart it at the same record forever. Every valid
event, in every gzip member, is delivered; every checkpoint is audited the moment it arrives.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devstack.personalize.client import EmulatorProcess
from stream_worker.decode import MAX_LINES_PER_RECORD
from stream_worker.multilang_driver import Checkpoint, DriverRecord, MultiLangDriver, ProtocolError
from tests.integration.support import (
    dead_letter_entries,
    json_lines,
    read_local_dead_letters,
    stream_worker_command,
    wait_for,
    worker_env,
)

TRACKER = "tracker-bad-input-it"
SHARD = "shardId-000000000000"
ARRIVAL_MILLIS = 1_790_000_000_000
SETTINGS: dict[str, object] = {
    "checkpoint_interval_seconds": 0,
    "linger_seconds": 0.05,
    "retry_cap_seconds": 0.5,
    "dead_letter_max_age_seconds": 0.2,
}

#: (sequence number, position or None for the whole record, reason, original bytes)
DeadLetterKey = tuple[str, int | None, str, bytes]


def event(number: int) -> bytes:
    body = {
        "event_id": f"ev-{number}",
        "event_type": "game_launch",
        "player_id": f"p{number}",
        "session_id": f"s{number}",
        "game_id": "g1",
        "timestamp": ARRIVAL_MILLIS / 1000,
    }
    return json.dumps(body).encode()


def member(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@dataclass(frozen=True)
class Case:
    """A record, the events of it that must reach Personalize, and the dead letters it must leave."""

    key: str
    data: bytes
    delivered: tuple[str, ...] = ()
    dead: tuple[tuple[int | None, str, bytes], ...] = ()

    def dead_letters(self) -> Counter[DeadLetterKey]:
        return Counter((self.key, position, reason, raw) for position, reason, raw in self.dead)


NESTED = b'{"event_type": "game_launch", "x": ' + b"[" * 100_000
TRAILING = member(event(8) + b"\n") + member(event(9) + b"\n") + b"not gzip"
BOMB = member(b"{}\n" * 1_000_000)  # 3 KB of gzip, a million lines
CASES = [
    Case("1", event(1), ("ev-1",)),
    # The poison pill: nested deeper than the parser can go, between two valid events.
    Case("2", event(2) + b"\n" + NESTED + b"\n" + event(3), ("ev-2", "ev-3"), ((1, "malformed_json", NESTED),)),
    # Three gzip members, one stream: every event of every member.
    Case(
        "3",
        member(event(4) + b"\n") + member(event(5) + b"\n" + event(6) + b"\n") + member(event(7)),
        ("ev-4", "ev-5", "ev-6", "ev-7"),
    ),
    # The same nested line inside a gzip member.
    Case(
        "4",
        member(event(10) + b"\n") + member(NESTED + b"\n" + event(11)),
        ("ev-10", "ev-11"),
        ((1, "malformed_json", NESTED),),
    ),
    # Members followed by bytes that are not gzip: the whole record, as it came.
    Case("5", TRAILING, (), ((None, "corrupt_gzip", TRAILING),)),
    # More lines than a record may hold: one dead letter for the record, not a million.
    Case("6", BOMB, (), ((None, "too_large", BOMB),)),
    Case("7", event(12), ("ev-12",)),
]
#: Sent after every case is done, so that a processRecords checkpoint passes all of them.
LAST = Case("8", event(13), ("ev-13",))


@dataclass
class Audit:
    """Answers every checkpoint after checking that each case at or below it is done: its events
    accepted by the emulator and its dead letters on disk."""

    emulator: EmulatorProcess
    dead_letters: Path
    cases: list[Case]
    violations: list[str] = field(default_factory=list)

    def __call__(self, checkpoint: Checkpoint) -> str | None:
        passed = [
            case
            for case in self.cases
            if checkpoint.sequence_number is None or int(case.key) <= int(checkpoint.sequence_number)
        ]
        accepted = set(self.emulator.event_ids(TRACKER))
        written = dead_letter_entries(read_local_dead_letters(self.dead_letters))
        for case in passed:
            missing = [event_id for event_id in case.delivered if event_id not in accepted]
            unwritten = case.dead_letters() - written
            if missing or unwritten:
                self.violations.append(
                    f"checkpoint {checkpoint.sequence_number} during {checkpoint.during} passes record "
                    f"{case.key}: undelivered {missing}, unwritten dead letters {list(unwritten)}"
                )
        return None


@pytest.fixture
def emulator(personalize_emulator: EmulatorProcess) -> EmulatorProcess:
    personalize_emulator.create_tracker(TRACKER, quota_per_second=None)
    return personalize_emulator


@contextlib.contextmanager
def shard_child(tmp_path: Path, emulator: EmulatorProcess, audit: Audit) -> Iterator[MultiLangDriver]:
    """A ``stream-worker process`` child initialized for SHARD, its stderr in ``tmp_path/stderr.log``."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    env = worker_env(
        emulator_url=emulator.url,
        tracking_id=TRACKER,
        dead_letter_url=audit.dead_letters,
        metrics_dir=metrics,
        settings=SETTINGS,
    )
    with (tmp_path / "stderr.log").open("wb") as stderr:
        driver = MultiLangDriver(stream_worker_command("process"), env=env, policy=audit, timeout=20, stderr=stderr)
        driver.start()
        try:
            driver.initialize(SHARD)
            yield driver
        finally:
            if driver.process.poll() is None:
                driver.close(timeout=5)


def send(driver: MultiLangDriver, case: Case) -> None:
    record = DriverRecord(case.data, case.key, arrival_millis=ARRIVAL_MILLIS)
    try:
        driver.process_records([record])
    except ProtocolError as exc:
        pytest.fail(f"no answer to record {case.key} (child exit status {driver.process.poll()}): {exc}")


def test_bad_records_become_dead_letters_and_the_child_delivers_the_rest(
    tmp_path: Path, emulator: EmulatorProcess
) -> None:
    assert len(BOMB) < 5000 and gzip.decompress(BOMB).count(b"\n") > MAX_LINES_PER_RECORD
    dead_letters = tmp_path / "dead-letters"
    audit = Audit(emulator, dead_letters, [*CASES, LAST])
    ids_of_cases = [event_id for case in CASES for event_id in case.delivered]
    dead_of_cases = sum((case.dead_letters() for case in CASES), Counter[DeadLetterKey]())

    with shard_child(tmp_path, emulator, audit) as driver:
        for case in CASES:
            send(driver, case)
        wait_for(
            lambda: (
                Counter(emulator.event_ids(TRACKER)) == Counter(ids_of_cases)
                and dead_letter_entries(read_local_dead_letters(dead_letters)) == dead_of_cases
            ),
            timeout=20,
            what="every case delivered or dead-lettered",
        )
        # Everything sent is done, so the checkpoint of the next processRecords passes every case.
        send(driver, LAST)
        driver.shard_ended()
        assert driver.close() == 0

    assert Counter(emulator.event_ids(TRACKER)) == Counter([*ids_of_cases, *LAST.delivered])
    assert dead_letter_entries(read_local_dead_letters(dead_letters)) == dead_of_cases
    assert not audit.violations, audit.violations
    checkpoints = [(c.during, c.sequence_number, c.error) for c in driver.checkpoints]
    assert checkpoints[-1] == ("shardEnded", None, None), checkpoints
    assert all(error is None for _, _, error in checkpoints)
    numbered = [int(number) for during, number, _ in checkpoints[:-1] if during == "processRecords" and number]
    assert len(numbered) == len(checkpoints) - 1 and numbered == sorted(numbered), checkpoints
    assert numbered[-1] >= int(CASES[-1].key), f"no processRecords checkpoint passed every case: {checkpoints}"
    logs = json_lines((tmp_path / "stderr.log").read_text(encoding="utf-8", errors="replace"))
    assert not [entry for entry in logs if entry["level"] in {"error", "critical"}], "bad input is no error"
