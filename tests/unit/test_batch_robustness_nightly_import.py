"""``batch personalize apply`` night after night: each night ``batch datasets`` rewrites the CSVs in S3, and
apply imports a dataset again when its file was written after its newest ACTIVE import job was created
(the CronJob runs apply without ``--reimport``). Files unchanged since the last import are not imported
again; ``--reimport`` still forces an import.

The fake Personalize of ``test_personalize_apply`` with the service's creation times (datetimes of a
wall clock the test moves), and the S3 files as a table of LastModified times.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from batch.personalize.plan import ConfigApplier, DatasetLocation
from batch.personalize.waiter import Backoff, Deadline, StatusWaiter
from tests.unit.test_personalize_apply import CONFIG, ROLE, SCHEMAS, FakePersonalize, no_sleep, trainer

LOCATION = DatasetLocation("datasets-bucket", "datasets")
CSV_FILES = ("interactions.csv", "items.csv", "users.csv")
NIGHT_1 = datetime(2026, 11, 1, 2, 30, tzinfo=UTC)


class WallClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class ClockedPersonalize(FakePersonalize):
    """Import jobs carry the wall clock's time as ``creationDateTime``, as the service's summaries do."""

    def __init__(self, clock: WallClock) -> None:
        super().__init__()
        self.wall = clock

    def create_dataset_import_job(self, **arguments: Any) -> dict[str, Any]:
        created = super().create_dataset_import_job(**arguments)
        self.resources["dataset-import-job"][created["datasetImportJobArn"]]["creationDateTime"] = self.wall.now
        return created


class S3Files:
    """LastModified of the files under the dataset prefix; ``write`` is what ``batch datasets`` does."""

    def __init__(self, clock: WallClock) -> None:
        self.clock = clock
        self.modified: dict[str, datetime] = {}
        self.asked: list[str] = []

    def write(self, *files: str) -> None:
        for file in files or CSV_FILES:
            self.modified[file] = self.clock.now

    def last_modified(self, file: str) -> datetime | None:
        self.asked.append(file)
        return self.modified.get(file)


def applier(
    fake: ClockedPersonalize, files: S3Files | None, *, reimport: bool = False, deadline: float = 3600.0
) -> ConfigApplier:
    waiter = StatusWaiter(Backoff(initial=0.01, maximum=0.1), Deadline(deadline), sleep=no_sleep, rng=random.Random(5))
    return ConfigApplier(
        cast(Any, fake),
        CONFIG,
        LOCATION,
        SCHEMAS.__getitem__,
        waiter,
        role_arn=ROLE,
        reimport=reimport,
        data_modified=files.last_modified if files is not None else None,
        now=lambda: fake.wall.now,
    )


def import_rows(run: ConfigApplier) -> list[tuple[str, str]]:
    return [(row.name, row.outcome) for row in run.ledger.rows if row.kind == "import job"]


def imported_files(fake: FakePersonalize, after: datetime) -> set[str]:
    """The files of the import jobs created after ``after``."""
    return {
        job["dataSource"]["dataLocation"].rsplit("/", 1)[-1]
        for job in fake.resources["dataset-import-job"].values()
        if job["creationDateTime"] > after
    }


def night(clock: WallClock, files: S3Files, fake: ClockedPersonalize, number: int) -> ConfigApplier:
    """Night ``number`` as the CronJob runs it: datasets (new files), then apply (no --reimport), train."""
    clock.now = NIGHT_1 + timedelta(days=number - 1)
    files.write()
    clock.advance(minutes=5)
    run = applier(fake, files)
    run.apply()
    clock.advance(minutes=30)
    trainer(fake).train([])
    return run


def test_every_night_imports_the_files_that_night_wrote_and_trains_on_them() -> None:
    clock = WallClock(NIGHT_1)
    fake = ClockedPersonalize(clock)
    files = S3Files(clock)
    night(clock, files, fake, 1)
    assert fake.count("dataset-import-job") == 3
    for number in (2, 3):
        started = NIGHT_1 + timedelta(days=number - 1)
        run = night(clock, files, fake, number)
        assert fake.count("dataset-import-job") == 3 * number, f"night {number} imported its files"
        assert imported_files(fake, started) == set(CSV_FILES)
        created = [row for row in run.ledger.rows if row.kind == "import job" and row.outcome == "created"]
        assert len(created) == 3
        assert all("written" in row.note and "after import job" in row.note for row in created), created
    # The versions train after the imports: each night's training sees that night's data.
    last_import = max(job["creationDateTime"] for job in fake.resources["dataset-import-job"].values())
    assert last_import < clock.now


def test_apply_again_on_unchanged_files_imports_nothing() -> None:
    clock = WallClock(NIGHT_1)
    fake = ClockedPersonalize(clock)
    files = S3Files(clock)
    night(clock, files, fake, 1)
    clock.advance(hours=1)
    again = applier(fake, files)
    again.apply()
    assert fake.count("dataset-import-job") == 3
    assert {outcome for _, outcome in import_rows(again)} == {"existed"}
    assert sorted(files.asked[-3:]) == sorted(CSV_FILES), "the files' times were looked at"


def test_only_the_rewritten_file_is_imported() -> None:
    clock = WallClock(NIGHT_1)
    fake = ClockedPersonalize(clock)
    files = S3Files(clock)
    night(clock, files, fake, 1)
    clock.advance(hours=3)
    files.write("items.csv")
    clock.advance(minutes=1)
    run = applier(fake, files)
    run.apply()
    assert fake.count("dataset-import-job") == 4
    assert imported_files(fake, clock.now - timedelta(minutes=1)) == {"items.csv"}
    assert sorted(outcome for _, outcome in import_rows(run)) == ["created", "existed", "existed"]


def test_a_missing_file_keeps_the_last_import() -> None:
    clock = WallClock(NIGHT_1)
    fake = ClockedPersonalize(clock)
    files = S3Files(clock)
    night(clock, files, fake, 1)
    del files.modified["users.csv"]
    clock.advance(days=1)
    files.write("items.csv", "interactions.csv")
    run = applier(fake, files)
    run.apply()
    assert fake.count("dataset-import-job") == 5
    assert ("lobby-users-20261101T023500Z", "existed") in import_rows(run)


def imports_in_progress() -> tuple[WallClock, ClockedPersonalize, S3Files]:
    """A first night's apply whose three import jobs are still running (the apply was killed)."""
    clock = WallClock(NIGHT_1)
    fake = ClockedPersonalize(clock)
    files = S3Files(clock)
    files.write()
    clock.advance(minutes=5)
    applier(fake, files).apply()
    for job in fake.resources["dataset-import-job"].values():
        job["status"] = "CREATE IN_PROGRESS"
        fake.progress[job["datasetImportJobArn"]] = 0
    return clock, fake, files


def test_files_written_while_an_import_ran_are_imported_after_it() -> None:
    """An apply killed while importing; `batch datasets` runs again before the next apply."""
    clock, fake, files = imports_in_progress()
    clock.advance(minutes=10)
    files.write()
    clock.advance(minutes=5)
    run = applier(fake, files)
    run.apply()
    assert fake.count("dataset-import-job") == 6, "waited on the three in progress, then imported the new files"
    outcomes = import_rows(run)
    assert [outcome for _, outcome in outcomes] == ["waited"] * 3 + ["created"] * 3
    assert all(job["status"] == "ACTIVE" for job in fake.resources["dataset-import-job"].values())
    waited = [row for row in run.ledger.rows if row.outcome == "waited" and row.kind == "import job"]
    assert all(row.note == "newer files: imported again after it" for row in waited)


def test_an_import_in_progress_of_the_current_files_is_only_waited_on() -> None:
    _, fake, files = imports_in_progress()
    run = applier(fake, files)
    run.apply()
    assert fake.count("dataset-import-job") == 3
    assert [outcome for _, outcome in import_rows(run)] == ["waited"] * 3


def test_reimport_forces_an_import_of_unchanged_files() -> None:
    clock = WallClock(NIGHT_1)
    fake = ClockedPersonalize(clock)
    files = S3Files(clock)
    night(clock, files, fake, 1)
    clock.advance(hours=1)
    forced = applier(fake, files, reimport=True)
    forced.apply()
    assert fake.count("dataset-import-job") == 6
    assert {row.note for row in forced.ledger.rows if row.kind == "import job"} == {"--reimport"}


def test_without_the_files_times_an_active_import_stands() -> None:
    """A ConfigApplier given no way to see the files (a caller of the library) keeps the ACTIVE imports."""
    clock = WallClock(NIGHT_1)
    fake = ClockedPersonalize(clock)
    files = S3Files(clock)
    night(clock, files, fake, 1)
    clock.advance(days=1)
    run = applier(fake, None)
    run.apply()
    assert fake.count("dataset-import-job") == 3
