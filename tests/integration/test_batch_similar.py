"""``batch similar`` on the local stack: the Personalize emulator trains SIMS and runs the batch inference
job, reading and writing moto's S3; the loader writes moto's DynamoDB. All through the devstack's edge.

The data has a known answer: every player plays one pair of games, always together, and everybody
plays ``g-hit``; so each game's most similar game is its pair (SIMS discounts the popular ``g-hit``).
Everything waits by polling with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from batch.cli import main as batch_main
from batch.similar.backoff import Backoff
from batch.similar.errors import InferenceJobFailedError, LoadFailedError
from batch.similar.handler import handle
from batch.similar.inference import JobRequest, JobWaiter, start_job
from batch.similar.loader import LoaderOptions, LoadSummary, SimilarGamesLoader
from batch.similar.model_version import ModelVersion
from batch.similar.output import SimilarGames
from batch.similar.table import SimilarGamesTable
from tests.devstack_fixture import AwsClientFactory
from tests.integration.personalize_data import INTERACTION_FIELDS, avro_schema, csv_bytes, wait_status

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_personalize import PersonalizeClient
    from mypy_boto3_s3 import S3Client

ROOT = Path(__file__).resolve().parents[2]
ROLE = "arn:aws:iam::000000000000:role/PersonalizeS3Access"
RECIPE = "arn:aws:personalize:::recipe/aws-sims"
PAIRS = [("g-01", "g-02"), ("g-03", "g-04"), ("g-05", "g-06"), ("g-07", "g-08")]
GAMES = [game for pair in PAIRS for game in pair] + ["g-hit"]
PARTNER = {a: b for a, b in PAIRS} | {b: a for a, b in PAIRS}
USERS = 60
T_END = 1_717_200_000
DEADLINE = 60.0

INTERACTIONS_SCHEMA = avro_schema("Interactions", INTERACTION_FIELDS)
ITEMS_SCHEMA = avro_schema(
    "Items", [{"name": "ITEM_ID", "type": "string"}, {"name": "CATEGORY", "type": "string", "categorical": True}]
)


def interactions_csv() -> bytes:
    """1020 plays: each player's pair 7 times each, interleaved, and g-hit 3 times."""
    rows: list[list[Any]] = []
    for user in range(USERS):
        first, second = PAIRS[user % len(PAIRS)]
        for index, game in enumerate([first, second] * 7 + ["g-hit"] * 3):
            rows.append([f"u-{user:02d}", game, T_END - 86_400 + user * 60 + index, "play"])
    return csv_bytes(["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"], rows)


def poll(what: str, check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
        time.sleep(0.05)


@dataclass(frozen=True)
class Sims:
    bucket: str
    solution_name: str
    versions: list[str]  # oldest first
    env: dict[str, str]


@pytest.fixture(scope="module")
def sims(aws_client: AwsClientFactory, devstack_env: dict[str, str]) -> Sims:
    """A bucket with the datasets (as ``batch datasets`` lays them out), a SIMS solution, two ACTIVE versions."""
    run = uuid.uuid4().hex[:8]
    bucket = f"similar-it-{run}"
    s3: S3Client = aws_client("s3")
    personalize: PersonalizeClient = aws_client("personalize")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="datasets/interactions.csv", Body=interactions_csv())
    items = csv_bytes(["ITEM_ID", "CATEGORY"], [[game, "slots"] for game in GAMES])
    s3.put_object(Bucket=bucket, Key="datasets/items.csv", Body=items)
    s3.put_object(Bucket=bucket, Key="datasets/manifest.json", Body=b'{"ready_for_training": true}\n')

    group = personalize.create_dataset_group(name=f"similar-{run}")["datasetGroupArn"]
    wait_status(personalize, group, timeout=DEADLINE)
    for kind, schema in (("INTERACTIONS", INTERACTIONS_SCHEMA), ("ITEMS", ITEMS_SCHEMA)):
        schema_arn = personalize.create_schema(name=f"similar-{run}-{kind.lower()}", schema=json.dumps(schema))[
            "schemaArn"
        ]
        dataset = personalize.create_dataset(
            name=f"similar-{run}-{kind.lower()}", schemaArn=schema_arn, datasetGroupArn=group, datasetType=kind
        )["datasetArn"]
        wait_status(personalize, dataset, timeout=DEADLINE)
        job = personalize.create_dataset_import_job(
            jobName=f"similar-{run}-{kind.lower()}",
            datasetArn=dataset,
            dataSource={"dataLocation": f"s3://{bucket}/datasets/{kind.lower()}.csv"},
            roleArn=ROLE,
        )["datasetImportJobArn"]
        wait_status(personalize, job, timeout=DEADLINE)
    name = f"similar-{run}-sims"
    solution = personalize.create_solution(
        name=name, datasetGroupArn=group, recipeArn=RECIPE, eventType="play", performAutoTraining=False
    )["solutionArn"]
    wait_status(personalize, solution, timeout=DEADLINE)
    versions = []
    for _ in range(2):
        version = personalize.create_solution_version(solutionArn=solution)["solutionVersionArn"]
        wait_status(personalize, version, timeout=DEADLINE)
        versions.append(version)
    env = {
        **devstack_env,
        "BATCH_S3_BUCKET": bucket,
        "BATCH_S3_PREFIX": "datasets",
        "BATCH_PERSONALIZE_ROLE_ARN": ROLE,
        "BATCH_SIMILAR_SOLUTION_NAME": name,
        "BATCH_SIMILAR_POLL_INITIAL_SECONDS": "0.05",
        "BATCH_SIMILAR_POLL_MAX_SECONDS": "0.5",
        "BATCH_SIMILAR_JOB_TIMEOUT_SECONDS": "60",
        "BATCH_SIMILAR_FENCE_SECONDS": "0",
    }
    return Sims(bucket, name, versions, env)


@pytest.fixture
def batch_env(sims: Sims, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The stack's and the batch's environment for in-process runs (nothing of the caller's)."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "BATCH_")):
            monkeypatch.delenv(key)
    for key, value in sims.env.items():
        monkeypatch.setenv(key, value)
    yield sims.env


def table_name() -> str:
    return f"similar-{uuid.uuid4().hex[:8]}"


def rows(dynamodb: DynamoDBClient, table: str, key: str = "gameId") -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            found[item[key]["S"]] = dict(item)
    return found


def similar_of(row: dict[str, Any]) -> list[str]:
    return [entry["S"] for entry in row["similar"]["L"]]


def run_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    status = batch_main(["similar", *args, "--json"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out[captured.out.index("{") :]) if "{" in captured.out else {}
    return status, summary, captured.err


def output_folder(s3: S3Client, bucket: str, job_name: str) -> str:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"similar/{job_name}/output/")
    keys = [entry["Key"] for entry in listed.get("Contents", [])]
    assert keys == [f"similar/{job_name}/output/items.jsonl.out"]
    return f"s3://{bucket}/similar/{job_name}/output/"


# -------------------------------------------------------------------------------------------- tests


def test_run_infers_and_loads_the_known_answer(
    sims: Sims, batch_env: dict[str, str], aws_client: AwsClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    table = table_name()
    status, summary, err = run_cli(
        "run", "--table", table, "--job-name", "run-known", "--num-results", "5", capsys=capsys
    )
    assert status == 0, err
    assert summary["written"] == len(GAMES) and summary["malformedLines"] == 0 and summary["errorLines"] == 0
    assert summary["modelVersion"].endswith(" " + sims.versions[1])  # the newest ACTIVE version of the solution
    s3: S3Client = aws_client("s3")
    lines = s3.get_object(Bucket=sims.bucket, Key="similar/run-known/input/items.jsonl")["Body"].read().splitlines()
    assert [json.loads(line) for line in lines] == [{"itemId": game} for game in GAMES]
    found = rows(aws_client("dynamodb"), table)
    assert set(found) == {*GAMES, "#model-version"}
    for game, partner in PARTNER.items():
        assert similar_of(found[game])[0] == partner, (game, similar_of(found[game]))
        assert len(similar_of(found[game])) <= 5
        assert found[game]["modelVersion"]["S"] == summary["modelVersion"]
        assert found[game]["modelSource"]["S"] == sims.versions[1]
    job = aws_client("personalize").describe_batch_inference_job(
        batchInferenceJobArn=aws_client("personalize").list_batch_inference_jobs(solutionVersionArn=sims.versions[1])[
            "batchInferenceJobs"
        ][0]["batchInferenceJobArn"]
    )["batchInferenceJob"]
    assert job["numResults"] == 5 and job["jobInput"]["s3DataSource"]["path"].endswith("run-known/input/items.jsonl")


def test_older_model_loaded_after_a_newer_one_leaves_the_newer_rows(
    sims: Sims, batch_env: dict[str, str], aws_client: AwsClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    table = table_name()
    old, new = sims.versions
    status, _, err = run_cli(
        "run", "--table", table, "--job-name", "older", "--solution-version-arn", old, capsys=capsys
    )
    assert status == 0, err
    status, newer, err = run_cli("run", "--table", table, "--job-name", "newer", capsys=capsys)
    assert status == 0, err
    assert newer["written"] == len(GAMES)
    # The older job's output again (a Lambda retry, a late re-run): every row stays the newer model's.
    s3: S3Client = aws_client("s3")
    status, again, err = run_cli("load", output_folder(s3, sims.bucket, "older"), "--table", table, capsys=capsys)
    assert status == 0, err
    assert again["modelVersion"].endswith(" " + old)
    assert (again["written"], again["skippedOlder"]) == (0, len(GAMES))
    assert again["supersededBy"] == newer["modelVersion"]
    found = rows(aws_client("dynamodb"), table)
    assert {row["modelSource"]["S"] for game, row in found.items() if game in GAMES} == {new}


def test_run_again_with_the_name_of_its_job_waits_for_that_job_and_loads_its_output(
    sims: Sims, batch_env: dict[str, str], aws_client: AwsClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run interrupted after it started its job (here the job is started as `run` starts it, on the older
    version), run again with --job-name: no second job, its input as the job read it, its output loaded as
    the answers of the job's solution version (not the newest). Another job of that name is refused."""
    personalize: PersonalizeClient = aws_client("personalize")
    s3: S3Client = aws_client("s3")
    old, new = sims.versions
    name = f"resumed-{uuid.uuid4().hex[:6]}"
    some = GAMES[:4]
    s3.put_object(
        Bucket=sims.bucket,
        Key=f"similar/{name}/input/items.jsonl",
        Body=b"".join(json.dumps({"itemId": game}).encode() + b"\n" for game in some),
    )
    request = JobRequest(
        job_name=name,
        solution_version_arn=old,
        role_arn=ROLE,
        input_path=f"s3://{sims.bucket}/similar/{name}/input/items.jsonl",
        output_path=f"s3://{sims.bucket}/similar/{name}/output/",
        num_results=25,
    )
    job_arn = start_job(personalize, request)
    assert start_job(personalize, request) == job_arn, "the same job again is that job"

    table = table_name()
    status, summary, err = run_cli("run", "--table", table, "--job-name", name, capsys=capsys)
    assert status == 0, err
    assert f"batch inference job {name} exists (" in err and "waiting for it, not starting one" in err
    assert summary["modelVersion"].endswith(" " + old)
    assert summary["written"] == len(some), "the job's own input, not rewritten with every game"
    jobs = [
        job
        for page in personalize.get_paginator("list_batch_inference_jobs").paginate()
        for job in page["batchInferenceJobs"]
        if job["jobName"] == name
    ]
    assert [job["batchInferenceJobArn"] for job in jobs] == [job_arn]
    assert set(rows(aws_client("dynamodb"), table)) == {*some, "#model-version"}

    status = batch_main(["similar", "run", "--table", table, "--job-name", name, "--solution-version-arn", new])
    assert status == 2
    refused = capsys.readouterr().err
    assert f"a batch inference job named {name} exists already with another solution version" in " ".join(
        refused.split()
    )


def test_malformed_and_error_lines_are_counted_not_fatal(
    sims: Sims, batch_env: dict[str, str], aws_client: AwsClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    s3: S3Client = aws_client("s3")
    fixture = ROOT / "tests" / "fixtures" / "similar" / "sims_batch_output.jsonl"
    s3.put_object(Bucket=sims.bucket, Key="handmade/out/part-1.jsonl.out", Body=fixture.read_bytes())
    s3.put_object(Bucket=sims.bucket, Key="handmade/out/ignored.txt", Body=b"not output\n")
    table = table_name()
    status, summary, err = run_cli(
        "load",
        f"s3://{sims.bucket}/handmade/out",
        "--table",
        table,
        "--model-version",
        "handmade@2024-01-01T00:00:00Z",
        capsys=capsys,
    )
    assert status == 0, err
    assert (summary["files"], summary["lines"], summary["written"]) == (1, 11, 3)
    assert (summary["errorLines"], summary["malformedLines"]) == (2, 6)
    found = rows(aws_client("dynamodb"), table)
    assert similar_of(found["g-02"]) == ["g-01", "g-hit"]
    assert [float(score["N"]) for score in found["g-02"]["scores"]["L"]] == [0.91, 0.12]
    assert similar_of(found["g-06"]) == [] and "scores" not in found["g-06"]


def test_load_of_a_missing_output_fails_with_status_3(
    sims: Sims, batch_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status = batch_main(["similar", "load", f"s3://{sims.bucket}/nothing/here/", "--model-version", "x@2024-01-01"])
    assert status == 3
    assert "no batch inference output" in capsys.readouterr().err


def test_handler_loads_the_object_of_an_s3_event(
    sims: Sims, batch_env: dict[str, str], aws_client: AwsClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    table = table_name()
    status, _, err = run_cli("run", "--table", table, "--job-name", "for-lambda", capsys=capsys)
    assert status == 0, err
    s3: S3Client = aws_client("s3")
    dynamodb: DynamoDBClient = aws_client("dynamodb")
    dynamodb.delete_table(TableName=table)
    poll("table deleted", lambda: table not in dynamodb.list_tables()["TableNames"])
    # A second output object of that job, with a key S3 URL-encodes in the event.
    source = s3.get_object(Bucket=sims.bucket, Key="similar/for-lambda/output/items.jsonl.out")["Body"].read()
    key = "similar/for-lambda/output/part 2=b.jsonl.out"
    s3.put_object(Bucket=sims.bucket, Key=key, Body=source)
    event_path = ROOT / "tests" / "fixtures" / "similar" / "s3_put_event.json"
    event = json.loads(event_path.read_text().replace("BUCKET", sims.bucket))
    os.environ["BATCH_SIMILAR_TABLE"] = table
    try:
        result = handle(event, None)
    finally:
        del os.environ["BATCH_SIMILAR_TABLE"]
    assert result["loaded"] == 1 and result["written"] == len(GAMES)
    assert result["ignored"] == [f"s3://{sims.bucket}/similar/for-lambda/input/items.jsonl"]
    assert result["loads"][0]["object"] == f"s3://{sims.bucket}/{key}"
    assert result["loads"][0]["modelVersion"].endswith(" " + sims.versions[1])
    found = rows(dynamodb, table)
    assert all(similar_of(found[game])[0] == PARTNER[game] for game in PARTNER)
    # An object no job wrote: the handler raises, so Lambda retries (and the error names the object).
    s3.put_object(Bucket=sims.bucket, Key="stray/x.out", Body=source)
    stray = {"Records": [{"s3": {"bucket": {"name": sims.bucket}, "object": {"key": "stray/x.out"}}}]}
    with pytest.raises(LoadFailedError, match=re.escape("stray/x.out")):
        handle(stray, None)


def test_cli_subprocess_loads_into_the_devstack_table(sims: Sims, aws_client: AwsClientFactory, tmp_path: Path) -> None:
    """``.venv/bin/batch similar load`` into ``similar-games``, the table devstack provisions (key ``gameId``)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "BATCH_"))}
    env.update(sims.env)
    s3: S3Client = aws_client("s3")
    fixture = ROOT / "tests" / "fixtures" / "similar" / "sims_batch_output.jsonl"
    s3.put_object(Bucket=sims.bucket, Key="cli/out/items.jsonl.out", Body=fixture.read_bytes())
    version = f"cli-{uuid.uuid4().hex[:6]}@2099-01-01T00:00:00Z"  # newer than any other test's model
    completed = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "batch"),
            "similar",
            "load",
            f"s3://{sims.bucket}/cli/out/items.jsonl.out",
            "--model-version",
            version,
            "--concurrency",
            "2",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "written:          3 items" in completed.stdout
    assert "malformed lines:  6" in completed.stdout and "error lines:      2" in completed.stdout
    assert "sims_batch_output" not in completed.stdout and "cli/out/items.jsonl.out:5: not JSON" in completed.stdout
    dynamodb: DynamoDBClient = aws_client("dynamodb")
    item = dynamodb.get_item(TableName="similar-games", Key={"gameId": {"S": "g-01"}}, ConsistentRead=True)["Item"]
    assert [entry["S"] for entry in item["similar"]["L"]] == ["g-02", "g-hit", "g-03"]
    assert item["modelVersion"]["S"].startswith("2099-01-01T00:00:00.000000Z cli-")
    bad = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "batch"), "similar", "load", "not-a-url", "--model-version", version],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "not an s3:// URL" in bad.stderr


def test_run_without_a_solution_fails_with_status_2(
    sims: Sims, batch_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert batch_main(["similar", "run", "--solution-name", "no-such-solution"]) == 2
    assert "no Personalize solution named 'no-such-solution'" in capsys.readouterr().err


def test_a_failed_job_is_reported_with_its_failure_reason(sims: Sims, aws_client: AwsClientFactory) -> None:
    """The emulator fails a job whose output bucket does not exist; the waiter raises with its failureReason."""
    personalize: PersonalizeClient = aws_client("personalize")
    s3: S3Client = aws_client("s3")
    s3.put_object(Bucket=sims.bucket, Key="doomed/input.jsonl", Body=b'{"itemId": "g-01"}\n')
    request = JobRequest(
        job_name=f"doomed-{uuid.uuid4().hex[:6]}",
        solution_version_arn=sims.versions[0],
        role_arn=ROLE,
        input_path=f"s3://{sims.bucket}/doomed/input.jsonl",
        output_path="s3://no-such-bucket-for-similar/out/",
        num_results=3,
    )
    job_arn = start_job(personalize, request)
    statuses: list[str] = []
    waiter = JobWaiter(
        personalize, backoff=Backoff(base=0.05, cap=0.2), timeout=DEADLINE, on_status=lambda s, _: statuses.append(s)
    )
    with pytest.raises(InferenceJobFailedError) as failed:
        waiter.wait(job_arn)
    assert failed.value.status == "CREATE FAILED"
    assert "no-such-bucket-for-similar" in failed.value.reason
    assert statuses[-1] == "CREATE FAILED"


class _RacingClient:
    """The older loader's DynamoDB client: its second BatchWriteItem lets ``before_second_write`` run first."""

    def __init__(self, client: Any, before_second_write: Callable[[], None]) -> None:
        self._client = client
        self._writes = 0
        self._hook = before_second_write

    def batch_write_item(self, **request: Any) -> Any:
        self._writes += 1
        if self._writes == 2:
            self._hook()
        return self._client.batch_write_item(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_race_an_older_write_in_flight_during_a_newer_load_is_repaired(aws_client: AwsClientFactory) -> None:
    """moto DynamoDB: a newer model claims the table and writes its rows while an older load has one
    BatchWriteItem between its read and its write; that write lands on newer rows; the newer load's repair
    pass (after its fence) puts them back, and the older load stops."""
    dynamodb: DynamoDBClient = aws_client("dynamodb")
    name = table_name()
    old = ModelVersion(datetime(2024, 6, 1, tzinfo=UTC), "sims-old")
    new = ModelVersion(datetime(2024, 7, 1, tzinfo=UTC), "sims-new")
    games = [SimilarGames(f"r-{n:03d}", (f"r-{(n + 1) % 100:03d}",)) for n in range(100)]
    older_finished = threading.Event()
    newer_wrote = threading.Event()
    newer_result: list[LoadSummary] = []

    def fence(seconds: float) -> None:  # the newer load's fence lasts until the older load is over
        newer_wrote.set()
        assert older_finished.wait(timeout=DEADLINE)

    def newer_load() -> None:
        table = SimilarGamesTable(aws_client("dynamodb"), name, new)
        loader = SimilarGamesLoader(table, LoaderOptions(fence=5.0), sleep=fence)
        newer_result.append(loader.load(lambda report: iter(games)))

    thread = threading.Thread(target=newer_load)

    def newer_arrives() -> None:
        thread.start()
        assert newer_wrote.wait(timeout=DEADLINE)  # claimed and wrote everything; now the older write lands

    older_table = SimilarGamesTable(_RacingClient(dynamodb, newer_arrives), name, old)  # type: ignore[arg-type]
    try:
        older = SimilarGamesLoader(older_table, LoaderOptions(concurrency=1)).load(lambda report: iter(games))
        clobbered = rows(dynamodb, name)
    finally:
        older_finished.set()
        if thread.is_alive():
            thread.join(timeout=DEADLINE)
    # Batch 1 was overwritten by the newer load; batch 2, in flight, landed on top of the newer rows.
    assert sum(row["modelSource"]["S"] == "sims-old" for key, row in clobbered.items() if key.startswith("r-")) == 25
    newer = newer_result[0]
    assert older.superseded_by == new.key and older.written == 50 and older.skipped_older == 50
    assert newer.repair_pass and newer.repaired == 25 and newer.written == 100
    final = rows(dynamodb, name)
    assert {row["modelSource"]["S"] for key, row in final.items() if key.startswith("r-")} == {"sims-new"}
    assert final["#model-version"]["modelVersion"]["S"] == new.key
