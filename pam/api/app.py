"""The ASGI app: routes, problem-details errors, request metrics, and the background refreshes.

Endpoints: ``GET /v1/players/{player_id}/lobby`` (token of that player), ``GET /healthz``, ``GET /readyz``
(the catalog is loaded), ``GET /metrics``, ``GET /openapi.json`` (no token), ``GET /v1/admin/dependencies``
and ``POST /v1/admin/catalog/refresh`` (a token with the admin role), and the lobby page's routes
(:mod:`pam.web.routes`, no token). Errors are ``application/problem+json`` and never carry internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pam.api.auth import AuthError, Principal, TokenVerifier
from pam.api.catalog import CatalogStore
from pam.api.lobby import LobbyService, NoCatalogError, render_lobby
from pam.api.metrics import LobbyMetrics
from pam.api.models import is_player_id
from pam.api.openapi import openapi_document
from pam.web.routes import page_routes

log = logging.getLogger("pam.api")

PROBLEM_TYPE: Final = "application/problem+json"
LOBBY_ROUTE: Final = "/v1/players/{player_id}/lobby"
#: :data:`LOBBY_ROUTE` as Starlette matches it (a path parameter is any text without a slash).
_LOBBY_PATH = re.compile(r"^/v1/players/([^/]+)/lobby$")
LOBBY_HEADERS: Final = {"Cache-Control": "no-store"}
_STATUS_TITLES: Final = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    422: "Invalid request",
    500: "Internal error",
    503: "Service unavailable",
}


class ProblemError(Exception):
    """An error answer: status, a safe detail, extra headers."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def problem_response(status: int, detail: str | None, headers: dict[str, str] | None = None) -> Response:
    body = {"type": "about:blank", "title": _STATUS_TITLES.get(status, "Error"), "status": status}
    if detail:
        body["detail"] = detail
    return Response(json.dumps(body).encode(), status_code=status, media_type=PROBLEM_TYPE, headers={**(headers or {})})


@dataclass
class AppServices:
    """What the app runs on; :func:`pam.api.wiring.build_services` builds the real ones, tests fakes."""

    lobby: LobbyService
    catalog: CatalogStore
    verifier: TokenVerifier
    metrics: LobbyMetrics
    catalog_refresh_seconds: float = 30.0
    fallback_refresh_seconds: float = 30.0
    #: Called at shutdown.
    closers: list[Callable[[], None]] = field(default_factory=list)
    #: Run in the background from the start (e.g. reading AWS credentials before the first lobby needs
    #: them); cancelled at shutdown when still running.
    warmups: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)


class RequestMetrics:
    """Pure ASGI middleware: latency by route template, method and status."""

    def __init__(self, app: ASGIApp, metrics: LobbyMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request(template, scope["method"], status, time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer of the lobby route, before it is sent."""

    status: int
    body: bytes
    media_type: str
    headers: dict[str, str]

    @classmethod
    def problem(cls, problem: ProblemError) -> Reply:
        response = problem_response(problem.status, problem.detail, problem.headers)
        return cls(problem.status, bytes(response.body), PROBLEM_TYPE, problem.headers)

    def response(self) -> Response:
        return Response(self.body, status_code=self.status, media_type=self.media_type, headers=self.headers)

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"content-type", self.media_type.encode("latin-1")),
            (b"content-length", str(len(self.body)).encode("latin-1")),
        ]
        for name, value in self.headers.items():
            headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        return headers


class LobbyApp(Starlette):
    """The app: Starlette, except for the hot path. ``GET /v1/players/{player_id}/lobby`` is answered before
    Starlette's middleware stack, routing, request and response objects (they took a third of a lobby's
    CPU time), with the same answers, request metrics and 500 problem; every other request (HEAD, other
    methods, other paths, the lifespan) goes through Starlette, whose lobby route answers the same way."""

    def __init__(
        self, *, lobby_reply: Callable[[str, str | None], Awaitable[Reply]], metrics: LobbyMetrics, **options: Any
    ) -> None:
        super().__init__(**options)
        self._lobby_reply = lobby_reply
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            match = _LOBBY_PATH.match(path)
            if match is not None:
                await self._lobby(scope, match.group(1), send)
                return
        await super().__call__(scope, receive, send)

    async def _lobby(self, scope: Scope, player_id: str, send: Send) -> None:
        started = time.perf_counter()
        status = 500
        try:
            authorization = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                    break
            try:
                reply = await self._lobby_reply(player_id, authorization)
            except Exception as exc:
                log.error("unhandled error on %s: %s", scope["path"], type(exc).__name__, exc_info=exc)
                reply = Reply.problem(ProblemError(500, "the server could not answer"))
            status = reply.status
            await send({"type": "http.response.start", "status": status, "headers": reply.raw_headers()})
            await send({"type": "http.response.body", "body": reply.body})
        finally:
            self._metrics.request(LOBBY_ROUTE, "GET", status, time.perf_counter() - started)


def _challenge(error: AuthError | None) -> dict[str, str]:
    if error is None:
        return {"WWW-Authenticate": 'Bearer realm="pam"'}
    return {"WWW-Authenticate": f'Bearer realm="pam", error="{error.error}", error_description="{error.reason}"'}


def _principal(header: str | None, verifier: TokenVerifier) -> Principal:
    """The principal of an ``Authorization`` header's bearer token; :class:`ProblemError` 401 otherwise."""
    if not header:
        raise ProblemError(401, "a bearer token is required", headers=_challenge(None))
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        error = AuthError("the Authorization header is not 'Bearer <token>'", error="invalid_request")
        raise ProblemError(401, error.reason, headers=_challenge(error))
    try:
        return verifier.verify(token)
    except AuthError as exc:
        raise ProblemError(401, exc.reason, headers=_challenge(exc)) from None


def _admin(request: Request, verifier: TokenVerifier) -> Principal:
    principal = _principal(request.headers.get("authorization"), verifier)
    if not verifier.is_admin(principal):
        raise ProblemError(403, "this operation needs the admin role")
    return principal


Endpoint = Callable[[Request], Awaitable[Response]]


def _problems(endpoint: Endpoint) -> Endpoint:
    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ProblemError as problem:
            return problem_response(problem.status, problem.detail, problem.headers)

    return answer


def create_app(services: AppServices) -> Starlette:
    """The app over ``services``; the background refreshes run while it is served (lifespan)."""
    verifier = services.verifier
    service = services.lobby
    metrics = services.metrics
    store = services.catalog
    openapi = json.dumps(openapi_document()).encode()

    async def lobby_reply(player_id: str, authorization: str | None) -> Reply:
        try:
            principal = _principal(authorization, verifier)
            if not is_player_id(player_id):
                raise ProblemError(
                    422, "player_id must be 1-64 letters, digits or _.:@- and start with a letter or digit"
                )
            if principal.subject != player_id:
                raise ProblemError(403, "a token may read its own player's lobby only")
            try:
                answer = await service.lobby(player_id)
            except NoCatalogError:
                raise ProblemError(503, "the lobby is not ready yet", headers={"Retry-After": "1"}) from None
        except ProblemError as problem:
            return Reply.problem(problem)
        return Reply(200, render_lobby(answer), "application/json", LOBBY_HEADERS)

    async def lobby(request: Request) -> Response:
        reply = await lobby_reply(request.path_params["player_id"], request.headers.get("authorization"))
        return reply.response()

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @_problems
    async def readyz(request: Request) -> Response:
        catalog = store.catalog
        if catalog is None:
            raise ProblemError(503, "the catalog is not loaded yet", headers={"Retry-After": "1"})
        body = {"status": "ready", "catalogGames": len(catalog.games)}
        return Response(json.dumps(body).encode(), media_type="application/json")

    async def metrics_page(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi_page(request: Request) -> Response:
        return Response(openapi, media_type="application/json")

    @_problems
    async def dependencies(request: Request) -> Response:
        _admin(request, verifier)
        states = [
            {
                "name": name,
                "state": guard.breaker.state.value,
                "opened": guard.breaker.opened,
                "retryInSeconds": round(guard.breaker.retry_in, 3),
                "timeoutMs": guard.timeout * 1000,
            }
            for name, guard in service.guards.items()
        ]
        return Response(json.dumps({"dependencies": states}).encode(), media_type="application/json")

    @_problems
    async def refresh_catalog(request: Request) -> Response:
        _admin(request, verifier)
        outcome = await store.refresh()
        catalog = store.catalog
        body = {
            "outcome": outcome,
            "games": len(catalog.games) if catalog else None,
            "generatedAt": catalog.generated_at if catalog else None,
        }
        return Response(json.dumps(body).encode(), media_type="application/json")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = {404: "no such resource", 405: "method not allowed"}.get(exc.status_code)
        return problem_response(exc.status_code, detail, dict(exc.headers or {}))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s: %s", request.url.path, type(exc).__name__, exc_info=exc)
        return problem_response(500, "the server could not answer")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        warmups = [asyncio.create_task(warmup()) for warmup in services.warmups]
        if store.catalog is None:
            await store.refresh()
        tasks = [
            *warmups,
            asyncio.create_task(store.run(services.catalog_refresh_seconds)),
            asyncio.create_task(service.run_fallback_refresh(services.fallback_refresh_seconds)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for close in services.closers:
                close()

    routes = [
        Route(LOBBY_ROUTE, lobby, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
        Route("/openapi.json", openapi_page, methods=["GET"]),
        Route("/v1/admin/dependencies", dependencies, methods=["GET"]),
        Route("/v1/admin/catalog/refresh", refresh_catalog, methods=["POST"]),
        *page_routes(),
    ]
    exception_handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: http_error,
        Exception: server_error,
    }
    return LobbyApp(
        lobby_reply=lobby_reply,
        metrics=metrics,
        routes=routes,
        middleware=[Middleware(RequestMetrics, metrics=metrics)],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
