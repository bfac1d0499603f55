"""``batch personalize apply`` night after night: each night ``batch datasets`` rewrites the CSVs in S3 and
writes ``manifest.json`` last, and apply imports a dataset again when the manifest was written after its
newest ACTIVE import job was created (the CronJob runs apply without ``--reimport``). Data unchanged since
the last import, or without a manifest (a publish that failed partway), is not imported again;
``--reimport`` still forces an import.

The fake Personalize of ``test_personalize_apply`` with the service's creation times (datetimes of a
wall clock the test moves), and S3 as the manifest's LastModified.
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
DATASETS = len(CSV_FILES)
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
    """The LastModified of ``manifest.json`` under the dataset prefix; ``write`` is what ``batch datasets``
    does when it publishes (the files, then the manifest last)."""

    def __init__(self, clock: WallClock) -> None:
        self.clock = clock
        self.manifest: datetime | None = None
        self.asked = 0

    def write(self) -> None:
        self.manifest = self.clock.now

    def fail_publish(self) -> None:
        """A publish that failed partway: some files replaced, the manifest deleted (first) and not written."""
        self.manifest = None

    def published(self) -> datetime | None:
        self.asked += 1
        return self.manifest


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
        data_modified=files.published if files is not None else None,
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
    asked = files.asked
    again = applier(fake, files)
    again.apply()
    assert fake.count("dataset-import-job") == 3
    assert {outcome for _, outcome in import_rows(again)} == {"existed"}
    assert files.asked - asked == DATASETS, "the manifest's time was looked at for each dataset"


def test_a_publish_that_failed_partway_keeps_the_last_import_until_a_complete_one() -> None:
    clock = WallClock(NIGHT_1)
    fake = ClockedPersonalize(clock)
    files = S3Files(clock)
    night(clock, files, fake, 1)
    clock.advance(days=1)
    files.fail_publish()
    run = applier(fake, files)
    run.apply()
    assert fake.count("dataset-import-job") == 3, "no manifest: no complete set to import"
    assert ("lobby-users-20261101T023500Z", "existed") in import_rows(run)
    clock.advance(hours=1)
    files.write()
    clock.advance(minutes=1)
    complete = applier(fake, files)
    complete.apply()
    assert fake.count("dataset-import-job") == 6
    assert imported_files(fake, clock.now - timedelta(minutes=1)) == set(CSV_FILES)


def test_files_whose_uploads_began_before_an_import_and_were_published_after_it_are_imported() -> None:
    """A multipart object's LastModified is when its upload began: staged uploads that began before an
    import job (here a --reimport of the previous files) and were published after it are still new."""
    clock = WallClock(NIGHT_1)
    fake = ClockedPersonalize(clock)
    files = S3Files(clock)
    night(clock, files, fake, 1)
    clock.advance(days=1)  # `batch datasets` begins its uploads (staged) now
    clock.advance(minutes=10)
    applier(fake, files, reimport=True).apply()
    assert fake.count("dataset-import-job") == 6
    clock.advance(minutes=10)
    files.write()  # published: the uploads completed, then the manifest
    clock.advance(minutes=1)
    run = applier(fake, files)
    run.apply()
    assert fake.count("dataset-import-job") == 9
    assert [outcome for _, outcome in import_rows(run)] == ["created"] * DATASETS


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
