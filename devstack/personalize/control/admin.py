"""Admin endpoints of the control plane under ``/_emulator/`` (JSON, no auth).

- ``GET /_emulator/resources?kind=`` -> ``{"resources": {kind: [describe object, ...]}}`` (every kind,
  or one: schema, dataset-group, dataset, dataset-import-job, solution, solution-version, campaign,
  event-tracker, filter, batch-inference-job).
- ``GET /_emulator/settings`` -> ``{"stepSeconds", "autoTrainingDelaySeconds", "autoTrainingDaySeconds"}``;
  ``POST`` with any of them changes them (``{"stepSeconds": 0}``: instantaneous status changes).
- ``POST /_emulator/auto-training`` ``{"solutionArn"}``: run the solution's automatic training now
  -> ``{"solutionVersionArn"}`` (409 if a version is in progress).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.personalize.admin import PREFIX
from devstack.personalize.context import Emulator
from devstack.personalize.control.plane import ControlPlane
from devstack.personalize.control.resources import Solution
from devstack.personalize.control.training_ops import auto_train_now, schedule_auto_training
from devstack.personalize.errors import ApiError


def _json(content: Any, status: int = 200) -> Response:
    return Response(json.dumps(content, separators=(",", ":")).encode("utf-8"), status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        return _json({"error": f"body is not valid JSON: {exc}"}, 400)
    if not isinstance(decoded, dict):
        return _json({"error": "body must be a JSON object"}, 400)
    return decoded


def routes(emulator: Emulator) -> list[Route]:
    """The control plane's admin routes (none without a control plane)."""
    plane: ControlPlane | None = emulator.control
    if plane is None:
        return []
    control = plane

    async def resources(request: Request) -> Response:
        snapshot = control.snapshot()
        kind = request.query_params.get("kind")
        if kind:
            if kind not in snapshot:
                return _json({"error": f"unknown kind {kind!r}; known: {sorted(snapshot)}"}, 400)
            snapshot = {kind: snapshot[kind]}
        return _json({"resources": snapshot})

    async def get_settings(request: Request) -> Response:
        return _json(control.settings.to_json())

    async def set_settings(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        try:
            control.settings.update(body)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        if {"autoTrainingDelaySeconds", "autoTrainingDaySeconds"} & set(body):
            for solution in control.table(Solution).values():
                if solution.active:
                    schedule_auto_training(control, solution)
        return _json(control.settings.to_json())

    async def auto_training(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        arn = body.get("solutionArn")
        if not isinstance(arn, str):
            return _json({"error": "'solutionArn' is required"}, 400)
        try:
            version = await auto_train_now(control, arn)
        except ApiError as error:
            return _json({"error": error.message, "code": error.code}, 404 if error.status == 404 else 409)
        return _json({"solutionVersionArn": version.arn})

    table: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
        ("/resources", resources, ["GET"]),
        ("/settings", get_settings, ["GET"]),
        ("/settings", set_settings, ["POST"]),
        ("/auto-training", auto_training, ["POST"]),
    ]
    return [Route(PREFIX + path, endpoint, methods=methods) for path, endpoint, methods in table]
