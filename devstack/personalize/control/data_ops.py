"""Control-plane operations on data: schemas, dataset groups, datasets, import jobs, event trackers, filters.

Each operation takes the plane and the request body (already checked against the botocore input
shape) and returns the answer (projected onto the output shape by the caller).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from devstack.personalize.control.importer import ImportFailedError, parse_csv
from devstack.personalize.control.plane import ControlPlane, JobFailedError
from devstack.personalize.control.resources import (
    ACTIVE,
    IN_FLIGHT,
    BatchInferenceJob,
    Dataset,
    DatasetGroup,
    DatasetImportJob,
    EventTracker,
    Filter,
    Schema,
    Solution,
)
from devstack.personalize.control.schemas import SchemaError, check_dataset_type, parse_schema
from devstack.personalize.errors import InvalidInputError, ResourceAlreadyExistsError, ResourceInUseError
from devstack.personalize.filters import FilterError, parse_filter
from devstack.personalize.s3io import S3AccessError, S3Url

Body = dict[str, Any]


def _tags(body: Body) -> list[dict[str, str]]:
    return list(body.get("tags") or [])


# ----------------------------------------------------------------------------------------- schemas


async def create_schema(plane: ControlPlane, body: Body) -> Body:
    """CreateSchema: parse the Avro record; a schema is usable at once (it has no status)."""
    try:
        parsed = parse_schema(body["schema"])
    except SchemaError as exc:
        raise InvalidInputError(f"Invalid schema: {exc}") from None
    if body.get("domain"):
        raise InvalidInputError("Domain schemas are not supported by the emulator; omit 'domain'")
    schema = Schema(
        arn=plane.arn(f"schema/{body['name']}"), name=body["name"], text=body["schema"], parsed=parsed, status=ACTIVE
    )
    plane.add(schema)
    return {"schemaArn": schema.arn}


async def describe_schema(plane: ControlPlane, body: Body) -> Body:
    """DescribeSchema."""
    return {"schema": plane.get(Schema, body["schemaArn"]).describe()}


async def list_schemas(plane: ControlPlane, body: Body) -> Body:
    """ListSchemas."""
    return plane.page("ListSchemas", "schemas", plane.table(Schema).values(), body)


async def delete_schema(plane: ControlPlane, body: Body) -> None:
    """DeleteSchema: refused while a dataset uses it."""
    schema = plane.get(Schema, body["schemaArn"])
    users = [dataset.arn for dataset in plane.table(Dataset).values() if dataset.schema_arn == schema.arn]
    if users:
        raise ResourceInUseError(f"Schema {schema.arn} is used by dataset(s) {', '.join(users)}")
    del plane.table(Schema)[schema.arn]


# ---------------------------------------------------------------------------------- dataset groups


async def create_dataset_group(plane: ControlPlane, body: Body) -> Body:
    """CreateDatasetGroup."""
    if body.get("domain"):
        raise InvalidInputError("Domain dataset groups are not supported by the emulator; omit 'domain'")
    group = DatasetGroup(
        arn=plane.arn(f"dataset-group/{body['name']}"),
        name=body["name"],
        role_arn=body.get("roleArn"),
        kms_key_arn=body.get("kmsKeyArn"),
        tags=_tags(body),
    )
    plane.add(group)
    plane.group_data(group.arn)
    await plane.settle(plane.launch(group))
    return {"datasetGroupArn": group.arn}


async def describe_dataset_group(plane: ControlPlane, body: Body) -> Body:
    """DescribeDatasetGroup."""
    return {"datasetGroup": plane.get(DatasetGroup, body["datasetGroupArn"]).describe()}


async def list_dataset_groups(plane: ControlPlane, body: Body) -> Body:
    """ListDatasetGroups."""
    return plane.page("ListDatasetGroups", "datasetGroups", plane.table(DatasetGroup).values(), body)


async def delete_dataset_group(plane: ControlPlane, body: Body) -> None:
    """DeleteDatasetGroup: refused while it has datasets, solutions, an event tracker or filters."""
    group = plane.get(DatasetGroup, body["datasetGroupArn"])
    kinds: list[tuple[str, type[Dataset | Solution | EventTracker | Filter]]] = [
        ("dataset", Dataset),
        ("solution", Solution),
        ("event tracker", EventTracker),
        ("filter", Filter),
    ]
    for noun, kind in kinds:
        members = [resource.arn for resource in plane.table(kind).values() if resource.dataset_group_arn == group.arn]
        if members:
            raise ResourceInUseError(
                f"Dataset group {group.arn} still has {len(members)} {noun}(s): {', '.join(members)}; delete them first"
            )

    def deleted() -> None:
        plane.groups.pop(group.arn, None)

    await plane.settle(plane.delete(group, deleted))


# ---------------------------------------------------------------------------------------- datasets


async def create_dataset(plane: ControlPlane, body: Body) -> Body:
    """CreateDataset: one dataset per type in a group, with a schema that suits the type."""
    group = plane.get(DatasetGroup, body["datasetGroupArn"])
    plane.require_active(group)
    schema = plane.get(Schema, body["schemaArn"])
    dataset_type = body["datasetType"].upper()
    try:
        check_dataset_type(schema.parsed, dataset_type)
    except SchemaError as exc:
        raise InvalidInputError(f"Schema {schema.arn} does not fit a {dataset_type} dataset: {exc}") from None
    arn = plane.store.dataset_arn(group.arn, dataset_type)
    if arn in plane.table(Dataset):
        raise ResourceAlreadyExistsError(f"Dataset group {group.arn} already has a {dataset_type} dataset: {arn}")
    tracker = next(
        (tracker for tracker in plane.table(EventTracker).values() if tracker.dataset_group_arn == group.arn), None
    )
    dataset = Dataset(
        arn=arn,
        name=body["name"],
        dataset_group_arn=group.arn,
        dataset_type=dataset_type,
        schema_arn=schema.arn,
        tracking_id=tracker.tracking_id if tracker is not None and dataset_type == "INTERACTIONS" else None,
        tags=_tags(body),
    )
    plane.add(dataset)
    plane.group_data(group.arn).schemas[dataset_type] = schema.parsed

    def activated() -> None:
        plane.store.put_dataset(dataset.arn, group.arn, dataset_type)

    await plane.settle(plane.launch(dataset, on_active=activated))
    return {"datasetArn": dataset.arn}


async def describe_dataset(plane: ControlPlane, body: Body) -> Body:
    """DescribeDataset."""
    return {"dataset": plane.get(Dataset, body["datasetArn"]).describe()}


async def list_datasets(plane: ControlPlane, body: Body) -> Body:
    """ListDatasets (of one dataset group when ``datasetGroupArn`` is given)."""
    group_arn = body.get("datasetGroupArn")
    if group_arn is not None:
        plane.get(DatasetGroup, group_arn)
    datasets = [d for d in plane.table(Dataset).values() if group_arn is None or d.dataset_group_arn == group_arn]
    return plane.page("ListDatasets", "datasets", datasets, body)


async def delete_dataset(plane: ControlPlane, body: Body) -> None:
    """DeleteDataset: refused while one of its import jobs runs."""
    dataset = plane.get(Dataset, body["datasetArn"])
    running = [
        job.arn
        for job in plane.table(DatasetImportJob).values()
        if job.dataset_arn == dataset.arn and job.status in IN_FLIGHT
    ]
    if running:
        raise ResourceInUseError(f"Dataset {dataset.arn} has import job(s) in progress: {', '.join(running)}")

    def deleted() -> None:
        plane.store.delete_dataset(dataset.arn)
        data = plane.groups.get(dataset.dataset_group_arn)
        if data is not None:
            data.drop_dataset(dataset.dataset_type)

    await plane.settle(plane.delete(dataset, deleted))


# ------------------------------------------------------------------------------------ import jobs


async def create_dataset_import_job(plane: ControlPlane, body: Body) -> Body:
    """CreateDatasetImportJob: read CSV from ``dataSource.dataLocation`` (an object or a folder) in S3."""
    dataset = plane.get(Dataset, body["datasetArn"])
    plane.require_active(dataset)
    location = (body.get("dataSource") or {}).get("dataLocation")
    if not location:
        raise InvalidInputError("dataSource.dataLocation is required (s3://bucket/key or s3://bucket/folder/)")
    try:
        S3Url.parse(location)
    except ValueError as exc:
        raise InvalidInputError(f"dataSource.dataLocation: {exc}") from None
    job = DatasetImportJob(
        arn=plane.arn(f"dataset-import-job/{body['jobName']}"),
        name=body["jobName"],
        dataset_arn=dataset.arn,
        data_location=location,
        role_arn=body.get("roleArn"),
        import_mode=body.get("importMode") or "FULL",
        publish_attribution_metrics=bool(body.get("publishAttributionMetricsToS3")),
        tags=_tags(body),
    )
    plane.add(job)
    schema = plane.get(Schema, dataset.schema_arn).parsed

    async def work() -> None:
        try:
            files = await asyncio.to_thread(plane.s3.read, location)
            rows = await asyncio.to_thread(parse_csv, files, schema, dataset.dataset_type)
        except (S3AccessError, ImportFailedError) as exc:
            raise JobFailedError(str(exc)) from None
        if plane.find(Dataset, dataset.arn) is not dataset:
            raise JobFailedError(f"Dataset {dataset.arn} was deleted during the import")
        plane.group_data(dataset.dataset_group_arn).apply_import(dataset.dataset_type, rows, job.import_mode)
        job.rows_imported = rows.rows

    await plane.settle(plane.launch(job, work))
    return {"datasetImportJobArn": job.arn}


async def describe_dataset_import_job(plane: ControlPlane, body: Body) -> Body:
    """DescribeDatasetImportJob."""
    return {"datasetImportJob": plane.get(DatasetImportJob, body["datasetImportJobArn"]).describe()}


async def list_dataset_import_jobs(plane: ControlPlane, body: Body) -> Body:
    """ListDatasetImportJobs (of one dataset when ``datasetArn`` is given)."""
    dataset_arn = body.get("datasetArn")
    jobs = [
        job for job in plane.table(DatasetImportJob).values() if dataset_arn is None or job.dataset_arn == dataset_arn
    ]
    return plane.page("ListDatasetImportJobs", "datasetImportJobs", jobs, body)


# ---------------------------------------------------------------------------------- event trackers


async def create_event_tracker(plane: ControlPlane, body: Body) -> Body:
    """CreateEventTracker: one per dataset group; once ACTIVE, PutEvents accepts its trackingId."""
    group = plane.get(DatasetGroup, body["datasetGroupArn"])
    plane.require_active(group)
    existing = [tracker.arn for tracker in plane.table(EventTracker).values() if tracker.dataset_group_arn == group.arn]
    if existing:
        raise ResourceAlreadyExistsError(f"Dataset group {group.arn} already has an event tracker: {existing[0]}")
    tracker = EventTracker(
        arn=plane.arn(f"event-tracker/{body['name']}"),
        name=body["name"],
        dataset_group_arn=group.arn,
        tracking_id=str(uuid.uuid4()),
        account_id=plane.store.account_id,
        tags=_tags(body),
    )
    plane.add(tracker)

    def activated() -> None:
        plane.store.put_tracker(
            tracker.tracking_id, name=tracker.name, dataset_group_arn=group.arn, create_datasets=False
        )
        for dataset in plane.table(Dataset).values():
            if dataset.dataset_group_arn == group.arn and dataset.dataset_type == "INTERACTIONS":
                dataset.tracking_id = tracker.tracking_id

    await plane.settle(plane.launch(tracker, on_active=activated))
    return {"eventTrackerArn": tracker.arn, "trackingId": tracker.tracking_id}


async def describe_event_tracker(plane: ControlPlane, body: Body) -> Body:
    """DescribeEventTracker."""
    return {"eventTracker": plane.get(EventTracker, body["eventTrackerArn"]).describe()}


async def list_event_trackers(plane: ControlPlane, body: Body) -> Body:
    """ListEventTrackers (of one dataset group when ``datasetGroupArn`` is given)."""
    group_arn = body.get("datasetGroupArn")
    trackers = [t for t in plane.table(EventTracker).values() if group_arn is None or t.dataset_group_arn == group_arn]
    return plane.page("ListEventTrackers", "eventTrackers", trackers, body)


async def delete_event_tracker(plane: ControlPlane, body: Body) -> None:
    """DeleteEventTracker: its trackingId stops taking PutEvents at once."""
    tracker = plane.get(EventTracker, body["eventTrackerArn"])
    plane.store.delete_tracker(tracker.tracking_id)

    def deleted() -> None:
        for dataset in plane.table(Dataset).values():
            if dataset.tracking_id == tracker.tracking_id:
                dataset.tracking_id = None

    await plane.settle(plane.delete(tracker, deleted))


# ------------------------------------------------------------------------------------------ filters


async def create_filter(plane: ControlPlane, body: Body) -> Body:
    """CreateFilter: the expression must be in the supported subset (see :mod:`devstack.personalize.filters`)."""
    group = plane.get(DatasetGroup, body["datasetGroupArn"])
    plane.require_active(group)
    try:
        expression = parse_filter(body["filterExpression"])
    except FilterError as exc:
        raise InvalidInputError(f"Invalid filter expression: {exc}") from None
    item_filter = Filter(
        arn=plane.arn(f"filter/{body['name']}"),
        name=body["name"],
        dataset_group_arn=group.arn,
        expression=expression,
        tags=_tags(body),
    )
    plane.add(item_filter)
    await plane.settle(plane.launch(item_filter))
    return {"filterArn": item_filter.arn}


async def describe_filter(plane: ControlPlane, body: Body) -> Body:
    """DescribeFilter."""
    return {"filter": plane.get(Filter, body["filterArn"]).describe()}


async def list_filters(plane: ControlPlane, body: Body) -> Body:
    """ListFilters (answer member ``Filters``, as the real API spells it)."""
    group_arn = body.get("datasetGroupArn")
    filters = [f for f in plane.table(Filter).values() if group_arn is None or f.dataset_group_arn == group_arn]
    return plane.page("ListFilters", "Filters", filters, body)


async def delete_filter(plane: ControlPlane, body: Body) -> None:
    """DeleteFilter: refused while a batch inference job using it runs."""
    item_filter = plane.get(Filter, body["filterArn"])
    running = [
        job.arn
        for job in plane.table(BatchInferenceJob).values()
        if job.filter_arn == item_filter.arn and job.status in IN_FLIGHT
    ]
    if running:
        raise ResourceInUseError(f"Filter {item_filter.arn} is used by running batch job(s): {', '.join(running)}")
    await plane.settle(plane.delete(item_filter))


OPERATIONS = {
    "CreateSchema": create_schema,
    "DescribeSchema": describe_schema,
    "ListSchemas": list_schemas,
    "DeleteSchema": delete_schema,
    "CreateDatasetGroup": create_dataset_group,
    "DescribeDatasetGroup": describe_dataset_group,
    "ListDatasetGroups": list_dataset_groups,
    "DeleteDatasetGroup": delete_dataset_group,
    "CreateDataset": create_dataset,
    "DescribeDataset": describe_dataset,
    "ListDatasets": list_datasets,
    "DeleteDataset": delete_dataset,
    "CreateDatasetImportJob": create_dataset_import_job,
    "DescribeDatasetImportJob": describe_dataset_import_job,
    "ListDatasetImportJobs": list_dataset_import_jobs,
    "CreateEventTracker": create_event_tracker,
    "DescribeEventTracker": describe_event_tracker,
    "ListEventTrackers": list_event_trackers,
    "DeleteEventTracker": delete_event_tracker,
    "CreateFilter": create_filter,
    "DescribeFilter": describe_filter,
    "ListFilters": list_filters,
    "DeleteFilter": delete_filter,
}
