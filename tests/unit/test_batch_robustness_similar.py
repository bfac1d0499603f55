"""``start_job`` with the name of a job that exists (a ``batch similar run`` interrupted after starting it,
run again with its ``--job-name``): the job is reused when it is the same job, and another job of that
name is refused, naming what differs. A fake Personalize that keeps batch inference jobs by name."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from batch.errors import ConfigurationError
from batch.similar.inference import JobRequest, find_job, start_job

ARN = "arn:aws:personalize:us-east-1:000000000000:"
VERSION = f"{ARN}solution/lobby-sims/v1"
REQUEST = JobRequest(
    job_name="similar-20261101-023000",
    solution_version_arn=VERSION,
    role_arn="arn:aws:iam::000000000000:role/PersonalizeS3",
    input_path="s3://datasets/similar/similar-20261101-023000/input/items.jsonl",
    output_path="s3://datasets/similar/similar-20261101-023000/output/",
    num_results=25,
)


class Paginator:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages

    def paginate(self, **_: Any) -> list[dict[str, Any]]:
        return self.pages


class FakePersonalize:
    """CreateBatchInferenceJob refuses a name in use (ResourceAlreadyExistsException), as the service does."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.creates = 0

    def create_batch_inference_job(self, **request: Any) -> dict[str, Any]:
        self.creates += 1
        name = request["jobName"]
        if name in self.jobs:
            raise ClientError(
                {"Error": {"Code": "ResourceAlreadyExistsException", "Message": f"{name} exists"}},
                "CreateBatchInferenceJob",
            )
        job = {**request, "batchInferenceJobArn": f"{ARN}batch-inference-job/{name}", "status": "CREATE PENDING"}
        self.jobs[name] = job
        return {"batchInferenceJobArn": job["batchInferenceJobArn"]}

    def get_paginator(self, name: str) -> Paginator:
        assert name == "list_batch_inference_jobs"
        summaries = [
            {"jobName": job["jobName"], "batchInferenceJobArn": job["batchInferenceJobArn"], "status": job["status"]}
            for job in self.jobs.values()
        ]
        return Paginator([{"batchInferenceJobs": summaries[:1]}, {"batchInferenceJobs": summaries[1:]}])

    def describe_batch_inference_job(self, *, batchInferenceJobArn: str) -> dict[str, Any]:
        return {
            "batchInferenceJob": next(
                j for j in self.jobs.values() if j["batchInferenceJobArn"] == batchInferenceJobArn
            )
        }


def started(fake: FakePersonalize, request: JobRequest = REQUEST) -> str:
    return start_job(cast(Any, fake), request)


def test_the_same_job_again_is_reused_not_refused() -> None:
    fake = FakePersonalize()
    fake.create_batch_inference_job(jobName="another", solutionVersionArn=VERSION)
    arn = started(fake)
    fake.jobs[REQUEST.job_name]["status"] = "CREATE IN_PROGRESS"
    # The service gives the paths as they were sent; a folder without its trailing slash is the same folder.
    fake.jobs[REQUEST.job_name]["jobOutput"]["s3DataDestination"]["path"] = REQUEST.output_path.rstrip("/")
    again = started(fake)
    assert again == arn == f"{ARN}batch-inference-job/{REQUEST.job_name}"
    assert len(fake.jobs) == 2, "no second job"
    assert fake.creates == 3


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"solution_version_arn": f"{ARN}solution/lobby-sims/v2"}, f"solution version {VERSION}"),
        ({"input_path": "s3://datasets/elsewhere/items.jsonl"}, "input s3://datasets/similar/"),
        ({"output_path": "s3://datasets/elsewhere/"}, "output s3://datasets/similar/"),
        ({"num_results": 10}, "number of results 25 (not 10)"),
    ],
)
def test_another_job_of_that_name_is_refused_naming_what_differs(change: dict[str, Any], named: str) -> None:
    fake = FakePersonalize()
    started(fake)
    other = dataclasses.replace(REQUEST, **change)
    with pytest.raises(ConfigurationError, match="exists already with another") as refused:
        started(fake, other)
    assert named in str(refused.value)
    assert "give another --job-name" in str(refused.value)
    assert len(fake.jobs) == 1


def test_find_job_looks_through_every_page() -> None:
    fake = FakePersonalize()
    assert find_job(cast(Any, fake), REQUEST.job_name) is None
    fake.create_batch_inference_job(jobName="first", solutionVersionArn=VERSION)
    started(fake)
    found = find_job(cast(Any, fake), REQUEST.job_name)
    assert found is not None and found["batchInferenceJobArn"].endswith(REQUEST.job_name)
