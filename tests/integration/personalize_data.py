"""What the Personalize integration tests build their data and resources with: Avro schemas, dataset CSVs,
and waiting on a resource's status through its Describe operation (polling with a deadline)."""

from __future__ import annotations

import csv
import io
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_personalize import PersonalizeClient

#: The fields an Interactions schema must have, in the order the tests' CSVs hold them.
INTERACTION_FIELDS: list[dict[str, Any]] = [
    {"name": "USER_ID", "type": "string"},
    {"name": "ITEM_ID", "type": "string"},
    {"name": "TIMESTAMP", "type": "long"},
    {"name": "EVENT_TYPE", "type": "string"},
]
FAILED = ("CREATE FAILED", "CREATE STOPPED")


def avro_schema(name: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    """A Personalize dataset schema: an Avro record ``name`` of ``fields``."""
    return {
        "type": "record",
        "name": name,
        "namespace": "com.amazonaws.personalize.schema",
        "fields": fields,
        "version": "1.0",
    }


def csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    """A dataset CSV (``\\n`` line ends) of ``header`` and ``rows``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def describe(personalize: PersonalizeClient, arn: str) -> dict[str, Any]:
    """The Describe object of the resource ``arn`` names (by the resource type in the ARN)."""
    path = arn.split(":", 5)[5].split("/")
    kind = path[0]
    if kind == "dataset-group":
        return dict(personalize.describe_dataset_group(datasetGroupArn=arn)["datasetGroup"])
    if kind == "dataset":
        return dict(personalize.describe_dataset(datasetArn=arn)["dataset"])
    if kind == "dataset-import-job":
        return dict(personalize.describe_dataset_import_job(datasetImportJobArn=arn)["datasetImportJob"])
    if kind == "event-tracker":
        return dict(personalize.describe_event_tracker(eventTrackerArn=arn)["eventTracker"])
    if kind == "filter":
        return dict(personalize.describe_filter(filterArn=arn)["filter"])
    if kind == "solution" and len(path) == 3:
        return dict(personalize.describe_solution_version(solutionVersionArn=arn)["solutionVersion"])
    if kind == "solution":
        return dict(personalize.describe_solution(solutionArn=arn)["solution"])
    if kind == "campaign":
        return dict(personalize.describe_campaign(campaignArn=arn)["campaign"])
    if kind == "batch-inference-job":
        return dict(personalize.describe_batch_inference_job(batchInferenceJobArn=arn)["batchInferenceJob"])
    if kind == "schema":
        return dict(personalize.describe_schema(schemaArn=arn)["schema"])
    raise AssertionError(f"no describe for {arn}")


def wait_status(
    personalize: PersonalizeClient, arn: str, wanted: str = "ACTIVE", *, timeout: float = 30.0, interval: float = 0.02
) -> dict[str, Any]:
    """Poll Describe of ``arn`` until its status is final (ACTIVE or failed); fail unless it is ``wanted``."""
    deadline = time.monotonic() + timeout
    while True:
        resource = describe(personalize, arn)
        status = resource.get("status")
        if status == "ACTIVE" or status in FAILED:
            assert status == wanted, f"{arn}: status {status}, wanted {wanted}: {resource.get('failureReason')}"
            return resource
        assert time.monotonic() < deadline, f"{arn}: still {status} after {timeout:g}s"
        time.sleep(interval)
