"""``batch personalize apply`` and ``train`` as a subprocess (the ``batch`` console script) against the
devstack: moto's S3 holds what ``batch datasets`` wrote from a seeded platform database, and the
Personalize emulator imports it, trains the local recipes and serves the campaigns.

Each test applies its own copy of the shipped config with its own names (``t1-lobby``...), so the tests
share one devstack without seeing each other's resources. Everything polls with a deadline.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch.personalize.command import S3Datasets
from batch.personalize.plan import DatasetLocation
from tests.integration.support import wait_for
from tests.platform_db_fixture import SeededDatabase

BUCKET = "personalize-apply"
PREFIX = "datasets/run-1"
ROLE = "arn:aws:iam::000000000000:role/PersonalizeS3Access"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "batch" / "personalize" / "default.yaml"
BATCH = Path(sys.executable).with_name("batch")
CAMPAIGN_KEYS = {"sims", "popularity", "trending", "for_you"}
TIMEOUT = 180.0


@dataclass(frozen=True)
class Stack:
    """The devstack's environment and clients."""

    env: dict[str, str]
    edge_url: str
    aws: Any

    def personalize(self) -> Any:
        return self.aws("personalize")

    def runtime(self) -> Any:
        return self.aws("personalize-runtime")

    def s3(self) -> Any:
        return self.aws("s3")


def run_batch(*args: str, env: dict[str, str], cwd: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BATCH), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def base_env(stack: Stack, **settings: str) -> dict[str, str]:
    """The devstack's AWS environment, nothing of the caller's batch settings, and ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "BATCH_"))}
    env.update(stack.env)
    env.update(
        {
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "COLUMNS": "250",
        }
    )
    env.update(settings)
    return env


def config_file(folder: Path, name: str) -> Path:
    """The shipped config with every resource renamed ``<name>-...`` (``lobby`` -> ``name``)."""
    path = folder / f"{name}.yaml"
    path.write_text(DEFAULT_CONFIG.read_text().replace("lobby", name))
    return path


def apply_env(stack: Stack, config: Path, prefix: str = PREFIX) -> dict[str, str]:
    return base_env(
        stack,
        BATCH_S3_BUCKET=BUCKET,
        BATCH_S3_PREFIX=prefix,
        BATCH_PERSONALIZE_CONFIG=str(config),
        BATCH_PERSONALIZE_ROLE_ARN=ROLE,
        BATCH_PERSONALIZE_POLL_INITIAL_SECONDS="0.05",
        BATCH_PERSONALIZE_POLL_MAX_SECONDS="0.5",
        BATCH_PERSONALIZE_WAIT_TIMEOUT_SECONDS="150",
    )


def listed(call: Any, member: str, **arguments: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    token = None
    while True:
        page = call(**arguments, **({"nextToken": token} if token else {}))
        entries.extend(page[member])
        token = page.get("nextToken")
        if not token:
            return entries


def resources_of(personalize: Any, name: str) -> dict[str, list[dict[str, Any]]]:
    """Every resource of the config renamed ``name``, by kind, as the List calls show them."""
    groups = [g for g in listed(personalize.list_dataset_groups, "datasetGroups") if g["name"] == name]
    found: dict[str, list[dict[str, Any]]] = {"dataset groups": groups}
    if len(groups) != 1:
        return found
    group = groups[0]["datasetGroupArn"]
    datasets = listed(personalize.list_datasets, "datasets", datasetGroupArn=group)
    solutions = listed(personalize.list_solutions, "solutions", datasetGroupArn=group)
    found.update(
        {
            "schemas": [s for s in listed(personalize.list_schemas, "schemas") if s["name"].startswith(name + "-")],
            "datasets": datasets,
            "import jobs": [
                job
                for dataset in datasets
                for job in listed(
                    personalize.list_dataset_import_jobs, "datasetImportJobs", datasetArn=dataset["datasetArn"]
                )
            ],
            "event trackers": listed(personalize.list_event_trackers, "eventTrackers", datasetGroupArn=group),
            "filters": listed(personalize.list_filters, "Filters", datasetGroupArn=group),
            "solutions": solutions,
            "solution versions": [
                version
                for solution in solutions
                for version in listed(
                    personalize.list_solution_versions, "solutionVersions", solutionArn=solution["solutionArn"]
                )
            ],
            "campaigns": [
                c for c in listed(personalize.list_campaigns, "campaigns") if c["name"].startswith(name + "-")
            ],
        }
    )
    return found


ONE_OF_EACH = {
    "dataset groups": 1,
    "schemas": 3,
    "datasets": 3,
    "import jobs": 3,
    "event trackers": 1,
    "filters": 1,
    "solutions": 4,
    "solution versions": 4,
    "campaigns": 4,
}


def counts(resources: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    return {kind: len(entries) for kind, entries in resources.items()}


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def stack(devstack_env: dict[str, str], aws_edge_url: str, aws_client: Any) -> Stack:
    return Stack(devstack_env, aws_edge_url, aws_client)


@dataclass(frozen=True)
class Datasets:
    items: list[dict[str, str]]
    interactions: list[dict[str, str]]

    @property
    def unavailable(self) -> set[str]:
        return {row["ITEM_ID"] for row in self.items if row["AVAILABLE"] == "false"}


@pytest.fixture(scope="module")
def datasets(stack: Stack, seeded_sqlite: SeededDatabase, tmp_path_factory: pytest.TempPathFactory) -> Datasets:
    """``batch datasets`` from the seeded platform database to ``s3://BUCKET/PREFIX/``."""
    s3 = stack.s3()
    s3.create_bucket(Bucket=BUCKET)
    env = base_env(stack, BATCH_DATABASE_URL=seeded_sqlite.url, BATCH_S3_BUCKET=BUCKET, BATCH_S3_PREFIX=PREFIX)
    done = run_batch("datasets", env=env, cwd=tmp_path_factory.mktemp("datasets"))
    assert done.returncode == 0, done.stdout + done.stderr

    def rows(name: str) -> list[dict[str, str]]:
        body = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}")["Body"].read().decode()
        return list(csv.DictReader(io.StringIO(body)))

    found = Datasets(rows("items.csv"), rows("interactions.csv"))
    assert found.unavailable, "the seed disables some games"
    return found


@dataclass(frozen=True)
class Applied:
    result: subprocess.CompletedProcess[str]
    outputs: dict[str, Any]
    config: Path
    env: dict[str, str]
    folder: Path


@pytest.fixture(scope="module")
def applied(stack: Stack, datasets: Datasets, tmp_path_factory: pytest.TempPathFactory) -> Applied:
    """The first apply of the config ``t1-lobby``, with ``--outputs``."""
    folder = tmp_path_factory.mktemp("apply")
    config = config_file(folder, "t1-lobby")
    env = apply_env(stack, config)
    result = run_batch("personalize", "apply", "--outputs", str(folder / "outputs.json"), env=env, cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    return Applied(result, json.loads((folder / "outputs.json").read_text()), config, env, folder)


@pytest.fixture
def slow_emulator(stack: Stack) -> Iterator[None]:
    """Status steps of 0.5 s in the emulator for one test (each resource takes about a second)."""
    url = stack.edge_url + "/_emulator/settings"
    before = httpx.get(url, timeout=10).json()
    assert httpx.post(url, json={"stepSeconds": 0.5}, timeout=10).status_code == 200
    try:
        yield
    finally:
        httpx.post(url, json={"stepSeconds": before["stepSeconds"]}, timeout=10)


# ------------------------------------------------------------------------------------------ the tests


def test_apply_creates_everything_and_the_campaigns_recommend(
    applied: Applied, stack: Stack, datasets: Datasets
) -> None:
    outputs = applied.outputs
    stdout = applied.result.stdout
    personalize = stack.personalize()
    assert counts(resources_of(personalize, "t1-lobby")) == ONE_OF_EACH
    assert set(outputs) == {
        "version",
        "datasetGroupArn",
        "roleArn",
        "trackingId",
        "eventTrackerArn",
        "datasets",
        "filters",
        "solutions",
        "solutionVersions",
        "campaigns",
    }
    assert set(outputs["campaigns"]) == CAMPAIGN_KEYS
    assert set(outputs["solutionVersions"]) == CAMPAIGN_KEYS
    assert outputs["roleArn"] == ROLE
    tracker = personalize.describe_event_tracker(eventTrackerArn=outputs["eventTrackerArn"])["eventTracker"]
    assert outputs["trackingId"] == tracker["trackingId"]
    assert f"tracking id:       {outputs['trackingId']}" in stdout
    for key, arn in outputs["campaigns"].items():
        assert arn in stdout, key
        campaign = personalize.describe_campaign(campaignArn=arn)["campaign"]
        assert campaign["status"] == "ACTIVE"
        assert campaign["solutionVersionArn"] == outputs["solutionVersions"][key]
    assert outputs["filters"]["unavailable"] in stdout
    assert outputs["solutionVersions"]["sims"] in stdout
    assert "created 24" in stdout, stdout
    for solution_arn in outputs["solutions"].values():
        assert personalize.describe_solution(solutionArn=solution_arn)["solution"]["performAutoTraining"] is False
    jobs = resources_of(personalize, "t1-lobby")["import jobs"]
    described = [
        personalize.describe_dataset_import_job(datasetImportJobArn=job["datasetImportJobArn"])["datasetImportJob"]
        for job in jobs
    ]
    assert {job["dataSource"]["dataLocation"] for job in described} == {
        f"s3://{BUCKET}/{PREFIX}/{name}" for name in ("interactions.csv", "items.csv", "users.csv")
    }

    runtime = stack.runtime()
    player = datasets.interactions[0]["USER_ID"]
    game = datasets.interactions[0]["ITEM_ID"]
    similar = runtime.get_recommendations(campaignArn=outputs["campaigns"]["sims"], itemId=game, numResults=10)
    assert similar["itemList"], "SIMS answers for a played game"
    assert game not in [item["itemId"] for item in similar["itemList"]]
    for key in ("popularity", "trending", "for_you"):
        answer = runtime.get_recommendations(
            campaignArn=outputs["campaigns"][key],
            userId=player,
            numResults=25,
            filterArn=outputs["filters"]["unavailable"],
        )
        items = [item["itemId"] for item in answer["itemList"]]
        assert items, key
        assert not set(items) & datasets.unavailable, f"{key}: the filter leaves out unavailable games"
    # The tracking id takes events: an unavailable game played by 30 players now trends, yet stays filtered.
    hidden = sorted(datasets.unavailable)[0]
    latest = max(int(row["TIMESTAMP"]) for row in datasets.interactions)
    events = stack.aws("personalize-events")
    for number in range(30):
        events.put_events(
            trackingId=outputs["trackingId"],
            userId=f"streamed-{number}",
            sessionId=f"s-{number}",
            eventList=[{"eventType": "play", "itemId": hidden, "sentAt": latest + 60 + number}],
        )

    def trending(**filters: str) -> list[str]:
        answer = runtime.get_recommendations(
            campaignArn=outputs["campaigns"]["trending"], userId=player, numResults=10, **filters
        )
        return [item["itemId"] for item in answer["itemList"]]

    wait_for(lambda: hidden in trending(), timeout=30, what=f"{hidden} to trend")
    assert hidden not in trending(filterArn=outputs["filters"]["unavailable"])


def test_a_second_apply_creates_nothing(applied: Applied, stack: Stack) -> None:
    again = run_batch(
        "personalize", "apply", "--outputs", str(applied.folder / "again.json"), env=applied.env, cwd=applied.folder
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "existed 20, created 0, waited 0, updated 0" in again.stdout
    assert json.loads((applied.folder / "again.json").read_text()) == applied.outputs
    assert counts(resources_of(stack.personalize(), "t1-lobby")) == ONE_OF_EACH


def test_apply_imports_what_a_later_batch_datasets_wrote_and_only_that(
    stack: Stack, datasets: Datasets, seeded_sqlite: SeededDatabase, tmp_path: Path
) -> None:
    """The nightly CronJob: `batch datasets` rewrites the files, then `batch personalize apply` (no
    --reimport) imports them; apply on files it has imported already imports nothing."""
    prefix = "datasets/nightly"
    write_env = base_env(stack, BATCH_DATABASE_URL=seeded_sqlite.url, BATCH_S3_BUCKET=BUCKET, BATCH_S3_PREFIX=prefix)
    env = apply_env(stack, config_file(tmp_path, "t7-lobby"), prefix=prefix)
    personalize = stack.personalize()

    def import_jobs() -> list[dict[str, Any]]:
        return resources_of(personalize, "t7-lobby")["import jobs"]

    def step(*args: str, environment: dict[str, str]) -> str:
        done = run_batch(*args, env=environment, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    step("datasets", environment=write_env)
    step("personalize", "apply", environment=env)
    assert len(import_jobs()) == 3
    unchanged = step("personalize", "apply", environment=env)
    assert "created 0" in unchanged, unchanged
    assert len(import_jobs()) == 3

    time.sleep(1.1)  # S3's LastModified has whole seconds; the next night is hours later
    step("datasets", environment=write_env)
    next_night = step("personalize", "apply", environment=env)
    jobs = import_jobs()
    assert len(jobs) == 6, next_night
    assert all(job["status"] == "ACTIVE" for job in jobs)
    assert "created 3" in next_night, next_night
    assert next_night.count("after import job") == 3, next_night


def test_the_data_time_is_the_manifests_last_modified(stack: Stack, datasets: Datasets) -> None:
    """Not the files' own times: a multipart object's LastModified is when its upload began."""
    s3 = stack.s3()
    files = S3Datasets(s3, DatasetLocation(BUCKET, "times"))
    s3.put_object(Bucket=BUCKET, Key="times/items.csv", Body=b"ITEM_ID\n")
    assert files.published() is None, "no manifest: no complete set"
    s3.put_object(Bucket=BUCKET, Key="times/manifest.json", Body=b"{}\n")
    first = files.published()
    assert first == s3.head_object(Bucket=BUCKET, Key="times/manifest.json")["LastModified"]
    time.sleep(1.1)
    s3.put_object(Bucket=BUCKET, Key="times/items.csv", Body=b"ITEM_ID\n")
    assert files.published() == first, "a file written alone does not move the data time"
    s3.put_object(Bucket=BUCKET, Key="times/manifest.json", Body=b"{}\n")
    newest = files.published()
    assert first is not None and newest is not None and newest > first


IN_FLIGHT = ("CREATE PENDING", "CREATE IN_PROGRESS")


def interrupt_apply(env: dict[str, str], cwd: Path, sign: signal.Signals, when: Any, what: str) -> tuple[int, str, str]:
    """Start apply, send ``sign`` once ``when()`` holds (apply still running), return its status and output."""
    process = subprocess.Popen(
        [str(BATCH), "personalize", "apply"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(when, timeout=60, what=what, interval=0.05)
        assert process.poll() is None, f"apply ended before {what}"
        process.send_signal(sign)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    return process.returncode, stdout, stderr


def test_an_interrupted_apply_resumes_without_duplicates(
    stack: Stack, datasets: Datasets, slow_emulator: None, tmp_path: Path
) -> None:
    env = apply_env(stack, config_file(tmp_path, "t3-lobby"))
    personalize = stack.personalize()

    def in_flight(kind: str) -> bool:
        return any(entry["status"] in IN_FLIGHT for entry in resources_of(personalize, "t3-lobby").get(kind, []))

    # Ctrl-C while the imports run: exit 130, the summary so far, and how to resume.
    status, stdout, stderr = interrupt_apply(
        env, tmp_path, signal.SIGINT, lambda: in_flight("import jobs"), "the import jobs to start"
    )
    assert status == 130, stdout + stderr
    assert "(interrupted)" in stdout
    assert "run apply again to resume" in stderr
    assert counts(resources_of(personalize, "t3-lobby"))["campaigns"] == 0

    # SIGKILL while the solution versions train: nothing gets to clean up.
    status, _, _ = interrupt_apply(
        env, tmp_path, signal.SIGKILL, lambda: in_flight("solution versions"), "the solution versions to train"
    )
    assert status == -signal.SIGKILL
    killed = resources_of(personalize, "t3-lobby")
    assert counts(killed)["campaigns"] == 0, "killed before the campaigns"
    training = {v["solutionVersionArn"] for v in killed["solution versions"] if v["status"] in IN_FLIGHT}
    assert training

    resumed = run_batch("personalize", "apply", "--outputs", str(tmp_path / "outputs.json"), env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = resources_of(personalize, "t3-lobby")
    assert counts(after) == ONE_OF_EACH, "one of each: nothing was created twice"
    assert training <= {v["solutionVersionArn"] for v in after["solution versions"]}
    assert "waited" in resumed.stdout
    outputs = json.loads((tmp_path / "outputs.json").read_text())
    assert set(outputs["campaigns"]) == CAMPAIGN_KEYS
    assert all(
        personalize.describe_campaign(campaignArn=arn)["campaign"]["status"] == "ACTIVE"
        for arn in outputs["campaigns"].values()
    )


def test_a_failing_import_reports_the_failure_reason(stack: Stack, datasets: Datasets, tmp_path: Path) -> None:
    s3 = stack.s3()
    broken_prefix = "datasets/broken"
    for name in ("interactions.csv", "items.csv", "interactions.schema.json", "items.schema.json", "users.schema.json"):
        s3.copy_object(
            Bucket=BUCKET, Key=f"{broken_prefix}/{name}", CopySource={"Bucket": BUCKET, "Key": f"{PREFIX}/{name}"}
        )
    config = config_file(tmp_path, "t4-lobby")
    env = apply_env(stack, config, prefix=broken_prefix)
    failed = run_batch("personalize", "apply", env=env, cwd=tmp_path)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    personalize = stack.personalize()
    jobs = resources_of(personalize, "t4-lobby")["import jobs"]
    users_job = next(job for job in jobs if job["jobName"].startswith("t4-lobby-users-"))
    reason = personalize.describe_dataset_import_job(datasetImportJobArn=users_job["datasetImportJobArn"])[
        "datasetImportJob"
    ]["failureReason"]
    assert users_job["status"] == "CREATE FAILED"
    assert reason
    stderr = " ".join(failed.stderr.split())
    assert f"import job {users_job['jobName']} is CREATE FAILED: {' '.join(reason.split())}" in stderr
    assert "users.csv" in stderr
    assert "(failed)" in failed.stdout, "the summary is shown"
    assert counts(resources_of(personalize, "t4-lobby"))["solution versions"] == 0


def test_configuration_errors_exit_2(stack: Stack, tmp_path: Path) -> None:
    no_bucket = run_batch("personalize", "apply", env=base_env(stack), cwd=tmp_path)
    assert no_bucket.returncode == 2
    assert "BATCH_S3_BUCKET" in no_bucket.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_CONFIG.read_text().replace("solution: sims", "solution: nope"))
    wrong = run_batch(
        "personalize", "apply", "--config", str(bad), env=base_env(stack, BATCH_S3_BUCKET=BUCKET), cwd=tmp_path
    )
    assert wrong.returncode == 2
    assert "campaigns.sims.solution: no solution 'nope'" in wrong.stderr
    no_role = run_batch(
        "personalize",
        "apply",
        env=base_env(
            stack,
            BATCH_S3_BUCKET=BUCKET,
            BATCH_S3_PREFIX=PREFIX,
            BATCH_PERSONALIZE_CONFIG=str(config_file(tmp_path, "t6-lobby")),
        ),
        cwd=tmp_path,
    )
    assert no_role.returncode == 2
    assert "BATCH_PERSONALIZE_ROLE_ARN is not set" in no_role.stderr


def test_train_makes_new_versions_and_the_campaigns_serve_them(applied: Applied, stack: Stack) -> None:
    trained = run_batch(
        "personalize", "train", "--outputs", str(applied.folder / "trained.json"), env=applied.env, cwd=applied.folder
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    personalize = stack.personalize()
    after = json.loads((applied.folder / "trained.json").read_text())
    before = applied.outputs
    assert after["campaigns"] == before["campaigns"]
    assert after["trackingId"] == before["trackingId"]
    for key, campaign_arn in before["campaigns"].items():
        old, new = before["solutionVersions"][key], after["solutionVersions"][key]
        assert old != new
        assert f"campaign {key}: {old} -> {new}" in trained.stdout
        campaign = personalize.describe_campaign(campaignArn=campaign_arn)["campaign"]
        assert campaign["solutionVersionArn"] == new
        assert campaign["latestCampaignUpdate"]["status"] == "ACTIVE"
        version = personalize.describe_solution_version(solutionVersionArn=new)["solutionVersion"]
        assert version["status"] == "ACTIVE"
        assert version["trainingMode"] == "FULL"
    resources = resources_of(personalize, "t1-lobby")
    assert counts(resources) == {**ONE_OF_EACH, "solution versions": 8}
    answer = stack.runtime().get_recommendations(campaignArn=before["campaigns"]["popularity"], numResults=5)
    assert answer["itemList"]
