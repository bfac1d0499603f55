"""``batch datasets`` publishes its files only when the checks pass, and never an empty lobby catalog.

The files of a run are staged and put in place only at the end: a run that fails (a query error), or
whose datasets fail a check (too small, an empty ``games.json``), leaves the previous run's files exactly
as they were, manifest included, and no temporary file behind. A SQLite platform database built here
(``tests.unit.test_batch_parallel``'s) in a local folder; S3 is in ``tests/integration/test_batch_datasets.py``.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batch.cli import main as batch_main
from batch.database import RowSource
from batch.datasets import DatasetBuilder, DatasetsSummary
from batch.errors import SourceError
from batch.queries import DatasetQueries
from batch.sinks import LocalFolderSink
from clickstream.mapping import EventMapping
from tests.unit.test_batch_parallel import platform_database

FILES = {
    "items.csv",
    "users.csv",
    "interactions.csv",
    "items.schema.json",
    "users.schema.json",
    "interactions.schema.json",
    "games.json",
    "manifest.json",
}


def run(url: str, out: Path, *, allow_small: bool = False) -> DatasetsSummary:
    builder = DatasetBuilder(
        RowSource(url, chunk_size=500),
        LocalFolderSink(out),
        DatasetQueries.load(),
        EventMapping.default(),
        allow_small=allow_small,
        parallel=False,
    )
    return builder.run()


def files(folder: Path) -> dict[str, bytes]:
    """Every file of the folder, hidden (temporary) ones included."""
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """Last night's good run in ``out``: its files as they are."""
    out = tmp_path / "out"
    summary = run(platform_database(tmp_path / "good.db", 3000), out)
    assert summary.published and not summary.problems
    before = files(out)
    assert set(before) == FILES
    return out, before


def without_enabled_games(path: Path, sessions: int) -> str:
    url = platform_database(path, sessions)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE games SET enabled = 0")
    connection.close()
    return url


def test_a_run_below_the_minimums_publishes_nothing(published: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    out, before = published
    summary = run(platform_database(tmp_path / "small.db", 40), out)
    assert not summary.published
    assert [(problem.check, problem.overridable) for problem in summary.problems] == [("interactions", True)]
    assert files(out) == before, "the previous files, manifest included, are as they were; no temporary file"


def test_allow_small_publishes_a_run_below_the_minimums(
    published: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    out, before = published
    summary = run(platform_database(tmp_path / "small.db", 40), out, allow_small=True)
    assert summary.published
    after = files(out)
    assert set(after) == FILES
    assert after["interactions.csv"] != before["interactions.csv"]
    assert b'"ready_for_training": false' in after["manifest.json"]


@pytest.mark.parametrize("allow_small", [False, True])
def test_an_empty_catalog_is_never_published(
    published: tuple[Path, dict[str, bytes]], tmp_path: Path, allow_small: bool
) -> None:
    """Every game disabled (or a database that is not the platform's): the datasets meet the minimums,
    yet an empty games.json would empty every lobby."""
    out, before = published
    summary = run(without_enabled_games(tmp_path / "disabled.db", 3000), out, allow_small=allow_small)
    assert summary.catalog_games == 0
    assert summary.minimums.ok
    assert [(problem.check, problem.overridable) for problem in summary.problems] == [("lobby catalog", False)]
    assert not summary.published
    assert files(out) == before


def test_a_failed_run_leaves_the_previous_files(
    published: tuple[Path, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog query fails after every dataset was written (staged)."""
    out, before = published
    rows = RowSource.rows

    def failing(self: RowSource, sql: str, *, what: str) -> Iterator[dict[str, Any]]:
        if what == "catalog":
            raise SourceError("catalog query failed: the connection was closed")
        return rows(self, sql, what=what)

    monkeypatch.setattr(RowSource, "rows", failing)
    with pytest.raises(SourceError, match="catalog query failed"):
        run(platform_database(tmp_path / "new.db", 3000), out)
    assert files(out) == before


def test_a_first_refused_run_leaves_an_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = run(without_enabled_games(tmp_path / "disabled.db", 3000), out)
    assert not summary.published
    assert files(out) == {}


def test_the_exit_message_names_the_empty_catalog_and_offers_no_override(
    published: tuple[Path, dict[str, bytes]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, before = published
    url = without_enabled_games(tmp_path / "disabled.db", 3000)
    status = batch_main(["datasets", "--out", str(out), "--database-url", url, "--allow-small"])
    stdout = capsys.readouterr().out
    assert status == 1
    assert "Ready for training." in stdout, "the minimums are met"
    assert f"NOT published: {out} is left as it was." in stdout
    assert "the lobby catalog would be empty: the catalog query returned no games" in stdout
    assert "pass --allow-small" not in stdout
    assert "files (not published):" in stdout
    assert files(out) == before


def test_the_exit_message_of_small_datasets_offers_allow_small(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = platform_database(tmp_path / "small.db", 40)
    status = batch_main(["datasets", "--out", str(tmp_path / "out"), "--database-url", url])
    stdout = capsys.readouterr().out
    assert status == 1
    assert "90 interactions: Personalize trains on 1,000 or more" in stdout
    assert "pass --allow-small to publish datasets below the minimums anyway" in stdout


def test_sigterm_while_staging_exits_143_and_discards_what_was_staged(
    published: tuple[Path, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod is stopped while the interactions are read: items and users are staged by then."""
    out, before = published
    rows = RowSource.rows
    discard = LocalFolderSink.discard
    discarded: list[int] = []

    def terminated(self: RowSource, sql: str, *, what: str) -> Iterator[dict[str, Any]]:
        if what == "catalog":
            os.kill(os.getpid(), signal.SIGTERM)
        return rows(self, sql, what=what)

    def counted(self: LocalFolderSink) -> None:
        discarded.append(len(self._staged))
        discard(self)

    monkeypatch.setattr(RowSource, "rows", terminated)
    monkeypatch.setattr(LocalFolderSink, "discard", counted)
    handler = signal.getsignal(signal.SIGTERM)
    url = platform_database(tmp_path / "new.db", 3000)
    with pytest.raises(SystemExit) as stopped:
        batch_main(["datasets", "--out", str(out), "--database-url", url])
    assert stopped.value.code == 143
    assert discarded and discarded[0] >= 3, "the staged files were discarded"
    assert files(out) == before, "no staged (hidden) file left, the published ones untouched"
    assert signal.getsignal(signal.SIGTERM) == handler, "main() put the previous handler back"


def test_a_publish_that_fails_partway_says_so_and_leaves_no_manifest(
    published: tuple[Path, dict[str, bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The second staged file cannot be put in place: the first one is already published."""
    out, _ = published
    inodes = {path.name: path.stat().st_ino for path in out.iterdir()}
    replace = Path.replace
    moved: list[str] = []

    def failing(self: Path, target: Any) -> Path:
        if moved:
            raise OSError(28, "No space left on device")
        moved.append(Path(target).name)
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", failing)
    url = platform_database(tmp_path / "new.db", 3000)
    status = batch_main(["datasets", "--out", str(out), "--database-url", url])
    captured = capsys.readouterr()
    assert status == 3
    assert "published partway" in captured.err and "there is no manifest" in captured.err, captured.err
    assert "nothing published" not in captured.out + captured.err
    after = files(out)
    assert "manifest.json" not in after, "a manifest only beside a complete set"
    assert set(after) == FILES - {"manifest.json"}, "no staged (hidden) file left"
    assert moved and (out / moved[0]).stat().st_ino != inodes[moved[0]], "the first file was published"
