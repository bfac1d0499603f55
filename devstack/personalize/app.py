"""The emulator's ASGI application: composes the routers of each Personalize API and the admin API.

Every Personalize API signs as ``personalize``, so requests are told apart by path (rest-json APIs:
events ``/events``, ``/items``, ``/users``; runtime ``/recommendations``, ``/personalize-ranking``) or by
``X-Amz-Target`` (the JSON 1.1 control plane on ``POST /``). A new API adds its module with a
``routes(emulator)`` function and is listed in :func:`create_app`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.personalize import admin, events, runtime
from devstack.personalize.context import Emulator
from devstack.personalize.control import admin as control_admin
from devstack.personalize.control import api as control_api
from devstack.personalize.control.plane import ControlPlane, ControlSettings
from devstack.personalize.faults import FaultInjector
from devstack.personalize.persistence import Persistence
from devstack.personalize.protocol import unknown_operation
from devstack.personalize.quota import DEFAULT_PUT_EVENTS_PER_SECOND
from devstack.personalize.s3io import S3Gateway
from devstack.personalize.state import USE_DEFAULT, QuotaSetting, Store

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(slots=True)
class EmulatorConfig:
    """How to build an emulator.

    ``trackers``: (trackingId, quota) created at start-up and restored by a reset; quota ``USE_DEFAULT``
    takes ``default_quota``, ``None`` or 0 is unlimited. ``data_dir``: persist to JSON-lines files there
    (None: in memory only). ``seed``: the fault injector's random seed. ``s3_endpoint_url``: where
    import and batch jobs read and write S3 (None: the SDK's configuration, ``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL``). ``control``: status step time and automatic training schedule.
    """

    region: str = "us-east-1"
    account_id: str = "000000000000"
    default_quota: float | None = DEFAULT_PUT_EVENTS_PER_SECOND
    trackers: list[tuple[str, QuotaSetting]] = field(default_factory=list)
    data_dir: Path | None = None
    seed: int | None = None
    s3_endpoint_url: str | None = None
    control: ControlSettings = field(default_factory=ControlSettings)


def create_emulator(config: EmulatorConfig) -> Emulator:
    """Build the state (reloaded from ``data_dir`` if given) and the fault injector."""
    persistence = Persistence(config.data_dir) if config.data_dir is not None else None
    store = Store(
        region=config.region,
        account_id=config.account_id,
        default_quota=config.default_quota,
        persistence=persistence,
    )
    store.load()
    store.startup_trackers = list(config.trackers)
    for tracking_id, quota in config.trackers:
        store.put_tracker(tracking_id, quota_per_second=quota)
    emulator = Emulator(store=store, faults=FaultInjector(seed=config.seed))
    emulator.control = ControlPlane(store, S3Gateway(config.s3_endpoint_url, config.region), config.control)
    return emulator


async def _fallback(request: Request) -> Response:
    if request.url.path.startswith(admin.PREFIX + "/") or request.url.path == admin.PREFIX:
        return Response(b'{"error":"no such admin endpoint or method"}', 404, media_type="application/json")
    return unknown_operation(request)


def create_app(emulator: Emulator) -> Starlette:
    """The ASGI app serving ``emulator``: the events, runtime and control-plane APIs, the admin API, and a
    JSON 404 for the rest."""
    routes: list[Route] = [
        *events.routes(emulator),
        *runtime.routes(emulator),
        *control_api.routes(emulator),
        *admin.routes(emulator),
        *control_admin.routes(emulator),
        Route("/{path:path}", _fallback, methods=ALL_METHODS),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = emulator
    return app


__all__ = ["USE_DEFAULT", "ControlSettings", "EmulatorConfig", "create_app", "create_emulator"]
