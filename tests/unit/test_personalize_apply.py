"""``batch personalize apply`` and ``train`` against a fake Personalize: what is found, created, waited on.

The fake keeps resources in memory; a new resource is ``CREATE PENDING`` and moves one status per
Describe (``steps`` Describes to ACTIVE), or ends ``CREATE FAILED`` with a reason for the names in
``fail``. Errors are botocore ``ClientError`` with the real codes.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from batch.errors import ConfigurationError
from batch.personalize.config import PersonalizeConfig
from batch.personalize.errors import DeadlineExceededError, PersonalizeError, ResourceFailedError
from batch.personalize.plan import ConfigApplier, DatasetLocation
from batch.personalize.train import CampaignTrainer, read_outputs
from batch.personalize.waiter import Backoff, Deadline, StatusWaiter

ROLE = "arn:aws:iam::000000000000:role/PersonalizeS3"
PREFIX = "arn:aws:personalize:us-east-1:000000000000:"
SCHEMA = {"type": "record", "name": "X", "fields": [{"name": "ITEM_ID", "type": "string"}], "version": "1.0"}
SCHEMAS = {
    name: json.dumps({**SCHEMA, "name": name.split(".")[0]})
    for name in ("interactions.schema.json", "items.schema.json", "users.schema.json")
}
ARN_KEYS = {
    "schema": "schemaArn",
    "dataset-group": "datasetGroupArn",
    "dataset": "datasetArn",
    "dataset-import-job": "datasetImportJobArn",
    "event-tracker": "eventTrackerArn",
    "filter": "filterArn",
    "solution": "solutionArn",
    "solution-version": "solutionVersionArn",
    "campaign": "campaignArn",
}


def client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "Operation")


class FakePersonalize:
    """The control-plane calls apply and train make, in memory."""

    def __init__(self, steps: int = 2) -> None:
        self.steps = steps
        self.resources: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in ARN_KEYS}
        self.progress: dict[str, int] = {}
        self.fail: dict[str, str] = {}
        self.calls: Counter[str] = Counter()
        self.clock = 0.0
        #: Names whose first create call answers ResourceAlreadyExists after creating (a lost race).
        self.race: set[str] = set()

    # ------------------------------------------------------------------------------- machinery

    def _now(self) -> float:
        self.clock += 1.0
        return self.clock

    def _add(self, kind: str, name: str, arn: str, **fields: Any) -> dict[str, Any]:
        self.calls["create " + kind] += 1
        table = self.resources[kind]
        if arn in table:
            raise client_error("ResourceAlreadyExistsException", f"{arn} already exists")
        entry = {"name": name, ARN_KEYS[kind]: arn, "status": "CREATE PENDING", "creationDateTime": self._now()}
        entry.update(fields)
        table[arn] = entry
        self.progress[arn] = 0
        if name in self.race:
            self.race.discard(name)
            raise client_error("ResourceAlreadyExistsException", f"{arn} already exists")
        return entry

    def _get(self, kind: str, arn: str) -> dict[str, Any]:
        self.calls["describe " + kind] += 1
        entry = self.resources[kind].get(arn)
        if entry is None:
            raise client_error("ResourceNotFoundException", f"no {arn}")
        if entry["status"] in ("CREATE PENDING", "CREATE IN_PROGRESS"):
            self.progress[arn] += 1
            if self.progress[arn] >= self.steps:
                reason = self.fail.get(entry["name"])
                entry["status"] = "CREATE FAILED" if reason else "ACTIVE"
                if reason:
                    entry["failureReason"] = reason
            else:
                entry["status"] = "CREATE IN_PROGRESS"
        return entry

    def _list(self, kind: str, member: str, **match: Any) -> dict[str, Any]:
        self.calls["list " + kind] += 1
        entries = [
            dict(entry)
            for entry in self.resources[kind].values()
            if all(entry.get(key) == value for key, value in match.items() if value is not None)
        ]
        return {member: entries}

    def settle_all(self) -> None:
        """Every resource in progress becomes ACTIVE (time passed)."""
        for table in self.resources.values():
            for entry in table.values():
                if entry["status"] != "ACTIVE" and "FAILED" not in entry["status"]:
                    entry["status"] = "ACTIVE"

    def count(self, kind: str) -> int:
        return len(self.resources[kind])

    # ---------------------------------------------------------------------------------- schemas

    def create_schema(self, *, name: str, schema: str) -> dict[str, Any]:
        entry = self._add("schema", name, f"{PREFIX}schema/{name}", schema=schema)
        entry["status"] = "ACTIVE"
        return {"schemaArn": entry["schemaArn"]}

    def list_schemas(self, **_: Any) -> dict[str, Any]:
        return self._list("schema", "schemas")

    def describe_schema(self, *, schemaArn: str) -> dict[str, Any]:
        return {"schema": self._get("schema", schemaArn)}

    # ---------------------------------------------------------------------- groups and datasets

    def create_dataset_group(self, *, name: str) -> dict[str, Any]:
        return {"datasetGroupArn": self._add("dataset-group", name, f"{PREFIX}dataset-group/{name}")["datasetGroupArn"]}

    def list_dataset_groups(self, **_: Any) -> dict[str, Any]:
        return self._list("dataset-group", "datasetGroups")

    def describe_dataset_group(self, *, datasetGroupArn: str) -> dict[str, Any]:
        return {"datasetGroup": self._get("dataset-group", datasetGroupArn)}

    def create_dataset(self, *, name: str, schemaArn: str, datasetGroupArn: str, datasetType: str) -> dict[str, Any]:
        group = datasetGroupArn.rsplit("/", 1)[-1]
        entry = self._add(
            "dataset",
            name,
            f"{PREFIX}dataset/{group}/{datasetType}",
            schemaArn=schemaArn,
            datasetGroupArn=datasetGroupArn,
            datasetType=datasetType,
        )
        return {"datasetArn": entry["datasetArn"]}

    def list_datasets(self, *, datasetGroupArn: str, **_: Any) -> dict[str, Any]:
        return self._list("dataset", "datasets", datasetGroupArn=datasetGroupArn)

    def describe_dataset(self, *, datasetArn: str) -> dict[str, Any]:
        return {"dataset": self._get("dataset", datasetArn)}

    def create_event_tracker(self, *, name: str, datasetGroupArn: str) -> dict[str, Any]:
        if any(t["datasetGroupArn"] == datasetGroupArn for t in self.resources["event-tracker"].values()):
            raise client_error("ResourceAlreadyExistsException", "one tracker per group")
        entry = self._add(
            "event-tracker",
            name,
            f"{PREFIX}event-tracker/{name}",
            datasetGroupArn=datasetGroupArn,
            trackingId=f"tracking-{name}",
        )
        return {"eventTrackerArn": entry["eventTrackerArn"], "trackingId": entry["trackingId"]}

    def list_event_trackers(self, *, datasetGroupArn: str, **_: Any) -> dict[str, Any]:
        listed = self._list("event-tracker", "eventTrackers", datasetGroupArn=datasetGroupArn)
        for entry in listed["eventTrackers"]:
            entry.pop("trackingId")  # a summary has no trackingId
        return listed

    def describe_event_tracker(self, *, eventTrackerArn: str) -> dict[str, Any]:
        return {"eventTracker": self._get("event-tracker", eventTrackerArn)}

    def create_dataset_import_job(
        self, *, jobName: str, datasetArn: str, dataSource: dict[str, str], roleArn: str, importMode: str
    ) -> dict[str, Any]:
        entry = self._add(
            "dataset-import-job",
            jobName,
            f"{PREFIX}dataset-import-job/{jobName}",
            jobName=jobName,
            datasetArn=datasetArn,
            dataSource=dataSource,
            roleArn=roleArn,
        )
        return {"datasetImportJobArn": entry["datasetImportJobArn"]}

    def list_dataset_import_jobs(self, *, datasetArn: str, **_: Any) -> dict[str, Any]:
        return self._list("dataset-import-job", "datasetImportJobs", datasetArn=datasetArn)

    def describe_dataset_import_job(self, *, datasetImportJobArn: str) -> dict[str, Any]:
        return {"datasetImportJob": self._get("dataset-import-job", datasetImportJobArn)}

    def create_filter(self, *, name: str, datasetGroupArn: str, filterExpression: str) -> dict[str, Any]:
        entry = self._add(
            "filter",
            name,
            f"{PREFIX}filter/{name}",
            datasetGroupArn=datasetGroupArn,
            filterExpression=filterExpression,
        )
        return {"filterArn": entry["filterArn"]}

    def list_filters(self, *, datasetGroupArn: str, **_: Any) -> dict[str, Any]:
        return self._list("filter", "Filters", datasetGroupArn=datasetGroupArn)

    def describe_filter(self, *, filterArn: str) -> dict[str, Any]:
        return {"filter": self._get("filter", filterArn)}

    # ----------------------------------------------------------------------- models and serving

    def create_solution(self, *, name: str, datasetGroupArn: str, recipeArn: str, **rest: Any) -> dict[str, Any]:
        entry = self._add(
            "solution",
            name,
            f"{PREFIX}solution/{name}",
            datasetGroupArn=datasetGroupArn,
            recipeArn=recipeArn,
            performAutoTraining=rest.get("performAutoTraining", True),
        )
        return {"solutionArn": entry["solutionArn"]}

    def list_solutions(self, *, datasetGroupArn: str, **_: Any) -> dict[str, Any]:
        return self._list("solution", "solutions", datasetGroupArn=datasetGroupArn)

    def describe_solution(self, *, solutionArn: str) -> dict[str, Any]:
        return {"solution": self._get("solution", solutionArn)}

    def update_solution(self, *, solutionArn: str, performAutoTraining: bool) -> dict[str, Any]:
        self.calls["update solution"] += 1
        entry = self.resources["solution"][solutionArn]
        entry["performAutoTraining"] = performAutoTraining
        entry["latestSolutionUpdate"] = {"status": "ACTIVE", "performAutoTraining": performAutoTraining}
        return {"solutionArn": solutionArn}

    def create_solution_version(self, *, solutionArn: str, trainingMode: str) -> dict[str, Any]:
        if any(
            v["solutionArn"] == solutionArn and v["status"] in ("CREATE PENDING", "CREATE IN_PROGRESS")
            for v in self.resources["solution-version"].values()
        ):
            raise client_error("ResourceInUseException", "a version is in progress")
        number = self.count("solution-version") + 1
        name = solutionArn.rsplit("/", 1)[-1]
        entry = self._add(
            "solution-version",
            name,
            f"{solutionArn}/v{number}",
            solutionArn=solutionArn,
            trainingMode=trainingMode,
        )
        return {"solutionVersionArn": entry["solutionVersionArn"]}

    def list_solution_versions(self, *, solutionArn: str, **_: Any) -> dict[str, Any]:
        return self._list("solution-version", "solutionVersions", solutionArn=solutionArn)

    def describe_solution_version(self, *, solutionVersionArn: str) -> dict[str, Any]:
        return {"solutionVersion": self._get("solution-version", solutionVersionArn)}

    def create_campaign(self, *, name: str, solutionVersionArn: str, minProvisionedTPS: int) -> dict[str, Any]:
        version = self.resources["solution-version"][solutionVersionArn]
        assert version["status"] == "ACTIVE", "a campaign needs an ACTIVE solution version"
        entry = self._add(
            "campaign", name, f"{PREFIX}campaign/{name}", solutionVersionArn=solutionVersionArn, tps=minProvisionedTPS
        )
        return {"campaignArn": entry["campaignArn"]}

    def list_campaigns(self, **_: Any) -> dict[str, Any]:
        return self._list("campaign", "campaigns")

    def describe_campaign(self, *, campaignArn: str) -> dict[str, Any]:
        entry = self._get("campaign", campaignArn)
        update = entry.get("latestCampaignUpdate")
        if update is not None and update["status"] != "ACTIVE":
            update["polls"] += 1
            if update["polls"] >= self.steps:
                update["status"] = "ACTIVE"
                entry["solutionVersionArn"] = update["solutionVersionArn"]
        return {"campaign": entry}

    def update_campaign(self, *, campaignArn: str, solutionVersionArn: str) -> dict[str, Any]:
        self.calls["update campaign"] += 1
        entry = self.resources["campaign"][campaignArn]
        entry["latestCampaignUpdate"] = {
            "status": "UPDATE PENDING",
            "solutionVersionArn": solutionVersionArn,
            "polls": 0,
        }
        return {"campaignArn": campaignArn}


# ------------------------------------------------------------------------------------------ helpers

CONFIG = PersonalizeConfig.load(None)
LOCATION = DatasetLocation("datasets-bucket", "runs/today")


def no_sleep(_: float) -> None:
    pass


def applier(
    fake: FakePersonalize,
    *,
    config: PersonalizeConfig = CONFIG,
    role_arn: str | None = ROLE,
    reimport: bool = False,
    deadline: float = 3600.0,
) -> ConfigApplier:
    waiter = StatusWaiter(Backoff(initial=0.01, maximum=0.1), Deadline(deadline), sleep=no_sleep, rng=random.Random(3))
    return ConfigApplier(
        cast(Any, fake),
        config,
        LOCATION,
        SCHEMAS.__getitem__,
        waiter,
        role_arn=role_arn,
        reimport=reimport,
        now=lambda: datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC),
    )


EXPECTED_COUNTS = {
    "schema": 3,
    "dataset-group": 1,
    "dataset": 3,
    "event-tracker": 1,
    "dataset-import-job": 3,
    "filter": 1,
    "solution": 4,
    "solution-version": 4,
    "campaign": 4,
}


# ------------------------------------------------------------------------------------------ apply


def test_first_apply_creates_everything_in_order_and_returns_the_outputs() -> None:
    fake = FakePersonalize()
    run = applier(fake)
    outputs = run.apply()
    assert {kind: fake.count(kind) for kind in ARN_KEYS} == EXPECTED_COUNTS
    assert all(entry["status"] == "ACTIVE" for table in fake.resources.values() for entry in table.values())
    assert outputs.tracking_id == "tracking-lobby-tracker"
    assert outputs.dataset_group_arn == f"{PREFIX}dataset-group/lobby"
    assert set(outputs.campaigns) == {"sims", "popularity", "trending", "for_you"}
    assert outputs.filters == {"unavailable": f"{PREFIX}filter/lobby-unavailable"}
    assert outputs.solution_versions["sims"].startswith(f"{PREFIX}solution/lobby-sims/")
    assert outputs.role_arn == ROLE
    as_json = outputs.to_json()
    assert set(as_json) == {
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
    jobs = fake.resources["dataset-import-job"].values()
    assert {job["dataSource"]["dataLocation"] for job in jobs} == {
        "s3://datasets-bucket/runs/today/interactions.csv",
        "s3://datasets-bucket/runs/today/items.csv",
        "s3://datasets-bucket/runs/today/users.csv",
    }
    assert {job["jobName"] for job in jobs} == {
        f"lobby-{kind}-20261101T120000Z" for kind in ("interactions", "items", "users")
    }
    assert all(job["roleArn"] == ROLE for job in jobs)
    solutions = fake.resources["solution"].values()
    assert all(solution["performAutoTraining"] is False for solution in solutions)
    assert {solution["recipeArn"].rsplit("/", 1)[-1] for solution in solutions} == {
        "aws-sims",
        "aws-popularity-count",
        "aws-trending-now",
        "aws-user-personalization-v2",
    }
    assert Counter(row.outcome for row in run.ledger.rows) == {"created": sum(EXPECTED_COUNTS.values())}
    assert all(row.status == "ACTIVE" for row in run.ledger.rows)


def test_a_second_apply_creates_nothing() -> None:
    fake = FakePersonalize()
    first = applier(fake).apply()
    creates = sum(count for call, count in fake.calls.items() if call.startswith("create"))
    second_run = applier(fake)
    second = second_run.apply()
    assert sum(count for call, count in fake.calls.items() if call.startswith("create")) == creates
    assert {row.outcome for row in second_run.ledger.rows} == {"existed"}
    # Every resource but the solution versions: with every campaign there, no version is looked for.
    assert len(second_run.ledger.rows) == sum(EXPECTED_COUNTS.values()) - EXPECTED_COUNTS["solution-version"]
    assert second.to_json() == first.to_json()


def test_an_interrupted_apply_resumes_waiting_on_what_is_in_progress() -> None:
    fake = FakePersonalize(steps=3)
    with pytest.raises(DeadlineExceededError):
        # The deadline passes at once: the run stops after creating the group, like a kill while waiting.
        applier(fake, deadline=1e-9).apply()
    assert fake.count("dataset-group") == 1
    assert fake.resources["dataset-group"][f"{PREFIX}dataset-group/lobby"]["status"] != "ACTIVE"
    resumed = applier(fake)
    resumed.apply()
    assert {kind: fake.count(kind) for kind in ARN_KEYS} == EXPECTED_COUNTS
    outcomes = {(row.kind, row.outcome) for row in resumed.ledger.rows}
    assert ("dataset group", "waited") in outcomes
    assert ("schema", "existed") in outcomes


def test_in_progress_import_jobs_and_versions_are_waited_on_not_created_again() -> None:
    fake = FakePersonalize()
    applier(fake).apply()
    for kind in ("dataset-import-job", "solution-version"):
        for entry in fake.resources[kind].values():
            entry["status"] = "CREATE IN_PROGRESS"
            fake.progress[entry[ARN_KEYS[kind]]] = 0
    # Campaigns exist, so the versions are not needed now, but no duplicate is made either way.
    run = applier(fake)
    run.apply()
    assert fake.count("dataset-import-job") == 3
    assert fake.count("solution-version") == 4
    waited = [row for row in run.ledger.rows if row.outcome == "waited"]
    assert {row.kind for row in waited} == {"import job"}
    assert all(row.status == "ACTIVE" for row in waited)


def test_a_failed_import_reports_the_failure_reason() -> None:
    fake = FakePersonalize()
    fake.fail["lobby-users-20261101T120000Z"] = "Input file s3://datasets-bucket/runs/today/users.csv not found"
    run = applier(fake)
    with pytest.raises(ResourceFailedError) as raised:
        run.apply()
    assert raised.value.reason == "Input file s3://datasets-bucket/runs/today/users.csv not found"
    assert "import job lobby-users-20261101T120000Z is CREATE FAILED" in str(raised.value)
    assert fake.count("solution-version") == 0, "nothing trains on a failed import"
    assert any(row.status == "CREATE FAILED" for row in run.ledger.rows)
    # Fixed data, run again: a new import job replaces the failed one; nothing else is duplicated.
    fake.fail.clear()
    later = applier(fake)
    later.now = lambda: datetime(2026, 11, 1, 13, 0, 0, tzinfo=UTC)
    later.apply()
    assert fake.count("dataset-import-job") == 4
    assert fake.count("dataset-group") == 1


def test_reimport_creates_new_import_jobs() -> None:
    fake = FakePersonalize()
    applier(fake).apply()
    again = applier(fake, reimport=True)
    again.now = lambda: datetime(2026, 11, 2, 12, 0, 0, tzinfo=UTC)
    again.apply()
    assert fake.count("dataset-import-job") == 6
    assert fake.count("solution-version") == 4


def test_a_missing_role_is_a_configuration_error_naming_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="BATCH_PERSONALIZE_ROLE_ARN"):
        applier(FakePersonalize(), role_arn=None).apply()


def test_a_changed_schema_is_a_configuration_error() -> None:
    fake = FakePersonalize()
    applier(fake).apply()
    entry = fake.resources["schema"][f"{PREFIX}schema/lobby-items-v2"]
    entry["schema"] = json.dumps({**SCHEMA, "fields": []})
    with pytest.raises(ConfigurationError, match="schemas cannot change"):
        applier(fake).apply()


def test_a_lost_create_race_uses_the_resource_that_won() -> None:
    fake = FakePersonalize()
    fake.race.update({"lobby", "lobby-sims"})
    applier(fake).apply()
    assert {kind: fake.count(kind) for kind in ARN_KEYS} == EXPECTED_COUNTS


def test_service_errors_are_translated() -> None:
    fake = FakePersonalize()

    def refused(**_: Any) -> dict[str, Any]:
        raise client_error("InvalidInputException", "Invalid filter expression")

    fake.create_filter = refused  # type: ignore[method-assign]
    with pytest.raises(ConfigurationError, match=r"creating filter lobby-unavailable: .*Invalid filter expression"):
        applier(fake).apply()

    def limited(**_: Any) -> dict[str, Any]:
        raise client_error("LimitExceededException", "too many solutions")

    fake = FakePersonalize()
    fake.create_solution = limited  # type: ignore[method-assign]
    with pytest.raises(PersonalizeError, match="limit was reached: too many solutions"):
        applier(fake).apply()


def test_auto_training_is_set_to_what_the_config_says() -> None:
    fake = FakePersonalize()
    applier(fake).apply()
    sims = fake.resources["solution"][f"{PREFIX}solution/lobby-sims"]
    sims["performAutoTraining"] = True
    run = applier(fake)
    run.apply()
    assert fake.calls["update solution"] == 1
    assert sims["performAutoTraining"] is False
    assert [row.outcome for row in run.ledger.rows if row.kind == "solution update"] == ["updated"]


# ------------------------------------------------------------------------------------------ train


def trainer(fake: FakePersonalize, *, update: bool = False) -> CampaignTrainer:
    waiter = StatusWaiter(Backoff(initial=0.01, maximum=0.1), Deadline(3600), sleep=no_sleep)
    return CampaignTrainer(cast(Any, fake), CONFIG, waiter, update=update)


def test_train_makes_new_versions_and_switches_the_campaigns() -> None:
    fake = FakePersonalize()
    before = applier(fake).apply()
    run = trainer(fake)
    switches = run.train([])
    assert fake.count("solution-version") == 8
    assert {switch.campaign for switch in switches} == {"sims", "popularity", "trending", "for_you"}
    for switch in switches:
        campaign = fake.resources["campaign"][switch.campaign_arn]
        assert switch.old == before.solution_versions[CONFIG.campaigns[switch.campaign].solution]
        assert campaign["solutionVersionArn"] == switch.new != switch.old
        assert fake.resources["solution-version"][switch.new]["trainingMode"] == "FULL"
    after = read_outputs(cast(Any, fake), CONFIG, ROLE)
    assert after.solution_versions == {CONFIG.campaigns[switch.campaign].solution: switch.new for switch in switches}
    assert after.tracking_id == before.tracking_id


def test_train_one_solution_and_adopt_a_version_in_progress() -> None:
    fake = FakePersonalize()
    applier(fake).apply()
    running = fake.create_solution_version(solutionArn=f"{PREFIX}solution/lobby-trending", trainingMode="FULL")
    switches = trainer(fake).train(["trending"])
    assert [(s.campaign, s.new) for s in switches] == [("trending", running["solutionVersionArn"])]
    assert fake.count("solution-version") == 5, "the running version was adopted"


def test_update_mode_only_where_the_recipe_allows_it() -> None:
    fake = FakePersonalize()
    config = PersonalizeConfig.model_validate(
        {
            **CONFIG.model_dump(by_alias=True),
            "solutions": {
                **CONFIG.model_dump(by_alias=True)["solutions"],
                "for_you": {"name": "lobby-for-you", "recipe": "aws-user-personalization"},
            },
        }
    )
    applier(fake, config=config).apply()
    run = CampaignTrainer(
        cast(Any, fake),
        config,
        StatusWaiter(Backoff(initial=0.01, maximum=0.1), Deadline(3600), sleep=no_sleep),
        update=True,
    )
    switches = {switch.campaign: switch.new for switch in run.train(["for_you", "sims"])}
    versions = fake.resources["solution-version"]
    assert versions[switches["for_you"]]["trainingMode"] == "UPDATE"
    assert versions[switches["sims"]]["trainingMode"] == "FULL"
    assert any("cannot train UPDATE" in row.note for row in run.ledger.rows)


def test_train_needs_known_solutions_and_an_applied_config() -> None:
    with pytest.raises(ConfigurationError, match="--solution nope"):
        trainer(FakePersonalize()).train(["nope"])
    with pytest.raises(PersonalizeError, match="run `batch personalize apply` first"):
        trainer(FakePersonalize()).train([])


def test_a_failed_training_leaves_the_campaigns_alone() -> None:
    fake = FakePersonalize()
    before = applier(fake).apply()
    fake.fail["lobby-sims"] = "Insufficient training data"
    with pytest.raises(ResourceFailedError, match="Insufficient training data"):
        trainer(fake).train(["sims"])
    assert fake.calls["update campaign"] == 0
    campaign = fake.resources["campaign"][before.campaigns["sims"]]
    assert campaign["solutionVersionArn"] == before.solution_versions["sims"]
