"""The control plane's resources: what each holds and how Describe shows it.

Every resource has an ARN (``arn:aws:personalize:REGION:ACCOUNT:<kind>/<name>``), a status moving
``CREATE PENDING -> CREATE IN_PROGRESS -> ACTIVE`` (or ``CREATE FAILED`` with a ``failureReason``) and
``DELETE PENDING -> DELETE IN_PROGRESS`` before it disappears, and creation/update times (epoch seconds).
:meth:`Resource.describe` gives the Describe answer's object; List answers project it onto the summary
shape (see :mod:`devstack.personalize.shapes`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from devstack.personalize.control.schemas import DatasetSchema
from devstack.personalize.filters import FilterExpression
from devstack.personalize.recipes import Model, Recipe

CREATE_PENDING: Final = "CREATE PENDING"
CREATE_IN_PROGRESS: Final = "CREATE IN_PROGRESS"
ACTIVE: Final = "ACTIVE"
CREATE_FAILED: Final = "CREATE FAILED"
DELETE_PENDING: Final = "DELETE PENDING"
DELETE_IN_PROGRESS: Final = "DELETE IN_PROGRESS"
UPDATE_PENDING: Final = "UPDATE PENDING"
UPDATE_IN_PROGRESS: Final = "UPDATE IN_PROGRESS"
IN_FLIGHT: Final = frozenset({CREATE_PENDING, CREATE_IN_PROGRESS})
DELETING: Final = frozenset({DELETE_PENDING, DELETE_IN_PROGRESS})


@dataclass(kw_only=True, eq=False)
class Resource:
    """Fields every resource has."""

    #: The resource type in its ARN and in the admin listing.
    kind: ClassVar[str] = ""
    #: The member of the Describe answer that holds the object.
    noun: ClassVar[str] = ""

    arn: str
    name: str
    status: str = CREATE_PENDING
    failure_reason: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    tags: list[dict[str, str]] = field(default_factory=list)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.updated_at = self.updated_at or self.created_at

    def set_status(self, status: str, failure_reason: str | None = None) -> None:
        """Move to ``status`` now (``failure_reason`` for a FAILED status)."""
        self.status = status
        self.failure_reason = failure_reason
        self.updated_at = time.time()

    @property
    def active(self) -> bool:
        """Whether the resource is ACTIVE."""
        return self.status == ACTIVE

    def common(self) -> dict[str, Any]:
        """Members every Describe object shares."""
        return {
            "name": self.name,
            "status": self.status,
            "failureReason": self.failure_reason,
            "creationDateTime": self.created_at,
            "lastUpdatedDateTime": self.updated_at,
        }

    def describe(self) -> dict[str, Any]:
        """The Describe answer's object (members outside the shape are dropped later)."""
        return self.common()


@dataclass(kw_only=True, eq=False)
class Schema(Resource):
    """CreateSchema: has no status of its own (ACTIVE at once)."""

    kind: ClassVar[str] = "schema"
    noun: ClassVar[str] = "schema"

    text: str
    parsed: DatasetSchema
    domain: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "schemaArn": self.arn,
            "schema": self.text,
            "domain": self.domain,
            "creationDateTime": self.created_at,
            "lastUpdatedDateTime": self.updated_at,
        }


@dataclass(kw_only=True, eq=False)
class DatasetGroup(Resource):
    """CreateDatasetGroup."""

    kind: ClassVar[str] = "dataset-group"
    noun: ClassVar[str] = "datasetGroup"

    role_arn: str | None = None
    kms_key_arn: str | None = None
    domain: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            **self.common(),
            "datasetGroupArn": self.arn,
            "roleArn": self.role_arn,
            "kmsKeyArn": self.kms_key_arn,
            "domain": self.domain,
        }


@dataclass(kw_only=True, eq=False)
class Dataset(Resource):
    """CreateDataset: one per type in a dataset group."""

    kind: ClassVar[str] = "dataset"
    noun: ClassVar[str] = "dataset"

    dataset_group_arn: str
    dataset_type: str
    schema_arn: str
    tracking_id: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            **self.common(),
            "datasetArn": self.arn,
            "datasetGroupArn": self.dataset_group_arn,
            "datasetType": self.dataset_type,
            "schemaArn": self.schema_arn,
            "trackingId": self.tracking_id,
        }


@dataclass(kw_only=True, eq=False)
class DatasetImportJob(Resource):
    """CreateDatasetImportJob: reads CSV from S3 into a dataset."""

    kind: ClassVar[str] = "dataset-import-job"
    noun: ClassVar[str] = "datasetImportJob"

    dataset_arn: str
    data_location: str
    role_arn: str | None = None
    import_mode: str = "FULL"
    publish_attribution_metrics: bool = False
    rows_imported: int = 0

    def describe(self) -> dict[str, Any]:
        described = self.common()
        described["jobName"] = described.pop("name")
        return {
            **described,
            "datasetImportJobArn": self.arn,
            "datasetArn": self.dataset_arn,
            "dataSource": {"dataLocation": self.data_location},
            "roleArn": self.role_arn,
            "importMode": self.import_mode,
            "publishAttributionMetricsToS3": self.publish_attribution_metrics,
        }


@dataclass(kw_only=True, eq=False)
class Solution(Resource):
    """CreateSolution: a recipe and its configuration; trains solution versions."""

    kind: ClassVar[str] = "solution"
    noun: ClassVar[str] = "solution"

    dataset_group_arn: str
    recipe: Recipe
    event_type: str | None = None
    perform_hpo: bool = False
    perform_auto_training: bool = True
    perform_incremental_update: bool = False
    solution_config: dict[str, Any] = field(default_factory=dict)
    latest_update: dict[str, Any] | None = None
    #: The schedule of automatic training, ``rate(N days)``.
    auto_training_days: int = 7
    #: A manual solution version was created since the solution became ACTIVE (skips the first automatic one).
    manual_version_created: bool = False
    latest_version: SolutionVersion | None = field(default=None, repr=False)
    auto_task: asyncio.Task[None] | None = field(default=None, repr=False)

    def hyperparameters(self) -> dict[str, str]:
        """``featureTransformationParameters`` and ``algorithmHyperParameters`` merged (the latter win)."""
        config = self.solution_config
        return {
            **dict(config.get("featureTransformationParameters") or {}),
            **dict(config.get("algorithmHyperParameters") or {}),
        }

    def describe(self) -> dict[str, Any]:
        return {
            **self.common(),
            "solutionArn": self.arn,
            "performHPO": self.perform_hpo,
            "performAutoML": False,
            "performAutoTraining": self.perform_auto_training,
            "performIncrementalUpdate": self.perform_incremental_update,
            "recipeArn": self.recipe.arn,
            "datasetGroupArn": self.dataset_group_arn,
            "eventType": self.event_type,
            "solutionConfig": self.solution_config or None,
            "latestSolutionVersion": self.latest_version.summary() if self.latest_version is not None else None,
            "latestSolutionUpdate": self.latest_update,
        }


@dataclass(kw_only=True, eq=False)
class SolutionVersion(Resource):
    """CreateSolutionVersion (or automatic training): a trained model."""

    kind: ClassVar[str] = "solution-version"
    noun: ClassVar[str] = "solutionVersion"

    solution: Solution
    training_mode: str = "FULL"
    training_type: str = "MANUAL"
    training_hours: float | None = None
    model: Model | None = field(default=None, repr=False)
    #: How many streamed interactions of the group the training snapshot held (later ones are replayed).
    streamed_seen: int = 0
    interactions_trained: int = 0

    def summary(self) -> dict[str, Any]:
        """The ``latestSolutionVersion`` object of DescribeSolution."""
        return {
            "solutionVersionArn": self.arn,
            "status": self.status,
            "trainingMode": self.training_mode,
            "trainingType": self.training_type,
            "creationDateTime": self.created_at,
            "lastUpdatedDateTime": self.updated_at,
            "failureReason": self.failure_reason,
        }

    def describe(self) -> dict[str, Any]:
        solution = self.solution
        return {
            **self.common(),
            "name": self.name or None,
            "solutionVersionArn": self.arn,
            "solutionArn": solution.arn,
            "performHPO": solution.perform_hpo,
            "performAutoML": False,
            "performIncrementalUpdate": solution.perform_incremental_update,
            "recipeArn": solution.recipe.arn,
            "eventType": solution.event_type,
            "datasetGroupArn": solution.dataset_group_arn,
            "solutionConfig": solution.solution_config or None,
            "trainingHours": self.training_hours,
            "trainingMode": self.training_mode,
            "trainingType": self.training_type,
        }


@dataclass(kw_only=True, eq=False)
class Campaign(Resource):
    """CreateCampaign: serves a solution version's model to GetRecommendations."""

    kind: ClassVar[str] = "campaign"
    noun: ClassVar[str] = "campaign"

    solution_version_arn: str
    min_provisioned_tps: int = 1
    campaign_config: dict[str, Any] = field(default_factory=dict)
    latest_update: dict[str, Any] | None = None

    @property
    def follows_latest(self) -> bool:
        """``campaignConfig.syncWithLatestSolutionVersion``."""
        return bool(self.campaign_config.get("syncWithLatestSolutionVersion"))

    def describe(self) -> dict[str, Any]:
        return {
            **self.common(),
            "campaignArn": self.arn,
            "solutionVersionArn": self.solution_version_arn,
            "minProvisionedTPS": self.min_provisioned_tps,
            "campaignConfig": self.campaign_config or None,
            "latestCampaignUpdate": self.latest_update,
        }


@dataclass(kw_only=True, eq=False)
class EventTracker(Resource):
    """CreateEventTracker: once ACTIVE its trackingId takes PutEvents for the dataset group."""

    kind: ClassVar[str] = "event-tracker"
    noun: ClassVar[str] = "eventTracker"

    dataset_group_arn: str
    tracking_id: str
    account_id: str

    def describe(self) -> dict[str, Any]:
        return {
            **self.common(),
            "eventTrackerArn": self.arn,
            "accountId": self.account_id,
            "trackingId": self.tracking_id,
            "datasetGroupArn": self.dataset_group_arn,
        }


@dataclass(kw_only=True, eq=False)
class Filter(Resource):
    """CreateFilter: a parsed filter expression of a dataset group."""

    kind: ClassVar[str] = "filter"
    noun: ClassVar[str] = "filter"

    dataset_group_arn: str
    expression: FilterExpression

    def describe(self) -> dict[str, Any]:
        return {
            **self.common(),
            "filterArn": self.arn,
            "datasetGroupArn": self.dataset_group_arn,
            "filterExpression": self.expression.text,
        }


@dataclass(kw_only=True, eq=False)
class BatchInferenceJob(Resource):
    """CreateBatchInferenceJob: JSON lines from S3 in, recommendations per line to S3 out."""

    kind: ClassVar[str] = "batch-inference-job"
    noun: ClassVar[str] = "batchInferenceJob"

    solution_version_arn: str
    input_path: str
    output_path: str
    role_arn: str
    num_results: int = 25
    filter_arn: str | None = None
    job_config: dict[str, Any] | None = None
    mode: str = "BATCH_INFERENCE"
    lines_processed: int = 0
    lines_failed: int = 0

    def describe(self) -> dict[str, Any]:
        described = self.common()
        described["jobName"] = described.pop("name")
        return {
            **described,
            "batchInferenceJobArn": self.arn,
            "filterArn": self.filter_arn,
            "solutionVersionArn": self.solution_version_arn,
            "numResults": self.num_results,
            "jobInput": {"s3DataSource": {"path": self.input_path}},
            "jobOutput": {"s3DataDestination": {"path": self.output_path}},
            "batchInferenceJobConfig": self.job_config,
            "roleArn": self.role_arn,
            "batchInferenceJobMode": self.mode,
        }


RESOURCE_TYPES: Final[tuple[type[Resource], ...]] = (
    Schema,
    DatasetGroup,
    Dataset,
    DatasetImportJob,
    Solution,
    SolutionVersion,
    Campaign,
    EventTracker,
    Filter,
    BatchInferenceJob,
)
