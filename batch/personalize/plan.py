"""``batch personalize apply``: make the config's resources exist, in dependency order, idempotently.

Each resource is looked up by name (List); only a missing one is created; one in progress is waited
on, never created again. So a run that was killed half-way finishes the job when run again and makes no
duplicates. The stages, each created first and then waited on together:

1. the schemas (no status) and the dataset group;
2. the datasets and the event tracker;
3. the import jobs, the filters and the solutions. A dataset is imported when it has no ACTIVE import
   job yet, when ``batch datasets`` published new files (its ``manifest.json``, written last) after its
   newest ACTIVE import job was created, or with ``reimport``; an import job in progress is waited on
   (and, if new files were published after it started, followed by a new one). Data unchanged since the
   last import, or without a manifest (no complete set), is not imported again, so re-running apply on
   the same data creates nothing;
4. a first solution version for each solution without an ACTIVE one (FULL training);
5. the campaigns, each on its solution's newest ACTIVE version.

A failed resource stops the run after its stage, with the service's ``failureReason``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from batch.errors import ConfigurationError
from batch.personalize.calls import IN_FLIGHT, RaceLostError, describer, listed, newest, service_call, timestamp
from batch.personalize.config import DATASET_TYPES, DatasetConfig, DatasetType, PersonalizeConfig, SolutionConfig
from batch.personalize.errors import PersonalizeError
from batch.personalize.outputs import Outputs
from batch.personalize.waiter import ACTIVE, Observed, Pending, StatusWaiter

if TYPE_CHECKING:
    from mypy_boto3_personalize import PersonalizeClient

Outcome = Literal["existed", "created", "waited", "updated"]
JOB_TIME_FORMAT: Final = "%Y%m%dT%H%M%SZ"


@dataclass(slots=True)
class Row:
    """One resource in the summary: what apply found or did, and the status it ended with."""

    kind: str
    name: str
    arn: str
    outcome: Outcome
    status: str = ""
    note: str = ""


@dataclass(slots=True)
class Ledger:
    """The summary rows, in the order resources were handled."""

    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def settle(self, final: Mapping[str, Observed]) -> None:
        for row in self.rows:
            if row.arn in final:
                row.status = final[row.arn].status

    def count(self, outcome: Outcome) -> int:
        return sum(1 for row in self.rows if row.outcome == outcome)


class Reporter(Protocol):
    """Where apply and train tell what they do (a terminal, a log)."""

    def action(self, text: str) -> None: ...

    def poll(self, pending: Pending, observed: Observed) -> None: ...


class QuietReporter:
    def action(self, text: str) -> None:
        pass

    def poll(self, pending: Pending, observed: Observed) -> None:
        pass


@dataclass(frozen=True, slots=True)
class DatasetLocation:
    """Where ``batch datasets`` wrote the files: ``s3://bucket/prefix/``."""

    bucket: str
    prefix: str

    def url(self, file: str) -> str:
        key = f"{self.prefix}/{file}" if self.prefix else file
        return f"s3://{self.bucket}/{key}"


#: Reads a file ``batch datasets`` wrote (a schema) by its name under the dataset location.
SchemaReader = Callable[[str], str]
#: When ``batch datasets`` last published a complete set of files: the time of its ``manifest.json``, written
#: last, after every file (a multipart object's time is when its upload began, so the files' own times would
#: be early). None when there is no manifest: no complete set, so nothing new to import.
DataClock = Callable[[], datetime | None]


@dataclass(slots=True)
class _Found:
    """A resource looked up or created: its ARN and whether to wait for it."""

    arn: str
    pending: Pending | None
    #: An import job in progress whose files changed after it started: import again once it is done.
    import_after: bool = False


class ConfigApplier:
    """Applies one :class:`PersonalizeConfig`. Build one per run; :meth:`apply` returns the outputs and
    fills :attr:`ledger`."""

    def __init__(
        self,
        client: PersonalizeClient,
        config: PersonalizeConfig,
        location: DatasetLocation,
        read_schema: SchemaReader,
        waiter: StatusWaiter,
        *,
        role_arn: str | None,
        reimport: bool = False,
        data_modified: DataClock | None = None,
        reporter: Reporter | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.config = config
        self.location = location
        self.read_schema = read_schema
        self.waiter = waiter
        self.role_arn = role_arn
        self.reimport = reimport
        #: None: the data's age is unknown, so a dataset with an ACTIVE import job is imported only with
        #: ``reimport``.
        self.data_modified = data_modified
        self.reporter = reporter or QuietReporter()
        self.now = now
        self.ledger = Ledger()
        self.outputs = Outputs(role_arn=role_arn)

    # ----------------------------------------------------------------------------------- the run

    def apply(self) -> Outputs:
        """Every resource ACTIVE; raises :class:`PersonalizeError` / :class:`ConfigurationError`."""
        config = self.config
        schemas = {kind: self._schema(kind, dataset) for kind, dataset in config.datasets.items()}
        group = self._dataset_group()
        self._wait([group])
        self.outputs.dataset_group_arn = group.arn

        datasets = {kind: self._dataset(kind, config.datasets[kind], schemas[kind], group.arn) for kind in schemas}
        tracker = self._event_tracker(group.arn)
        self._wait([*datasets.values(), tracker])
        self.outputs.datasets = {kind: found.arn for kind, found in datasets.items()}
        self.outputs.event_tracker_arn = tracker.arn
        with service_call("describing the event tracker"):
            described = self.client.describe_event_tracker(eventTrackerArn=tracker.arn)["eventTracker"]
        self.outputs.tracking_id = described.get("trackingId", "")

        imports = {kind: self._import_job(kind, config.datasets[kind], datasets[kind].arn) for kind in DATASET_TYPES}
        filters = {key: self._filter(key, group.arn) for key in config.filters}
        solutions = {key: self._solution(key, solution, group.arn) for key, solution in config.solutions.items()}
        self._wait([*(job for job in imports.values() if job is not None), *filters.values(), *solutions.values()])
        # An import that was in progress read the files as they were when it started: files written since
        # are imported now, before anything trains on them.
        again = [
            self._import_job(kind, config.datasets[kind], datasets[kind].arn, follow_up=True)
            for kind, job in imports.items()
            if job is not None and job.import_after
        ]
        self._wait([job for job in again if job is not None])
        self.outputs.filters = {key: found.arn for key, found in filters.items()}
        self.outputs.solutions = {key: found.arn for key, found in solutions.items()}
        updates = [self._auto_training(key, found.arn) for key, found in solutions.items()]
        self._wait([update for update in updates if update is not None])

        # A version is needed only where a campaign is missing (or none serves the solution): a version
        # that `train` left in progress is not waited on while the campaigns serve the one before.
        campaign_names = {str(entry["name"]) for entry in listed(self.client.list_campaigns, "campaigns", "listing")}
        versions = {
            key: self._solution_version(key, found.arn)
            for key, found in solutions.items()
            if not config.campaigns_of(key)
            or any(c.name not in campaign_names for c in config.campaigns_of(key).values())
        }
        self._wait(list(versions.values()))
        campaigns = {
            key: self._campaign(key, versions[spec.solution].arn if spec.solution in versions else None)
            for key, spec in config.campaigns.items()
        }
        self._wait(list(campaigns.values()))
        self.outputs.campaigns = {key: found.arn for key, found in campaigns.items()}
        self.outputs.solution_versions = {key: found.arn for key, found in versions.items()}
        for key, campaign in config.campaigns.items():
            with service_call(f"describing campaign {campaign.name}"):
                served = self.client.describe_campaign(campaignArn=campaigns[key].arn)["campaign"]
            self.outputs.solution_versions[campaign.solution] = served["solutionVersionArn"]
        return self.outputs

    def _wait(self, found: Sequence[_Found]) -> None:
        pending = [item.pending for item in found if item.pending is not None]
        if pending:
            self.reporter.action("waiting for " + ", ".join(p.label for p in pending))
            try:
                self.waiter.wait(pending)
            finally:
                self.ledger.settle(self.waiter.seen)

    # --------------------------------------------------------------------------------- machinery

    def _record(self, row: Row) -> None:
        self.ledger.add(row)
        verb = {"existed": "exists", "created": "created", "waited": "in progress", "updated": "updating"}[row.outcome]
        self.reporter.action(f"{row.kind} {row.name}: {verb} ({row.status}){'; ' + row.note if row.note else ''}")

    def _ensure(
        self,
        kind: str,
        name: str,
        *,
        find: Callable[[], dict[str, Any] | None],
        create: Callable[[], str],
        describe: Callable[[str], dict[str, Any] | None],
        arn_key: str,
        created_status: str = "CREATE PENDING",
    ) -> _Found:
        """Find the resource; create it when missing (or when a create race was lost, find it again);
        a resource not ACTIVE is to be waited on."""
        label = f"{kind} {name}"
        found = find()
        outcome: Outcome = "existed"
        arn: str
        if found is None:
            try:
                with service_call(f"creating {label}"):
                    arn = create()
                outcome = "created"
                status = created_status
            except RaceLostError:
                found = find()
                if found is None:
                    raise PersonalizeError(f"creating {label}: it exists, yet it is not listed") from None
        if found is not None:
            arn = str(found[arn_key])
            status = str(found.get("status", ACTIVE))
            if status != ACTIVE:
                outcome = "waited"
        self._record(Row(kind, name, arn, outcome, status))
        if status == ACTIVE:
            return _Found(arn, None)
        return _Found(arn, Pending(label, arn, describer(lambda: describe(arn), f"describing {label}")))

    @staticmethod
    def _named(entries: list[dict[str, Any]], name: str, key: str = "name") -> dict[str, Any] | None:
        return next((entry for entry in entries if entry.get(key) == name), None)

    # -------------------------------------------------------------------------------- the steps

    def _schema(self, kind: DatasetType, dataset: DatasetConfig) -> str:
        spec = dataset.schema_
        if spec.definition is not None:
            text = json.dumps(spec.definition)
        else:
            assert spec.file is not None
            text = self.read_schema(spec.file)
        try:
            wanted = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"the {kind} schema ({spec.file or 'definition'}) is not JSON: {exc}") from None
        client = self.client

        def find() -> dict[str, Any] | None:
            return self._named(listed(client.list_schemas, "schemas", "listing schemas"), spec.name)

        found = self._ensure(
            "schema",
            spec.name,
            find=find,
            create=lambda: client.create_schema(name=spec.name, schema=text)["schemaArn"],
            describe=lambda arn: None,
            arn_key="schemaArn",
            created_status=ACTIVE,
        )
        with service_call(f"describing schema {spec.name}"):
            existing = client.describe_schema(schemaArn=found.arn)["schema"].get("schema", "")
        if json.loads(existing or "null") != wanted:
            raise ConfigurationError(
                f"schema {spec.name} exists with other fields than {spec.file or 'the definition'}; schemas cannot "
                f"change: give the {kind} schema a new name in the Personalize config"
            )
        return found.arn

    def _dataset_group(self) -> _Found:
        name = self.config.dataset_group.name
        client = self.client
        return self._ensure(
            "dataset group",
            name,
            find=lambda: self._named(
                listed(client.list_dataset_groups, "datasetGroups", "listing dataset groups"), name
            ),
            create=lambda: client.create_dataset_group(name=name)["datasetGroupArn"],
            describe=lambda arn: dict(client.describe_dataset_group(datasetGroupArn=arn)["datasetGroup"]),
            arn_key="datasetGroupArn",
        )

    def _dataset(self, kind: DatasetType, dataset: DatasetConfig, schema_arn: str, group_arn: str) -> _Found:
        client = self.client

        def find() -> dict[str, Any] | None:
            entries = listed(client.list_datasets, "datasets", "listing datasets", datasetGroupArn=group_arn)
            return self._named(entries, kind, "datasetType")

        found = self._ensure(
            "dataset",
            dataset.name,
            find=find,
            create=lambda: client.create_dataset(
                name=dataset.name, schemaArn=schema_arn, datasetGroupArn=group_arn, datasetType=kind
            )["datasetArn"],
            describe=lambda arn: dict(client.describe_dataset(datasetArn=arn)["dataset"]),
            arn_key="datasetArn",
        )
        with service_call(f"describing dataset {dataset.name}"):
            described = client.describe_dataset(datasetArn=found.arn)["dataset"]
        if described.get("schemaArn") not in (None, schema_arn):
            self.ledger.rows[-1].note = f"its schema is {described.get('schemaArn')}, not {schema_arn}"
        return found

    def _event_tracker(self, group_arn: str) -> _Found:
        name = self.config.event_tracker.name
        client = self.client

        def find() -> dict[str, Any] | None:
            # One tracker per dataset group: whatever its name, it is the group's.
            entries = listed(
                client.list_event_trackers, "eventTrackers", "listing event trackers", datasetGroupArn=group_arn
            )
            return self._named(entries, name) or (entries[0] if entries else None)

        return self._ensure(
            "event tracker",
            name,
            find=find,
            create=lambda: client.create_event_tracker(name=name, datasetGroupArn=group_arn)["eventTrackerArn"],
            describe=lambda arn: dict(client.describe_event_tracker(eventTrackerArn=arn)["eventTracker"]),
            arn_key="eventTrackerArn",
        )

    def _import_job(
        self, kind: DatasetType, dataset: DatasetConfig, dataset_arn: str, *, follow_up: bool = False
    ) -> _Found | None:
        """The dataset's import: an in-progress job to wait on, nothing when its newest ACTIVE job has
        imported the files as they are now, else a new job. ``follow_up``: the second look, after waiting
        on a job in progress (which is then not followed up again)."""
        spec = dataset.import_
        client = self.client
        label = f"import job for {dataset.name}"
        jobs = listed(
            client.list_dataset_import_jobs, "datasetImportJobs", "listing import jobs", datasetArn=dataset_arn
        )

        def pending(arn: str, name: str) -> Pending:
            return Pending(
                f"import job {name}",
                arn,
                describer(
                    lambda: dict(client.describe_dataset_import_job(datasetImportJobArn=arn)["datasetImportJob"]),
                    f"describing import job {name}",
                ),
            )

        running = newest([job for job in jobs if job.get("status") in IN_FLIGHT])
        if running is not None:
            arn, name = str(running["datasetImportJobArn"]), str(running["jobName"])
            row = Row("import job", name, arn, "waited", str(running["status"]))
            again = not follow_up and (self.reimport or self._newer_data(running) is not None)
            if again:
                row.note = (
                    "--reimport: imported again after it" if self.reimport else "newer files: imported again after it"
                )
            self._record(row)
            return _Found(arn, pending(arn, name), import_after=again)
        done = newest([job for job in jobs if job.get("status") == ACTIVE])
        note = ""
        if done is not None:
            if self.reimport:
                note = "--reimport"
            else:
                modified = self._newer_data(done)
                if modified is None:
                    self._record(
                        Row("import job", str(done["jobName"]), str(done["datasetImportJobArn"]), "existed", ACTIVE)
                    )
                    return None
                note = (
                    f"datasets (manifest.json) written {modified.isoformat(timespec='seconds')}, "
                    f"after import job {done['jobName']}"
                )
        if self.role_arn is None:
            raise ConfigurationError(
                f"{label}: BATCH_PERSONALIZE_ROLE_ARN is not set (the IAM role Personalize assumes to read "
                f"{self.location.url(spec.file)})"
            )
        name = f"{spec.job_name_prefix}-{self.now().strftime(JOB_TIME_FORMAT)}"
        try:
            with service_call(f"creating {label}"):
                arn = client.create_dataset_import_job(
                    jobName=name,
                    datasetArn=dataset_arn,
                    dataSource={"dataLocation": self.location.url(spec.file)},
                    roleArn=self.role_arn,
                    importMode=spec.import_mode,
                )["datasetImportJobArn"]
        except RaceLostError as lost:
            raise PersonalizeError(f"creating {label}: {lost}; run apply again to wait for the running job") from None
        self._record(Row("import job", name, arn, "created", "CREATE PENDING", note))
        return _Found(arn, pending(arn, name))

    def _newer_data(self, job: Mapping[str, Any]) -> datetime | None:
        """When the datasets were published, if that was after ``job`` was created (so the job did not import
        them); None when it was not, when there is no manifest, or when its age is unknown (no
        :attr:`data_modified`)."""
        if self.data_modified is None:
            return None
        modified = self.data_modified()
        if modified is None or modified.timestamp() <= timestamp(job.get("creationDateTime")):
            return None
        return modified

    def _filter(self, key: str, group_arn: str) -> _Found:
        spec = self.config.filters[key]
        client = self.client
        found = self._ensure(
            "filter",
            spec.name,
            find=lambda: self._named(
                listed(client.list_filters, "Filters", "listing filters", datasetGroupArn=group_arn), spec.name
            ),
            create=lambda: client.create_filter(
                name=spec.name, datasetGroupArn=group_arn, filterExpression=spec.expression
            )["filterArn"],
            describe=lambda arn: dict(client.describe_filter(filterArn=arn)["filter"]),
            arn_key="filterArn",
        )
        with service_call(f"describing filter {spec.name}"):
            expression = client.describe_filter(filterArn=found.arn)["filter"].get("filterExpression")
        if expression is not None and expression != spec.expression:
            self.ledger.rows[-1].note = "its expression differs from the config (filters cannot change: rename it)"
        return found

    def _solution(self, key: str, spec: SolutionConfig, group_arn: str) -> _Found:
        client = self.client

        def create() -> str:
            arguments: dict[str, Any] = {
                "name": spec.name,
                "datasetGroupArn": group_arn,
                "recipeArn": spec.recipe_arn,
                "performAutoTraining": spec.perform_auto_training,
            }
            if spec.event_type:
                arguments["eventType"] = spec.event_type
            if spec.solution_config:
                arguments["solutionConfig"] = spec.solution_config
            return client.create_solution(**arguments)["solutionArn"]

        found = self._ensure(
            "solution",
            spec.name,
            find=lambda: self._named(
                listed(client.list_solutions, "solutions", "listing solutions", datasetGroupArn=group_arn), spec.name
            ),
            create=create,
            describe=lambda arn: dict(client.describe_solution(solutionArn=arn)["solution"]),
            arn_key="solutionArn",
        )
        return found

    def _auto_training(self, key: str, solution_arn: str) -> _Found | None:
        """Make the solution's ``performAutoTraining`` what the config says (UpdateSolution)."""
        spec = self.config.solutions[key]
        client = self.client
        with service_call(f"describing solution {spec.name}"):
            solution = client.describe_solution(solutionArn=solution_arn)["solution"]
        if solution.get("recipeArn") not in (None, spec.recipe_arn):
            raise ConfigurationError(
                f"solution {spec.name} exists with recipe {solution.get('recipeArn')}, not {spec.recipe_arn}; "
                "a solution's recipe cannot change: give it a new name in the Personalize config"
            )
        if bool(solution.get("performAutoTraining")) == spec.perform_auto_training:
            return None
        update = solution.get("latestSolutionUpdate") or {}
        if update.get("status") not in (None, ACTIVE) and not str(update.get("status")).endswith("FAILED"):
            self._record(Row("solution update", spec.name, solution_arn, "waited", str(update["status"])))
        else:
            try:
                with service_call(f"updating solution {spec.name}"):
                    client.update_solution(solutionArn=solution_arn, performAutoTraining=spec.perform_auto_training)
            except RaceLostError as lost:
                raise PersonalizeError(f"updating solution {spec.name}: {lost}") from None
            note = f"performAutoTraining -> {str(spec.perform_auto_training).lower()}"
            self._record(Row("solution update", spec.name, solution_arn, "updated", "UPDATE PENDING", note))

        def describe() -> dict[str, Any] | None:
            described = client.describe_solution(solutionArn=solution_arn)["solution"]
            return dict(described.get("latestSolutionUpdate") or {"status": ACTIVE})

        label = f"solution update {spec.name}"
        return _Found(solution_arn, Pending(label, solution_arn, describer(describe, f"describing {label}")))

    def _solution_version(self, key: str, solution_arn: str) -> _Found:
        """The solution's newest ACTIVE version; else the one in progress; else a new FULL one."""
        spec = self.config.solutions[key]
        client = self.client
        versions = listed(
            client.list_solution_versions, "solutionVersions", "listing solution versions", solutionArn=solution_arn
        )
        label = f"solution version of {spec.name}"

        def pending(arn: str) -> Pending:
            return Pending(
                label,
                arn,
                describer(
                    lambda: dict(client.describe_solution_version(solutionVersionArn=arn)["solutionVersion"]),
                    f"describing {label}",
                ),
            )

        active = newest([version for version in versions if version.get("status") == ACTIVE])
        if active is not None:
            self._record(Row("solution version", spec.name, str(active["solutionVersionArn"]), "existed", ACTIVE))
            return _Found(str(active["solutionVersionArn"]), None)
        running = newest([version for version in versions if version.get("status") in IN_FLIGHT])
        if running is None:
            try:
                with service_call(f"creating {label}"):
                    arn = client.create_solution_version(solutionArn=solution_arn, trainingMode="FULL")[
                        "solutionVersionArn"
                    ]
                self._record(Row("solution version", spec.name, arn, "created", "CREATE PENDING", "training FULL"))
                return _Found(arn, pending(arn))
            except RaceLostError:
                versions = listed(
                    client.list_solution_versions,
                    "solutionVersions",
                    "listing solution versions",
                    solutionArn=solution_arn,
                )
                running = newest([version for version in versions if version.get("status") in IN_FLIGHT])
                if running is None:
                    raise PersonalizeError(f"creating {label}: in use, yet no version is in progress") from None
        arn = str(running["solutionVersionArn"])
        self._record(Row("solution version", spec.name, arn, "waited", str(running["status"])))
        return _Found(arn, pending(arn))

    def _campaign(self, key: str, version_arn: str | None) -> _Found:
        spec = self.config.campaigns[key]
        client = self.client

        def create() -> str:
            if version_arn is None:
                raise PersonalizeError(f"campaign {spec.name} was deleted while apply ran; run apply again")
            return client.create_campaign(
                name=spec.name, solutionVersionArn=version_arn, minProvisionedTPS=spec.min_provisioned_tps
            )["campaignArn"]

        return self._ensure(
            "campaign",
            spec.name,
            find=lambda: self._named(listed(client.list_campaigns, "campaigns", "listing campaigns"), spec.name),
            create=create,
            describe=lambda arn: dict(client.describe_campaign(campaignArn=arn)["campaign"]),
            arn_key="campaignArn",
        )
