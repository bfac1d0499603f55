"""Batch inference jobs: JSON lines from S3 in, one answer per line to S3 out.

Input (``jobInput.s3DataSource.path``: an object, or a folder whose objects are all read): one JSON
object per line, ``{"itemId": "g-1"}`` for RELATED_ITEMS (SIMS), ``{"userId": "u-1"}`` for
User-Personalization and Popularity-Count, ``{"userId": ..., "itemList": [...]}`` for
PERSONALIZED_RANKING; any line may add ``"filterValues"`` for the job's filter.

Output (``jobOutput.s3DataDestination.path``, a folder): for each input object ``<name>`` an object
``<name>.out`` with one line per input line, in order::

    {"input": {"itemId": "g-1"}, "output": {"recommendedItems": ["g-2", ...]}}
    {"input": {"userId": "u-1"}, "output": {"recommendedItems": [...], "scores": [...]}}
    {"input": {"itemId": 7}, "error": "..."}

``scores`` appear only for recipes that score (User-Personalization, Personalized-Ranking), as with the
real service. Trending-Now has no batch inference (InvalidInputException, as the real service).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from devstack.personalize.control.plane import ControlPlane, JobFailedError
from devstack.personalize.control.resources import BatchInferenceJob, Filter, SolutionVersion
from devstack.personalize.control.serving import MAX_RESULTS, Serving, rank, recommend, serving_version
from devstack.personalize.errors import ApiError, InvalidInputError, ResourceNotFoundError
from devstack.personalize.filters import FilterError, FilterExpression
from devstack.personalize.s3io import S3AccessError, S3Url

Body = dict[str, Any]
#: Lines answered between two yields to the event loop.
LINES_PER_SLICE: Final = 200


def infer_line(serving: Serving, line: str, num_results: int, expression: FilterExpression | None) -> Body:
    """The output line (as an object) for one input line."""
    try:
        request: Any = json.loads(line)
    except ValueError as exc:
        return {"input": line, "error": f"Input is not valid JSON: {exc}"}
    if not isinstance(request, dict):
        return {"input": request, "error": "Input must be a JSON object"}
    user_id = request.get("userId")
    item_id = request.get("itemId")
    try:
        for name, value in (("userId", user_id), ("itemId", item_id)):
            if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 256):
                raise InvalidInputError(f"{name} must be a string of 1..256 characters")
        filter_values = request.get("filterValues")
        if filter_values is not None and (
            not isinstance(filter_values, dict) or not all(isinstance(v, str) for v in filter_values.values())
        ):
            raise InvalidInputError("filterValues must map placeholder names to strings")
        bound = expression.bind(filter_values) if expression is not None else None
        if serving.recipe.recipe_type == "PERSONALIZED_RANKING":
            items = request.get("itemList")
            if not user_id or not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise InvalidInputError("userId and itemList (a list of item ids) are required for ranking")
            results = rank(serving, user_id=user_id, input_list=items, item_filter=bound)
        else:
            results = recommend(serving, user_id=user_id, item_id=item_id, num_results=num_results, item_filter=bound)
    except ApiError as error:
        return {"input": request, "error": error.message}
    except FilterError as exc:
        return {"input": request, "error": str(exc)}
    output: Body = {"recommendedItems": [entry["itemId"] for entry in results]}
    if serving.model.scored:
        output["scores"] = [entry.get("score") for entry in results]
    return {"input": request, "output": output}


async def create_batch_inference_job(plane: ControlPlane, body: Body) -> Body:
    """CreateBatchInferenceJob."""
    version = plane.get(SolutionVersion, body["solutionVersionArn"])
    plane.require_active(version)
    recipe = version.solution.recipe
    if not recipe.batch:
        raise InvalidInputError(f"Batch inference is not available for solution versions of {recipe.name}")
    mode = body.get("batchInferenceJobMode") or "BATCH_INFERENCE"
    if mode != "BATCH_INFERENCE":
        raise InvalidInputError(f"batchInferenceJobMode {mode} is not supported by the emulator")
    num_results = int(body.get("numResults") or 25)
    if num_results > MAX_RESULTS:
        raise InvalidInputError(f"numResults must be at most {MAX_RESULTS}, got {num_results}")
    filter_arn = body.get("filterArn")
    expression: FilterExpression | None = None
    if filter_arn is not None:
        item_filter = plane.find(Filter, filter_arn)
        if item_filter is None:
            raise ResourceNotFoundError(f"Filter {filter_arn} does not exist")
        plane.require_active(item_filter)
        if item_filter.dataset_group_arn != version.solution.dataset_group_arn:
            raise InvalidInputError(f"Filter {filter_arn} belongs to another dataset group than the solution")
        expression = item_filter.expression
    input_path = ((body.get("jobInput") or {}).get("s3DataSource") or {}).get("path", "")
    output_path = ((body.get("jobOutput") or {}).get("s3DataDestination") or {}).get("path", "")
    try:
        S3Url.parse(input_path)
        destination = S3Url.parse(output_path)
    except ValueError as exc:
        raise InvalidInputError(f"jobInput/jobOutput: {exc}") from None
    job = BatchInferenceJob(
        arn=plane.arn(f"batch-inference-job/{body['jobName']}"),
        name=body["jobName"],
        solution_version_arn=version.arn,
        input_path=input_path,
        output_path=output_path,
        role_arn=body["roleArn"],
        num_results=num_results,
        filter_arn=filter_arn,
        job_config=body.get("batchInferenceJobConfig"),
        mode=mode,
        tags=list(body.get("tags") or []),
    )
    plane.add(job)

    async def work() -> None:
        try:
            files = await asyncio.to_thread(plane.s3.read, input_path)
        except S3AccessError as exc:
            raise JobFailedError(str(exc)) from None
        if plane.find(SolutionVersion, version.arn) is not version or version.model is None:
            raise JobFailedError(f"Solution version {version.arn} is no longer available")
        serving = serving_version(plane, version)
        for location, raw in files:
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise JobFailedError(f"{location} is not UTF-8 text: {exc}") from None
            answers: list[str] = []
            for number, line in enumerate(text.splitlines()):
                if not line.strip():
                    continue
                answer = infer_line(serving, line, num_results, expression)
                job.lines_processed += 1
                if "error" in answer:
                    job.lines_failed += 1
                answers.append(json.dumps(answer, separators=(",", ":"), ensure_ascii=False))
                if number % LINES_PER_SLICE == LINES_PER_SLICE - 1:
                    await asyncio.sleep(0)
            name = location.rstrip("/").rsplit("/", 1)[-1]
            target = str(destination.child(f"{name}.out"))
            payload = ("\n".join(answers) + "\n").encode("utf-8") if answers else b""
            try:
                await asyncio.to_thread(plane.s3.write, target, payload)
            except S3AccessError as exc:
                raise JobFailedError(str(exc)) from None

    await plane.settle(plane.launch(job, work))
    return {"batchInferenceJobArn": job.arn}


async def describe_batch_inference_job(plane: ControlPlane, body: Body) -> Body:
    """DescribeBatchInferenceJob."""
    return {"batchInferenceJob": plane.get(BatchInferenceJob, body["batchInferenceJobArn"]).describe()}


async def list_batch_inference_jobs(plane: ControlPlane, body: Body) -> Body:
    """ListBatchInferenceJobs (of one solution version when ``solutionVersionArn`` is given)."""
    version_arn = body.get("solutionVersionArn")
    jobs = [
        job
        for job in plane.table(BatchInferenceJob).values()
        if version_arn is None or job.solution_version_arn == version_arn
    ]
    return plane.page("ListBatchInferenceJobs", "batchInferenceJobs", jobs, body)


OPERATIONS = {
    "CreateBatchInferenceJob": create_batch_inference_job,
    "DescribeBatchInferenceJob": describe_batch_inference_job,
    "ListBatchInferenceJobs": list_batch_inference_jobs,
}
