"""Dead letters in S3 (``STREAM_WORKER_DEAD_LETTER_URL=s3://bucket/prefix``) against moto server.

The worker finds S3 the way it finds any AWS endpoint: ``AWS_ENDPOINT_URL_S3``. A store that cannot
write holds the replay back (it never reports "drained") and loses nothing once S3 comes back.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

from devstack.personalize.client import EmulatorProcess
from tests.integration.support import (
    FIXTURES,
    REGION,
    Expectation,
    dead_letter_entries,
    expect,
    json_lines,
    moto_server,
    parse_dead_letter_lines,
    replay_records,
    stream_worker_command,
    wait_for,
    worker_env,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

TRACKER = "tracker-dead-letters-s3-it"
PREFIX = "dead-letters/replay"
BROKEN = FIXTURES / "broken.jsonl"
#: Objects are <prefix>/YYYY/MM/DD/HH/<shard>-<pid>-<millis>-<n>.jsonl
KEY_PATTERN = re.compile(re.escape(PREFIX) + r"/\d{4}/\d{2}/\d{2}/\d{2}/replay_broken\.jsonl-\d+-\d+-\d+\.jsonl")


@dataclass(frozen=True)
class MotoServer:
    url: str

    def client(self) -> S3Client:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"mode": "standard", "max_attempts": 3}, s3={"addressing_style": "path"}),
        )


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto server on a free port for this module."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield MotoServer(url)


@pytest.fixture
def emulator(personalize_emulator: EmulatorProcess) -> EmulatorProcess:
    personalize_emulator.create_tracker(TRACKER, quota_per_second=None)
    return personalize_emulator


def replay_command(tmp_path: Path) -> list[str]:
    return stream_worker_command(
        "replay", str(BROKEN), "--summary-json", str(tmp_path / "summary.json"), "--no-progress"
    )


def replay_env(emulator: EmulatorProcess, moto: MotoServer, bucket: str) -> dict[str, str]:
    return worker_env(
        emulator_url=emulator.url,
        tracking_id=TRACKER,
        dead_letter_url=f"s3://{bucket}/{PREFIX}",
        extra={"AWS_ENDPOINT_URL_S3": moto.url},
        settings={"linger_seconds": 0.1, "dead_letter_batch_size": 7, "dead_letter_max_age_seconds": 0.2},
    )


def stored_dead_letters(client: S3Client, bucket: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The keys under the prefix, and every entry in them."""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX + "/"):
        keys += [item["Key"] for item in page.get("Contents", [])]
    entries: list[dict[str, Any]] = []
    for key in keys:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        entries += parse_dead_letter_lines(body.splitlines())
    return keys, entries


def check_stored(client: S3Client, bucket: str, expectation: Expectation, summary: dict[str, Any]) -> None:
    keys, entries = stored_dead_letters(client, bucket)
    assert keys and all(KEY_PATTERN.fullmatch(key) for key in keys), keys
    assert len(entries) == sum(summary["dead_letters"].values()) == sum(expectation.dead_letters.values())
    assert dead_letter_entries(entries) == expectation.dead_letter_entries()
    assert all(entry["reason"] and entry["detail"] for entry in entries)
    raw_lines = BROKEN.read_bytes().split(b"\n")
    for sequence, _, _, data in dead_letter_entries(entries):
        assert data == raw_lines[int(sequence) - 1], "a dead letter holds its line's original bytes"


def test_dead_letters_are_written_to_s3_under_the_prefix(
    tmp_path: Path, emulator: EmulatorProcess, moto: MotoServer
) -> None:
    bucket = f"dead-letters-{uuid.uuid4().hex[:12]}"
    client = moto.client()
    client.create_bucket(Bucket=bucket)
    expectation = expect(replay_records(BROKEN, time.time()))

    done = subprocess.run(
        replay_command(tmp_path), env=replay_env(emulator, moto, bucket), capture_output=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["drained"] is True
    check_stored(client, bucket, expectation, summary)
    keys, _ = stored_dead_letters(client, bucket)
    assert len(keys) > 1, "batches of 7 entries: several objects"


def test_an_unwritable_store_holds_the_replay_until_s3_accepts_and_nothing_is_lost(
    tmp_path: Path, emulator: EmulatorProcess, moto: MotoServer
) -> None:
    bucket = f"dead-letters-{uuid.uuid4().hex[:12]}"
    client = moto.client()
    expectation = expect(replay_records(BROKEN, time.time()))
    stderr_path = tmp_path / "stderr.log"

    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            replay_command(tmp_path), env=replay_env(emulator, moto, bucket), stdout=subprocess.PIPE, stderr=stderr
        )
    try:

        def failures() -> int:
            if process.poll() is not None:
                raise AssertionError(
                    f"the replay ended ({process.returncode}) while S3 could not take its dead letters"
                )
            text = stderr_path.read_text(encoding="utf-8", errors="replace")
            return text.count('"msg":"dead-letter write failed; retrying"')

        # The bucket does not exist yet: the first writes fail, are retried, and the replay waits.
        wait_for(lambda: failures() >= 2, timeout=30, what="two failed dead-letter writes")
        assert emulator.stats()["eventsAccepted"] == len(expectation.delivered_ids), "delivery is not held back"
        client.create_bucket(Bucket=bucket)
        stdout, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)

    assert process.returncode == 0, stderr_path.read_text(errors="replace")[-3000:]
    summary = json.loads(stdout)
    assert summary["drained"] is True and summary["unfinished_records"] == 0
    check_stored(client, bucket, expectation, summary)
    logs = json_lines(stderr_path.read_text(encoding="utf-8"))
    assert any(entry["msg"] == "dead-letter write failed; retrying" for entry in logs)
