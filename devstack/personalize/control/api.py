"""The personalize control plane (JSON 1.1): ``POST /`` with ``X-Amz-Target: AmazonPersonalize.<Operation>``.

Every request is checked against the operation's input shape in botocore's service model, answered by
the operation in :mod:`.data_ops`, :mod:`.training_ops` or :mod:`.batch_jobs`, and projected onto its
output shape. Operations of the real API that are not emulated answer ``UnknownOperationException``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.personalize.context import Emulator
from devstack.personalize.control import batch_jobs, data_ops, training_ops
from devstack.personalize.control.plane import ControlPlane
from devstack.personalize.control.resources import RESOURCE_TYPES, Resource
from devstack.personalize.errors import ResourceNotFoundError, UnsupportedOperationError
from devstack.personalize.protocol import dispatch, unknown_operation
from devstack.personalize.shapes import CONTROL_SERVICE, operation_model, project, validate

Body = dict[str, Any]
Operation = Callable[[ControlPlane, Body], Awaitable[Body | None]]
TARGET_PREFIX: Final = "AmazonPersonalize."


def _tagged(plane: ControlPlane, arn: str) -> Resource:
    for kind in RESOURCE_TYPES:
        found = plane.find(kind, arn)
        if found is not None:
            return found
    raise ResourceNotFoundError(f"Could not find resource {arn}")


async def list_tags_for_resource(plane: ControlPlane, body: Body) -> Body:
    """ListTagsForResource."""
    return {"tags": list(_tagged(plane, body["resourceArn"]).tags)}


async def tag_resource(plane: ControlPlane, body: Body) -> None:
    """TagResource: add or replace tags by key."""
    resource = _tagged(plane, body["resourceArn"])
    merged = {tag["tagKey"]: tag for tag in resource.tags}
    merged.update({tag["tagKey"]: tag for tag in body["tags"]})
    resource.tags = list(merged.values())


async def untag_resource(plane: ControlPlane, body: Body) -> None:
    """UntagResource."""
    resource = _tagged(plane, body["resourceArn"])
    dropped = set(body["tagKeys"])
    resource.tags = [tag for tag in resource.tags if tag["tagKey"] not in dropped]


OPERATIONS: Final[Mapping[str, Operation]] = {
    **data_ops.OPERATIONS,
    **training_ops.OPERATIONS,
    **batch_jobs.OPERATIONS,
    "ListTagsForResource": list_tags_for_resource,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
}


def routes(emulator: Emulator) -> list[Route]:
    """The control plane's one route: ``POST /``, told apart by ``X-Amz-Target``."""
    plane = emulator.control
    if plane is None:
        return []

    async def endpoint(request: Request) -> Response:
        target = request.headers.get("x-amz-target", "")
        if not target.startswith(TARGET_PREFIX):
            return unknown_operation(request)
        name = target[len(TARGET_PREFIX) :]
        model = operation_model(CONTROL_SERVICE, name)
        if model is None:
            return unknown_operation(request)
        operation = OPERATIONS.get(name)

        async def handler(body: Body) -> Body | None:
            if operation is None:
                raise UnsupportedOperationError(name)
            validate(model, body)
            result = await operation(plane, body)
            return project(model.output_shape, result) if result is not None else None

        return await dispatch(emulator, name, request, handler, "json-1.1")

    return [Route("/", endpoint, methods=["POST"])]
