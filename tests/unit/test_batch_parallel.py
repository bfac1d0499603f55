"""``BATCH_PARALLEL``: the interactions read and prepared in threads ahead of the writing.

The output is the same as without (``tests/unit/test_columnar_equivalence.py`` and
``tests/unit/test_arrow_reader.py`` compare the three ways on generated rows); here: an error in either
thread is raised in the main one, nothing hangs, the threads end when the consumer stops, and a
``batch datasets`` stopped by SIGINT or SIGTERM ends at once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch.columnar import ColumnarInteractions, PreparedChunk
from batch.database import Chunk, RowSource
from batch.datasets import DatasetBuilder
from batch.errors import SourceError
from batch.pipeline import ReadAheadError, read_ahead
from batch.queries import DatasetQueries
from batch.sinks import LocalFolderSink
from clickstream.mapping import EventMapping

pytestmark = pytest.mark.timeout(120)

SCHEMA = """
CREATE TABLE games (id TEXT PRIMARY KEY, title TEXT, provider TEXT, category TEXT, volatility TEXT, rtp REAL,
                    jurisdictions TEXT, release_date TEXT, enabled INTEGER);
CREATE TABLE players (id TEXT PRIMARY KEY, country TEXT, platform TEXT, currency TEXT);
CREATE TABLE game_sessions (id INTEGER PRIMARY KEY, session_id TEXT, player_id TEXT, game_id TEXT,
                            started_at TEXT, first_stake NUMERIC, currency TEXT, platform TEXT, country TEXT);
CREATE TABLE favorites (player_id TEXT, game_id TEXT, session_id TEXT, added_at TEXT);
"""


def platform_database(path: Path, sessions: int) -> str:
    with sqlite3.connect(path) as connection:
        connection.executescript(SCHEMA)
        connection.executemany(
            "INSERT INTO games VALUES (?, ?, 'acme', 'slots', 'high', 96.5, '[\"GB\"]', '2026-01-01', 1)",
            [(f"g-{i}", f"Game {i}") for i in range(20)],
        )
        connection.executemany("INSERT INTO players VALUES (?, 'GB', 'ios', 'GBP')", [(f"p-{i}",) for i in range(200)])
        connection.executemany(
            "INSERT INTO game_sessions (session_id, player_id, game_id, started_at, first_stake, currency, platform,"
            " country) VALUES (?, ?, ?, ?, 0.5, 'GBP', 'ios', 'GB')",
            (
                (
                    f"s-{i}",
                    f"p-{i % 200}",
                    f"g-{i % 20}",
                    f"2026-08-03 {i // 3600 % 24:02}:{i // 60 % 60:02}:{i % 60:02}",
                )
                for i in range(sessions)
            ),
        )
        connection.executemany(
            "INSERT INTO favorites VALUES (?, ?, 's-1', '2026-08-04 10:00:00')",
            [(f"p-{i}", f"g-{i % 20}") for i in range(50)],
        )
    connection.close()
    return f"sqlite:///{path}"


def builder(url: str, out: Path, *, parallel: bool) -> DatasetBuilder:
    return DatasetBuilder(
        RowSource(url, chunk_size=1000),
        LocalFolderSink(out),
        DatasetQueries.load(),
        EventMapping.default(),
        parallel=parallel,
    )


def read_ahead_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(("batch-", "test-ahead"))]


# --- read_ahead -------------------------------------------------------------------------------------


def test_items_come_in_order_prepared_in_another_thread() -> None:
    threads: set[str] = set()

    def square(value: int) -> int:
        threads.add(threading.current_thread().name)
        return value * value

    assert list(read_ahead(range(100), depth=3, prepare=square, name="test-ahead")) == [i * i for i in range(100)]
    assert threads == {"test-ahead"}


def test_an_error_of_the_iteration_is_raised_in_the_consumer_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise SourceError("the database went away")

    got: list[int] = []
    with pytest.raises(SourceError, match="went away"):
        for item in read_ahead(items(), name="test-ahead"):
            got.append(item)
    assert got == [1, 2]
    time.sleep(0.05)
    assert not read_ahead_threads()


def test_an_error_of_prepare_is_raised_in_the_consumer() -> None:
    def prepare(value: int) -> int:
        if value == 3:
            raise ValueError("bad chunk 3")
        return value

    got: list[int] = []
    with pytest.raises(ValueError, match="bad chunk 3"):
        got.extend(read_ahead(range(10), prepare=prepare, name="test-ahead"))
    assert got == [0, 1, 2]  # the items before the failed one, then the error


def test_a_base_exception_in_the_thread_is_named() -> None:
    def items() -> Iterator[int]:
        yield 1
        raise SystemExit(3)

    with pytest.raises(ReadAheadError, match="SystemExit"):
        list(read_ahead(items(), name="test-ahead"))


def test_a_consumer_that_stops_stops_the_producer_and_its_generator_is_closed() -> None:
    closed = threading.Event()
    produced: list[int] = []

    def items() -> Iterator[int]:
        try:
            for i in range(1_000_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    ahead = read_ahead(items(), depth=2, name="test-ahead")
    assert next(ahead) == 0
    ahead.close()  # what a KeyboardInterrupt or an error in the loop does to the generator
    assert closed.is_set()
    assert len(produced) <= 5  # bounded: one consumed, two waiting, one blocked, one being made
    assert not read_ahead_threads()


def test_an_error_in_the_consumer_ends_the_threads() -> None:
    with pytest.raises(KeyboardInterrupt):
        for item in read_ahead(read_ahead(range(1_000_000), name="test-ahead-1"), name="test-ahead-2"):
            if item == 10:
                raise KeyboardInterrupt
    assert not read_ahead_threads()


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        next(read_ahead(range(3), depth=0))


# --- batch datasets ---------------------------------------------------------------------------------


def test_parallel_and_sequential_runs_write_the_same_files(tmp_path: Path) -> None:
    url = platform_database(tmp_path / "platform.db", 120_000)
    summaries = {}
    for parallel in (False, True):
        summaries[parallel] = builder(url, tmp_path / str(parallel), parallel=parallel).run()
    for name in ("interactions.csv", "users.csv", "items.csv"):
        assert (tmp_path / "True" / name).read_bytes() == (tmp_path / "False" / name).read_bytes()
    assert summaries[True].interactions.read == 120_050
    assert summaries[True].interactions == summaries[False].interactions
    assert not read_ahead_threads()


def test_a_reader_error_mid_query_is_raised_in_the_main_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = platform_database(tmp_path / "platform.db", 120_000)
    frames = RowSource.frames
    reader_threads: list[str] = []

    def failing(self: RowSource, sql: str, **kwargs: object) -> Iterator[Chunk]:
        reader_threads.append(threading.current_thread().name)
        for count, chunk in enumerate(frames(self, sql, **kwargs)):  # type: ignore[arg-type]
            if count == 1:
                raise SourceError("interactions (game_sessions) query failed: disk I/O error")
            yield chunk

    monkeypatch.setattr(RowSource, "frames", failing)
    with pytest.raises(SourceError, match="disk I/O error"):
        builder(url, tmp_path / "out", parallel=True).run()
    assert reader_threads == ["batch-read"]
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not read_ahead_threads()


def test_an_error_while_preparing_is_raised_in_the_main_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = platform_database(tmp_path / "platform.db", 120_000)
    prepare = ColumnarInteractions.prepare

    def failing(self: ColumnarInteractions, source: object, chunk: Chunk, first_position: int) -> PreparedChunk:
        if first_position > 0:
            raise RuntimeError(f"prepare failed at row {first_position}")
        return prepare(self, source, chunk, first_position)  # type: ignore[arg-type]

    monkeypatch.setattr(ColumnarInteractions, "prepare", failing)
    with pytest.raises(RuntimeError, match="prepare failed at row 50000"):
        builder(url, tmp_path / "out", parallel=True).run()
    assert not read_ahead_threads()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_run_ends_at_once_and_leaves_no_process(tmp_path: Path, signum: signal.Signals) -> None:
    url = platform_database(tmp_path / "platform.db", 400_000)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "batch.cli", "datasets", "--out", str(out), "--database-url", url]
    process = subprocess.Popen(
        [*command, "--allow-small"],
        env={**os.environ, "BATCH_PARALLEL": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob(".interactions.csv*")) and process.poll() is None:
            assert time.monotonic() < deadline, "the interactions never started"
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be stopped"
        time.sleep(0.2)  # the read and prepare threads are busy now
        process.send_signal(signum)
        stopped = time.monotonic()
        process.wait(timeout=15)
        assert time.monotonic() - stopped < 10
        assert process.returncode != 0
        # nothing of the run is left: the process group (the run and anything it started) is empty
        with pytest.raises(ProcessLookupError):
            os.killpg(process.pid, 0)
        assert not (out / "manifest.json").exists()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
