"""The inspection and admin API under ``/_emulator/`` (JSON, no auth).

Endpoints (bodies and answers are JSON objects; errors are ``{"error": "..."}`` with 400 or 404):

- ``GET /_emulator/health`` -> ``{"status": "ok", "pid", "startedAt", "events", "trackers"}``
- ``GET /_emulator/trackers`` -> ``{"trackers": [tracker, ...]}``
- ``POST /_emulator/trackers`` ``{"trackingId"?, "quotaPerSecond"?, "burst"?, "name"?, "datasetGroupArn"?}``
  -> 201 (created) or 200 (replaced) with the tracker. ``quotaPerSecond`` omitted: the default quota;
  ``null`` or 0: unlimited. ``trackingId`` omitted: a new uuid.
- ``GET /_emulator/trackers/{trackingId}`` -> tracker; ``DELETE`` -> ``{"deleted": true}`` or 404.
- ``GET /_emulator/datasets`` -> ``{"datasets": [...]}``; ``POST`` ``{"datasetArn", "datasetType"?,
  "datasetGroupArn"?}`` -> dataset; ``DELETE /_emulator/datasets?datasetArn=...``.
- ``GET /_emulator/events?trackingId=&since=&until=&after=&limit=&format=full|compact&fields=a,b``
  -> ``{"count", "truncated", "lastSeq", "events": [event, ...]}`` (full) or
  ``{"count", "truncated", "lastSeq", "fields": [...], "rows": [[...], ...]}`` (compact). Events are in
  receive order, every occurrence (duplicates included). ``since``/``until`` bound ``receivedAt``
  (epoch seconds), ``after`` is a ``seq`` cursor: page with ``after=lastSeq`` while ``truncated``.
- ``GET /_emulator/items`` and ``GET /_emulator/users``: the same, filtered by ``datasetArn``.
- ``DELETE /_emulator/events``: forget all accepted events, items and users (and their counts).
- ``GET /_emulator/stats`` -> ``{"calls": {op: {outcome: n}}, "eventsAccepted", "distinctEventIds", ...}``
- ``GET /_emulator/faults`` -> ``{"faults": [...], "seed"}``; ``POST`` (see :mod:`.faults`) -> the same;
  ``DELETE /_emulator/faults`` -> ``{"cleared": n}``; ``DELETE /_emulator/faults/{id}``.
- ``POST /_emulator/reset`` ``{"trackers": true}``: clear records, stats and faults; with ``trackers``
  (the default) also restore the start-up trackers and drop every other one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.personalize.context import Emulator
from devstack.personalize.state import USE_DEFAULT, QuotaSetting, RecordLog, project

logger = logging.getLogger("devstack.personalize.admin")

PREFIX = "/_emulator"


class AdminError(Exception):
    """A bad admin request: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _json(content: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
        status,
        media_type="application/json",
    )


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        raise AdminError(f"body is not valid JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise AdminError("body must be a JSON object")
    return decoded


def _float_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise AdminError(f"query parameter {name!r} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise AdminError(f"query parameter {name!r} must be finite")
    return value


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise AdminError(f"query parameter {name!r} must be an integer, got {raw!r}") from None
    if value < 0:
        raise AdminError(f"query parameter {name!r} must be >= 0")
    return value


def _optional_number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AdminError(f"{name!r} must be a number or null, got {value!r}")
    return float(value)


def _optional_string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise AdminError(f"{name!r} must be a non-empty string, got {value!r}")
    return value


def list_records(request: Request, log: RecordLog, key_param: str) -> Response:
    """Answer a listing of ``log`` (events, items or users) for the query in ``request``."""
    fmt = request.query_params.get("format", "full")
    if fmt not in ("full", "compact"):
        raise AdminError("query parameter 'format' must be 'full' or 'compact'")
    wanted: Sequence[str] = log.fields
    raw_fields = request.query_params.get("fields")
    if raw_fields:
        wanted = [name.strip() for name in raw_fields.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in log.fields]
        if unknown:
            raise AdminError(f"unknown fields {unknown}; known: {list(log.fields)}")
    rows, truncated = log.query(
        key=request.query_params.get(key_param) or None,
        since=_float_param(request, "since"),
        until=_float_param(request, "until"),
        after=_int_param(request, "after"),
        limit=_int_param(request, "limit"),
    )
    head: dict[str, Any] = {
        "count": len(rows),
        "truncated": truncated,
        "lastSeq": rows[-1][0] if rows else None,
    }
    if fmt == "compact":
        head["fields"] = list(wanted)
        head["rows"] = rows if wanted is log.fields else project(rows, log.fields, wanted)
    else:
        names = list(wanted)
        if wanted is log.fields:
            head[log.name] = [dict(zip(names, row, strict=True)) for row in rows]
        else:
            head[log.name] = [dict(zip(names, row, strict=True)) for row in project(rows, log.fields, names)]
    return _json(head)


def routes(emulator: Emulator) -> list[Route]:
    """The admin API's routes."""
    store = emulator.store
    faults = emulator.faults

    def guarded(
        endpoint: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            try:
                return await endpoint(request)
            except AdminError as error:
                return _json({"error": error.message}, error.status)

        return wrapper

    async def health(request: Request) -> Response:
        return _json(
            {
                "status": "ok",
                "pid": os.getpid(),
                "startedAt": emulator.started_at,
                "trackers": len(store.trackers),
                "events": len(store.events.rows),
            }
        )

    async def list_trackers(request: Request) -> Response:
        return _json({"trackers": [tracker.to_json() for tracker in store.trackers.values()]})

    async def create_tracker(request: Request) -> Response:
        body = await _body(request)
        tracking_id = _optional_string(body, "trackingId") or str(uuid.uuid4())
        quota: QuotaSetting = USE_DEFAULT
        if "quotaPerSecond" in body:
            quota = _optional_number(body, "quotaPerSecond")
        try:
            tracker, created = store.put_tracker(
                tracking_id,
                quota_per_second=quota,
                burst=_optional_number(body, "burst"),
                name=_optional_string(body, "name"),
                dataset_group_arn=_optional_string(body, "datasetGroupArn"),
            )
        except ValueError as exc:
            raise AdminError(str(exc)) from None
        logger.info(
            "tracker created" if created else "tracker replaced",
            extra={"trackingId": tracking_id, "quotaPerSecond": tracker.quota_per_second},
        )
        return _json(tracker.to_json(), 201 if created else 200)

    async def get_tracker(request: Request) -> Response:
        tracker = store.trackers.get(request.path_params["tracking_id"])
        if tracker is None:
            raise AdminError("no such tracker", 404)
        return _json(tracker.to_json())

    async def delete_tracker(request: Request) -> Response:
        tracking_id = request.path_params["tracking_id"]
        if not store.delete_tracker(tracking_id):
            raise AdminError("no such tracker", 404)
        logger.info("tracker deleted", extra={"trackingId": tracking_id})
        return _json({"deleted": True})

    async def list_datasets(request: Request) -> Response:
        return _json({"datasets": [dataset.to_json() for dataset in store.datasets.values()]})

    async def create_dataset(request: Request) -> Response:
        body = await _body(request)
        arn = _optional_string(body, "datasetArn")
        if arn is None:
            raise AdminError("'datasetArn' is required")
        try:
            dataset = store.put_dataset(
                arn, _optional_string(body, "datasetGroupArn"), _optional_string(body, "datasetType")
            )
        except ValueError as exc:
            raise AdminError(str(exc)) from None
        return _json(dataset.to_json(), 201)

    async def delete_dataset(request: Request) -> Response:
        arn = request.query_params.get("datasetArn", "")
        if not store.delete_dataset(arn):
            raise AdminError("no such dataset", 404)
        return _json({"deleted": True})

    async def list_events(request: Request) -> Response:
        return list_records(request, store.events, "trackingId")

    async def list_items(request: Request) -> Response:
        return list_records(request, store.items, "datasetArn")

    async def list_users(request: Request) -> Response:
        return list_records(request, store.users, "datasetArn")

    async def clear_events(request: Request) -> Response:
        cleared = len(store.events.rows)
        store.clear_records()
        return _json({"cleared": cleared})

    async def stats(request: Request) -> Response:
        return _json(store.stats_snapshot())

    def faults_body() -> dict[str, Any]:
        return {"faults": faults.describe(), "seed": faults.seed}

    async def get_faults(request: Request) -> Response:
        return _json(faults_body())

    async def set_faults(request: Request) -> Response:
        body = await _body(request)
        try:
            added = faults.configure(body)
        except ValueError as exc:
            raise AdminError(str(exc)) from None
        logger.info("faults set", extra={"added": len(added), "rules": faults.describe()})
        return _json(faults_body())

    async def clear_faults(request: Request) -> Response:
        cleared = faults.clear()
        logger.info("faults cleared", extra={"cleared": cleared})
        return _json({"cleared": cleared})

    async def delete_fault(request: Request) -> Response:
        if not faults.remove(request.path_params["fault_id"]):
            raise AdminError("no such fault", 404)
        return _json({"deleted": True})

    async def reset(request: Request) -> Response:
        body = await _body(request)
        trackers = body.get("trackers", True)
        if not isinstance(trackers, bool):
            raise AdminError("'trackers' must be a boolean")
        store.reset(trackers=trackers)
        faults.clear()
        logger.info("emulator reset", extra={"trackers": trackers})
        return _json({"reset": True})

    table: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
        ("/health", health, ["GET"]),
        ("/trackers", list_trackers, ["GET"]),
        ("/trackers", create_tracker, ["POST"]),
        ("/trackers/{tracking_id}", get_tracker, ["GET"]),
        ("/trackers/{tracking_id}", delete_tracker, ["DELETE"]),
        ("/datasets", list_datasets, ["GET"]),
        ("/datasets", create_dataset, ["POST"]),
        ("/datasets", delete_dataset, ["DELETE"]),
        ("/events", list_events, ["GET"]),
        ("/events", clear_events, ["DELETE"]),
        ("/items", list_items, ["GET"]),
        ("/users", list_users, ["GET"]),
        ("/stats", stats, ["GET"]),
        ("/faults", get_faults, ["GET"]),
        ("/faults", set_faults, ["POST"]),
        ("/faults", clear_faults, ["DELETE"]),
        ("/faults/{fault_id:int}", delete_fault, ["DELETE"]),
        ("/reset", reset, ["POST"]),
    ]
    return [Route(PREFIX + path, guarded(endpoint), methods=methods) for path, endpoint, methods in table]
