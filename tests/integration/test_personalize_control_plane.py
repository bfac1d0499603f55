"""boto3 ``personalize``, ``personalize-runtime`` and ``personalize-events`` against the emulator, over real
HTTP, with moto server standing in for S3 (both subprocesses).

The data has known answers: players play pairs of games that always go together (SIMS), everybody plays
``g-hit`` (popular), ``g-rising`` doubles its plays in the last interval (trending), and ``g-02`` is not
available (filter). Everything polls Describe with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.personalize.client import EmulatorProcess, run_emulator
from tests.integration.personalize_data import (
    INTERACTION_FIELDS,
    avro_schema,
    csv_bytes,
    describe,
    wait_status,
)
from tests.integration.support import moto_server

if TYPE_CHECKING:
    from mypy_boto3_personalize import PersonalizeClient
    from mypy_boto3_personalize_events import PersonalizeEventsClient
    from mypy_boto3_personalize_runtime import PersonalizeRuntimeClient
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
ACCOUNT = "000000000000"
BUCKET = "personalize-data"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/PersonalizeS3Access"
RECIPE = "arn:aws:personalize:::recipe/"
#: The last interaction of the fixture data (epoch seconds); the data spans the three days before it.
T_END = 1_717_200_000
DAY = 86_400
PAIRS = [("g-01", "g-02"), ("g-03", "g-04"), ("g-05", "g-06")]
USERS = 60
DEADLINE_SECONDS = 30.0

INTERACTIONS_SCHEMA = avro_schema(
    "Interactions", [*INTERACTION_FIELDS, {"name": "EVENT_VALUE", "type": ["null", "float"]}]
)
ITEMS_SCHEMA = avro_schema(
    "Items",
    [
        {"name": "ITEM_ID", "type": "string"},
        {"name": "AVAILABLE", "type": "string"},
        {"name": "GENRES", "type": ["null", "string"], "categorical": True},
    ],
)
USERS_SCHEMA = avro_schema(
    "Users", [{"name": "USER_ID", "type": "string"}, {"name": "COUNTRY", "type": "string", "categorical": True}]
)


# --------------------------------------------------------------------------------------------- data


def interactions_csv() -> bytes:
    """1080 plays: pair games 6x each per player, g-hit 3x per player, g-rising 1 then 2 plays by 40."""
    start = T_END - 3 * DAY
    rows: list[list[Any]] = []
    for user in range(USERS):
        first, second = PAIRS[user % 3]
        plays = [first, second] * 6 + ["g-hit"] * 3
        for index, game in enumerate(plays):
            # Spread evenly over the three days, so these games have no trend.
            stamp = start + (user * len(plays) + index) * (3 * DAY) // (USERS * len(plays))
            rows.append([f"u-{user:02d}", game, stamp, "play", 1.0])
    for user in range(40):
        rows.append([f"u-{user:02d}", "g-rising", T_END - 2 * DAY + 600 + user * 60, "play", ""])
        rows.append([f"u-{user:02d}", "g-rising", T_END - DAY + 600 + user * 60, "play", ""])
        rows.append([f"u-{user:02d}", "g-rising", T_END - 3600 + user * 60, "play", ""])
    rows.append(["u-00", "g-01", T_END, "play", 1.0])
    return csv_bytes(["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"], rows)


def items_csv() -> bytes:
    games = [game for pair in PAIRS for game in pair] + ["g-hit", "g-rising"]
    return csv_bytes(
        ["ITEM_ID", "AVAILABLE", "GENRES"],
        [
            [game, "false" if game == "g-02" else "true", "slots|classic" if game < "g-03" else "table"]
            for game in games
        ],
    )


def users_csv() -> bytes:
    return csv_bytes(["USER_ID", "COUNTRY"], [[f"u-{user:02d}", "MT" if user % 2 else "SE"] for user in range(USERS)])


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto server (S3) as a subprocess on a free port."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture(scope="module")
def emulator(moto_url: str) -> Iterator[EmulatorProcess]:
    """The emulator, reading and writing S3 at moto, with short status steps."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_ENDPOINT_URL")}
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION=REGION)
    with run_emulator(s3_endpoint_url=moto_url, step_seconds=0.05, default_quota=0, env=env) as process:
        yield process


#: Dummy credentials, the region, and no retries: every answer is the server's first.
CLIENT_OPTIONS: dict[str, Any] = {
    "region_name": REGION,
    "aws_access_key_id": "test",
    "aws_secret_access_key": "test",
    "config": Config(retries={"total_max_attempts": 1, "mode": "standard"}),
}


@pytest.fixture(scope="module")
def personalize(emulator: EmulatorProcess) -> PersonalizeClient:
    """An unmodified boto3 ``personalize`` (control plane) client on the emulator."""
    return boto3.client("personalize", endpoint_url=emulator.url, **CLIENT_OPTIONS)


@pytest.fixture(scope="module")
def runtime(emulator: EmulatorProcess) -> PersonalizeRuntimeClient:
    """An unmodified boto3 ``personalize-runtime`` client on the emulator."""
    return boto3.client("personalize-runtime", endpoint_url=emulator.url, **CLIENT_OPTIONS)


@pytest.fixture(scope="module")
def events(emulator: EmulatorProcess) -> PersonalizeEventsClient:
    """An unmodified boto3 ``personalize-events`` client on the emulator."""
    return boto3.client("personalize-events", endpoint_url=emulator.url, **CLIENT_OPTIONS)


@pytest.fixture(scope="module")
def s3(moto_url: str) -> S3Client:
    """S3 at moto, with the bucket and the three dataset CSVs uploaded."""
    client: S3Client = boto3.client("s3", endpoint_url=moto_url, **CLIENT_OPTIONS)
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="datasets/interactions.csv", Body=interactions_csv())
    client.put_object(Bucket=BUCKET, Key="datasets/items/items.csv", Body=items_csv())
    client.put_object(Bucket=BUCKET, Key="datasets/users.csv", Body=users_csv())
    return client


# ------------------------------------------------------------------------------------------ helpers


def wait_gone(personalize: PersonalizeClient, arn: str, *, timeout: float = DEADLINE_SECONDS) -> None:
    """Poll Describe of ``arn`` until it answers ResourceNotFoundException."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            describe(personalize, arn)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ResourceNotFoundException"
            return
        assert time.monotonic() < deadline, f"still there after {timeout:g}s"
        time.sleep(0.02)


def error_code(call: Callable[[], object]) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    return str(error["Code"]), str(error.get("Message", ""))


def item_ids(answer: Any) -> list[str]:
    return [entry["itemId"] for entry in answer["itemList"]]


@dataclass
class Stack:
    """The resources the full flow created (module-scoped: later tests reuse them)."""

    group_arn: str
    interactions_arn: str
    tracking_id: str
    campaigns: dict[str, str]
    versions: dict[str, str]
    filter_arn: str


def create_schema(personalize: PersonalizeClient, name: str, schema: dict[str, Any]) -> str:
    return personalize.create_schema(name=name, schema=json.dumps(schema))["schemaArn"]


def import_dataset(personalize: PersonalizeClient, name: str, dataset_arn: str, location: str) -> dict[str, Any]:
    job_arn = personalize.create_dataset_import_job(
        jobName=name, datasetArn=dataset_arn, dataSource={"dataLocation": location}, roleArn=ROLE
    )["datasetImportJobArn"]
    return wait_status(personalize, job_arn)


# ------------------------------------------------------------------------------------------ the flow


@pytest.fixture(scope="module")
def stack(personalize: PersonalizeClient, s3: S3Client, emulator: EmulatorProcess) -> Stack:
    """The full flow: schemas, group, datasets, imports, tracker, filter, solutions, versions, campaigns."""
    schemas = {
        "INTERACTIONS": create_schema(personalize, "lobby-interactions", INTERACTIONS_SCHEMA),
        "ITEMS": create_schema(personalize, "lobby-items", ITEMS_SCHEMA),
        "USERS": create_schema(personalize, "lobby-users", USERS_SCHEMA),
    }
    group_arn = personalize.create_dataset_group(name="lobby")["datasetGroupArn"]
    assert group_arn == f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset-group/lobby"
    first = personalize.describe_dataset_group(datasetGroupArn=group_arn)["datasetGroup"]
    assert first["status"] in ("CREATE PENDING", "CREATE IN_PROGRESS")
    wait_status(personalize, group_arn)

    datasets: dict[str, str] = {}
    for kind, schema_arn in schemas.items():
        datasets[kind] = personalize.create_dataset(
            name=f"lobby-{kind.lower()}", schemaArn=schema_arn, datasetGroupArn=group_arn, datasetType=kind
        )["datasetArn"]
    assert datasets["INTERACTIONS"] == f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset/lobby/INTERACTIONS"
    for arn in datasets.values():
        wait_status(personalize, arn)

    import_dataset(
        personalize, "lobby-interactions-1", datasets["INTERACTIONS"], f"s3://{BUCKET}/datasets/interactions.csv"
    )
    import_dataset(personalize, "lobby-items-1", datasets["ITEMS"], f"s3://{BUCKET}/datasets/items/")
    import_dataset(personalize, "lobby-users-1", datasets["USERS"], f"s3://{BUCKET}/datasets/users.csv")

    tracker = personalize.create_event_tracker(name="lobby-tracker", datasetGroupArn=group_arn)
    wait_status(personalize, tracker["eventTrackerArn"])
    filter_arn = personalize.create_filter(
        name="available-only",
        datasetGroupArn=group_arn,
        filterExpression='EXCLUDE ItemID WHERE Items.AVAILABLE IN ("false")',
    )["filterArn"]
    wait_status(personalize, filter_arn)

    recipes = {
        "sims": "aws-sims",
        "popular": "aws-popularity-count",
        "trending": "aws-trending-now",
        "for-you": "aws-user-personalization-v2",
    }
    solutions: dict[str, str] = {}
    for name, recipe in recipes.items():
        solutions[name] = personalize.create_solution(
            name=f"lobby-{name}",
            datasetGroupArn=group_arn,
            recipeArn=RECIPE + recipe,
            eventType="play",
            performAutoTraining=False,
        )["solutionArn"]
    versions: dict[str, str] = {}
    for name, arn in solutions.items():
        wait_status(personalize, arn)
        versions[name] = personalize.create_solution_version(solutionArn=arn)["solutionVersionArn"]
    for arn in versions.values():
        wait_status(personalize, arn)
    campaigns: dict[str, str] = {}
    for name, arn in versions.items():
        campaigns[name] = personalize.create_campaign(
            name=f"lobby-{name}", solutionVersionArn=arn, minProvisionedTPS=1
        )["campaignArn"]
    for arn in campaigns.values():
        wait_status(personalize, arn)
    return Stack(group_arn, datasets["INTERACTIONS"], tracker["trackingId"], campaigns, versions, filter_arn)


def test_full_flow_resources_are_described_and_listed(personalize: PersonalizeClient, stack: Stack) -> None:
    dataset = personalize.describe_dataset(datasetArn=stack.interactions_arn)["dataset"]
    assert dataset["status"] == "ACTIVE"
    assert dataset["datasetType"] == "INTERACTIONS"
    assert dataset["trackingId"] == stack.tracking_id
    jobs = personalize.list_dataset_import_jobs(datasetArn=stack.interactions_arn)["datasetImportJobs"]
    assert [job["status"] for job in jobs] == ["ACTIVE"]
    solutions = personalize.list_solutions(datasetGroupArn=stack.group_arn)["solutions"]
    assert {solution["recipeArn"] for solution in solutions} == {
        RECIPE + name
        for name in ("aws-sims", "aws-popularity-count", "aws-trending-now", "aws-user-personalization-v2")
    }
    solution = personalize.describe_solution(solutionArn=solutions[0]["solutionArn"])["solution"]
    assert solution["latestSolutionVersion"]["status"] == "ACTIVE"
    assert solution["performAutoTraining"] is False
    version = personalize.describe_solution_version(solutionVersionArn=stack.versions["sims"])["solutionVersion"]
    assert version["trainingMode"] == "FULL"
    assert version["solutionVersionArn"].startswith(f"arn:aws:personalize:{REGION}:{ACCOUNT}:solution/lobby-sims/")
    campaign = personalize.describe_campaign(campaignArn=stack.campaigns["sims"])["campaign"]
    assert campaign["solutionVersionArn"] == stack.versions["sims"]
    assert campaign["creationDateTime"] <= campaign["lastUpdatedDateTime"]
    recipe = personalize.describe_recipe(recipeArn=RECIPE + "aws-sims")["recipe"]
    assert recipe["recipeType"] == "RELATED_ITEMS"
    listed = {entry["name"] for entry in personalize.list_recipes()["recipes"]}
    assert {"aws-sims", "aws-popularity-count", "aws-trending-now", "aws-user-personalization-v2"} <= listed
    page = personalize.list_campaigns(maxResults=2)
    assert len(page["campaigns"]) == 2
    rest = personalize.list_campaigns(maxResults=2, nextToken=page["nextToken"])
    assert len(rest["campaigns"]) == 2
    assert "nextToken" not in rest
    paginated = [
        c["campaignArn"]
        for p in personalize.get_paginator("list_campaigns").paginate(PaginationConfig={"PageSize": 3})
        for c in p["campaigns"]
    ]
    assert sorted(paginated) == sorted(stack.campaigns.values())


def test_recommendations_from_each_recipe(runtime: PersonalizeRuntimeClient, stack: Stack) -> None:
    sims = runtime.get_recommendations(campaignArn=stack.campaigns["sims"], itemId="g-03", numResults=3)
    assert item_ids(sims)[0] == "g-04"
    assert "g-03" not in item_ids(sims)
    assert "score" not in sims["itemList"][0]
    assert sims["recommendationId"].startswith("RID-") and len(sims["recommendationId"]) <= 40

    popular = runtime.get_recommendations(campaignArn=stack.campaigns["popular"], userId="u-07")
    assert item_ids(popular)[0] == "g-hit"
    assert len(popular["itemList"]) == 8  # the whole catalogue, fewer than the default 25

    trending = runtime.get_recommendations(campaignArn=stack.campaigns["trending"], numResults=1)
    assert item_ids(trending) == ["g-rising"]

    for_you = runtime.get_recommendations(campaignArn=stack.campaigns["for-you"], userId="u-43", numResults=4)
    scores = [entry["score"] for entry in for_you["itemList"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    # u-43 plays g-03 and g-04, then g-hit last: the neighbours of those come first, not g-01 or g-05.
    assert set(item_ids(for_you)[:3]) <= {"g-03", "g-04", "g-hit", "g-rising"}

    cold = runtime.get_recommendations(campaignArn=stack.campaigns["for-you"], userId="nobody", numResults=1)
    assert item_ids(cold) == ["g-hit"]


def test_filter_excludes_unavailable_games(runtime: PersonalizeRuntimeClient, stack: Stack) -> None:
    plain = runtime.get_recommendations(campaignArn=stack.campaigns["sims"], itemId="g-01", numResults=5)
    assert item_ids(plain)[0] == "g-02"
    filtered = runtime.get_recommendations(
        campaignArn=stack.campaigns["sims"], itemId="g-01", numResults=5, filterArn=stack.filter_arn
    )
    assert "g-02" not in item_ids(filtered)
    assert len(filtered["itemList"]) == 5


def test_streamed_events_update_trending_and_for_you_within_seconds(
    events: PersonalizeEventsClient, runtime: PersonalizeRuntimeClient, stack: Stack
) -> None:
    before = runtime.get_recommendations(campaignArn=stack.campaigns["for-you"], userId="u-00", numResults=2)
    assert "g-06" not in item_ids(before)
    now = datetime.now(UTC)
    events.put_events(
        trackingId=stack.tracking_id,
        userId="u-00",
        sessionId="session-stream",
        eventList=[
            {"eventId": f"stream-{n}", "eventType": "play", "itemId": "g-05", "sentAt": now + timedelta(seconds=n)}
            for n in range(5)
        ],
    )
    for_you = runtime.get_recommendations(campaignArn=stack.campaigns["for-you"], userId="u-00", numResults=1)
    assert item_ids(for_you) == ["g-06"]
    trending = runtime.get_recommendations(campaignArn=stack.campaigns["trending"], numResults=1)
    assert item_ids(trending) == ["g-05"]
    # SIMS and popularity-count do not change until retrained.
    sims = runtime.get_recommendations(campaignArn=stack.campaigns["sims"], itemId="g-05", numResults=1)
    assert item_ids(sims) == ["g-06"]


def test_batch_inference_job_writes_the_output_file(personalize: PersonalizeClient, s3: S3Client, stack: Stack) -> None:
    lines = [{"itemId": "g-01"}, {"itemId": "g-05"}, {"itemId": 7}, "not json", {"userId": "u-1"}]
    body = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    s3.put_object(Bucket=BUCKET, Key="batch/input/games.json", Body=body.encode())
    job_arn = personalize.create_batch_inference_job(
        jobName="similar-games",
        solutionVersionArn=stack.versions["sims"],
        numResults=3,
        jobInput={"s3DataSource": {"path": f"s3://{BUCKET}/batch/input/games.json"}},
        jobOutput={"s3DataDestination": {"path": f"s3://{BUCKET}/batch/output/"}},
        roleArn=ROLE,
    )["batchInferenceJobArn"]
    job = wait_status(personalize, job_arn)
    assert job["numResults"] == 3
    output = s3.get_object(Bucket=BUCKET, Key="batch/output/games.json.out")["Body"].read().decode()
    answers = [json.loads(line) for line in output.splitlines()]
    assert len(answers) == 5
    assert answers[0] == {
        "input": {"itemId": "g-01"},
        "output": {"recommendedItems": answers[0]["output"]["recommendedItems"]},
    }
    assert answers[0]["output"]["recommendedItems"][0] == "g-02"
    assert len(answers[0]["output"]["recommendedItems"]) == 3
    assert answers[1]["output"]["recommendedItems"][0] == "g-06"
    assert answers[2]["input"] == {"itemId": 7} and "itemId" in answers[2]["error"]
    assert answers[3]["input"] == "not json" and "JSON" in answers[3]["error"]
    assert "itemId is required" in answers[4]["error"]
    listed = personalize.list_batch_inference_jobs(solutionVersionArn=stack.versions["sims"])["batchInferenceJobs"]
    assert [entry["batchInferenceJobArn"] for entry in listed] == [job_arn]


def test_user_personalization_batch_output_has_scores(
    personalize: PersonalizeClient, s3: S3Client, stack: Stack
) -> None:
    s3.put_object(Bucket=BUCKET, Key="batch/users/users.json", Body=b'{"userId": "u-10"}\n{"userId": "u-11"}\n')
    job_arn = personalize.create_batch_inference_job(
        jobName="for-you-batch",
        solutionVersionArn=stack.versions["for-you"],
        jobInput={"s3DataSource": {"path": f"s3://{BUCKET}/batch/users/"}},
        jobOutput={"s3DataDestination": {"path": f"s3://{BUCKET}/batch/users-out/"}},
        roleArn=ROLE,
    )["batchInferenceJobArn"]
    wait_status(personalize, job_arn)
    output = s3.get_object(Bucket=BUCKET, Key="batch/users-out/users.json.out")["Body"].read().decode()
    first = json.loads(output.splitlines()[0])
    assert len(first["output"]["recommendedItems"]) == len(first["output"]["scores"]) == 8
    code, message = error_code(
        lambda: personalize.create_batch_inference_job(
            jobName="trending-batch",
            solutionVersionArn=stack.versions["trending"],
            jobInput={"s3DataSource": {"path": f"s3://{BUCKET}/batch/users/"}},
            jobOutput={"s3DataDestination": {"path": f"s3://{BUCKET}/batch/trending-out/"}},
            roleArn=ROLE,
        )
    )
    assert code == "InvalidInputException" and "aws-trending-now" in message


# -------------------------------------------------------------------------------------------- errors


def test_already_exists_not_found_and_in_use(personalize: PersonalizeClient, stack: Stack) -> None:
    code, _ = error_code(lambda: personalize.create_dataset_group(name="lobby"))
    assert code == "ResourceAlreadyExistsException"
    code, _ = error_code(
        lambda: personalize.create_event_tracker(name="second-tracker", datasetGroupArn=stack.group_arn)
    )
    assert code == "ResourceAlreadyExistsException"
    missing = f"arn:aws:personalize:{REGION}:{ACCOUNT}:campaign/nope"
    code, _ = error_code(lambda: personalize.describe_campaign(campaignArn=missing))
    assert code == "ResourceNotFoundException"
    code, message = error_code(lambda: personalize.delete_dataset_group(datasetGroupArn=stack.group_arn))
    assert code == "ResourceInUseException" and "dataset" in message
    schema_arn = f"arn:aws:personalize:{REGION}:{ACCOUNT}:schema/lobby-interactions"
    code, _ = error_code(lambda: personalize.delete_schema(schemaArn=schema_arn))
    assert code == "ResourceInUseException"
    solution_arn = stack.versions["sims"].rsplit("/", 1)[0]
    code, _ = error_code(lambda: personalize.delete_solution(solutionArn=solution_arn))
    assert code == "ResourceInUseException"


def test_runtime_errors(runtime: PersonalizeRuntimeClient, stack: Stack) -> None:
    missing = f"arn:aws:personalize:{REGION}:{ACCOUNT}:campaign/nope"
    code, _ = error_code(lambda: runtime.get_recommendations(campaignArn=missing, itemId="g-01"))
    assert code == "ResourceNotFoundException"
    code, message = error_code(lambda: runtime.get_recommendations(campaignArn=stack.campaigns["sims"], userId="u-1"))
    assert code == "InvalidInputException" and "itemId" in message
    code, _ = error_code(
        lambda: runtime.get_recommendations(campaignArn=stack.campaigns["sims"], itemId="g-01", numResults=501)
    )
    assert code == "InvalidInputException"
    code, _ = error_code(lambda: runtime.get_recommendations(campaignArn=stack.campaigns["for-you"]))
    assert code == "InvalidInputException"
    code, _ = error_code(
        lambda: runtime.get_personalized_ranking(
            campaignArn=stack.campaigns["for-you"], userId="u-1", inputList=["g-01"]
        )
    )
    assert code == "InvalidInputException"


def test_bad_csv_fails_the_import_job_with_a_reason(personalize: PersonalizeClient, s3: S3Client) -> None:
    schema_arn = create_schema(personalize, "broken-interactions", INTERACTIONS_SCHEMA)
    group_arn = personalize.create_dataset_group(name="broken")["datasetGroupArn"]
    wait_status(personalize, group_arn)
    dataset_arn = personalize.create_dataset(
        name="broken-interactions", schemaArn=schema_arn, datasetGroupArn=group_arn, datasetType="Interactions"
    )["datasetArn"]
    wait_status(personalize, dataset_arn)
    s3.put_object(Bucket=BUCKET, Key="broken/no-timestamp.csv", Body=b"USER_ID,ITEM_ID,EVENT_TYPE\nu-1,g-1,play\n")
    s3.put_object(
        Bucket=BUCKET,
        Key="broken/bad-timestamp.csv",
        Body=b"USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu-1,g-1,1717000000,play\nu-1,g-2,1717000000000,play\nu-2,g-1,yesterday,play\n",
    )
    cases = {
        "no-timestamp": "TIMESTAMP",
        "bad-timestamp": "milliseconds",
        "missing-object": "no such object",
    }
    for name, reason in cases.items():
        job_arn = personalize.create_dataset_import_job(
            jobName=f"broken-{name}",
            datasetArn=dataset_arn,
            dataSource={"dataLocation": f"s3://{BUCKET}/broken/{name}.csv"},
        )["datasetImportJobArn"]
        job = wait_status(personalize, job_arn, "CREATE FAILED")
        assert reason in job["failureReason"], job["failureReason"]
    code, message = error_code(lambda: personalize.create_schema(name="not-avro", schema='{"type": "enum"}'))
    assert code == "InvalidInputException" and "record" in message
    users_schema_arn = create_schema(personalize, "broken-users", USERS_SCHEMA)
    code, message = error_code(
        lambda: personalize.create_dataset(
            name="wrong-type", schemaArn=users_schema_arn, datasetGroupArn=group_arn, datasetType="ITEMS"
        )
    )
    assert code == "InvalidInputException" and "ITEM_ID" in message


def test_training_minimums_fail_the_solution_version(personalize: PersonalizeClient, s3: S3Client) -> None:
    schema_arn = create_schema(personalize, "tiny-interactions", INTERACTIONS_SCHEMA)
    group_arn = personalize.create_dataset_group(name="tiny")["datasetGroupArn"]
    wait_status(personalize, group_arn)
    dataset_arn = personalize.create_dataset(
        name="tiny-interactions", schemaArn=schema_arn, datasetGroupArn=group_arn, datasetType="INTERACTIONS"
    )["datasetArn"]
    wait_status(personalize, dataset_arn)
    rows = [[f"u-{n % 10}", f"g-{n % 7}", T_END - n, "play"] for n in range(300)]
    s3.put_object(
        Bucket=BUCKET,
        Key="tiny/interactions.csv",
        Body=csv_bytes(["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"], rows),
    )
    import_dataset(personalize, "tiny-import", dataset_arn, f"s3://{BUCKET}/tiny/interactions.csv")
    solution_arn = personalize.create_solution(
        name="tiny-sims", datasetGroupArn=group_arn, recipeArn=RECIPE + "aws-sims", performAutoTraining=False
    )["solutionArn"]
    wait_status(personalize, solution_arn)
    version_arn = personalize.create_solution_version(solutionArn=solution_arn)["solutionVersionArn"]
    version = wait_status(personalize, version_arn, "CREATE FAILED")
    assert "300 unique interactions" in version["failureReason"]
    assert "at least 1000 interactions" in version["failureReason"]
    code, _ = error_code(lambda: personalize.create_campaign(name="tiny", solutionVersionArn=version_arn))
    assert code == "InvalidInputException"

    # Clean-up in dependency order: what blocks the group goes first.
    personalize.delete_solution(solutionArn=solution_arn)
    wait_gone(personalize, solution_arn)
    personalize.delete_dataset(datasetArn=dataset_arn)
    wait_gone(personalize, dataset_arn)
    personalize.delete_dataset_group(datasetGroupArn=group_arn)
    wait_gone(personalize, group_arn)
    personalize.delete_schema(schemaArn=schema_arn)
    wait_gone(personalize, schema_arn)


def test_update_solution_and_automatic_training(
    personalize: PersonalizeClient, emulator: EmulatorProcess, stack: Stack
) -> None:
    solution_arn = stack.versions["popular"].rsplit("/", 1)[0]
    personalize.update_solution(
        solutionArn=solution_arn,
        performAutoTraining=True,
        solutionUpdateConfig={"autoTrainingConfig": {"schedulingExpression": "rate(3 days)"}},
    )
    solution = wait_status(personalize, solution_arn)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while solution["latestSolutionUpdate"]["status"] != "ACTIVE":
        assert time.monotonic() < deadline
        time.sleep(0.02)
        solution = dict(personalize.describe_solution(solutionArn=solution_arn)["solution"])
    assert solution["performAutoTraining"] is True
    assert solution["solutionConfig"]["autoTrainingConfig"]["schedulingExpression"] == "rate(3 days)"
    automatic = emulator.auto_train(solution_arn)
    version = wait_status(personalize, automatic)
    assert version["trainingType"] == "AUTOMATIC"
    assert version["trainingMode"] == "AUTOTRAIN"
    listed = personalize.list_solution_versions(solutionArn=solution_arn)["solutionVersions"]
    assert {entry["solutionVersionArn"] for entry in listed} == {stack.versions["popular"], automatic}


def test_update_campaign_switches_the_solution_version(
    personalize: PersonalizeClient, runtime: PersonalizeRuntimeClient, stack: Stack
) -> None:
    solution_arn = stack.versions["sims"].rsplit("/", 1)[0]
    retrained = personalize.create_solution_version(solutionArn=solution_arn)["solutionVersionArn"]
    wait_status(personalize, retrained)
    personalize.update_campaign(campaignArn=stack.campaigns["sims"], solutionVersionArn=retrained)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        campaign = personalize.describe_campaign(campaignArn=stack.campaigns["sims"])["campaign"]
        assert campaign["status"] == "ACTIVE"
        if campaign["latestCampaignUpdate"]["status"] == "ACTIVE":
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert campaign["solutionVersionArn"] == retrained
    assert item_ids(runtime.get_recommendations(campaignArn=stack.campaigns["sims"], itemId="g-01"))[0] == "g-02"
    stack.versions["sims"] = retrained


def test_instant_mode_and_admin_listing(personalize: PersonalizeClient, emulator: EmulatorProcess) -> None:
    emulator.set_control_settings(step_seconds=0)
    try:
        group_arn = personalize.create_dataset_group(name="instant")["datasetGroupArn"]
        assert personalize.describe_dataset_group(datasetGroupArn=group_arn)["datasetGroup"]["status"] == "ACTIVE"
        personalize.delete_dataset_group(datasetGroupArn=group_arn)
        code, _ = error_code(lambda: personalize.describe_dataset_group(datasetGroupArn=group_arn))
        assert code == "ResourceNotFoundException"
    finally:
        emulator.set_control_settings(step_seconds=0.05)
    listing = emulator.resources()
    assert {"schema", "dataset-group", "campaign", "solution-version", "batch-inference-job"} <= set(listing)
    assert any(group["name"] == "lobby" for group in emulator.resources("dataset-group")["dataset-group"])


def test_unknown_target_and_unsupported_operation(emulator: EmulatorProcess, personalize: PersonalizeClient) -> None:
    code, _ = error_code(personalize.list_recommenders)
    assert code == "UnknownOperationException"
    request = urllib.request.Request(
        emulator.url + "/",
        data=b"{}",
        method="POST",
        headers={"X-Amz-Target": "AmazonPersonalize.NoSuchThing", "Content-Type": "application/x-amz-json-1.1"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 404
    assert json.loads(caught.value.read())["__type"] == "UnknownOperationException"


def test_validation_follows_the_service_model(emulator: EmulatorProcess) -> None:
    request = urllib.request.Request(
        emulator.url + "/",
        data=json.dumps({"name": "bad name!", "schema": "{}"}).encode(),
        method="POST",
        headers={"X-Amz-Target": "AmazonPersonalize.CreateSchema", "Content-Type": "application/x-amz-json-1.1"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    body = json.loads(caught.value.read())
    assert body["__type"] == "InvalidInputException"
    assert "at 'name' failed to satisfy constraint" in body["message"]


def test_log_has_no_tracebacks(emulator: EmulatorProcess) -> None:
    assert "Traceback" not in Path(emulator.log_path).read_text(encoding="utf-8", errors="replace")
