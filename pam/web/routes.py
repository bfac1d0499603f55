"""The lobby page's routes: ``GET /lobby`` and its assets under ``/lobby/assets/``.

What a caller (the API app, a browser) may rely on:

- ``/lobby`` needs no token: the page reads the player id and the token from the URL fragment
  (``/lobby#player=p-1&token=...``, so tokens never reach a server log) or from its form, then calls
  ``GET /v1/players/{player_id}/lobby`` itself. ``?refresh=SECONDS`` sets how often it polls (default 5).
- The files are read once, from the package (``pam/web/static``), when the routes are built.
- Content types are explicit (``text/html``, ``text/javascript``, ``text/css`` in UTF-8, ``image/svg+xml``)
  with ``nosniff``.
- Caching: every response has a strong ``ETag`` and answers ``If-None-Match`` with 304. The page is
  ``no-cache`` (revalidated on each load); it names its assets with ``?v=<content hash>``, and an asset
  asked for with its current hash is cached for a year (``immutable``); asked for otherwise, ``no-cache``.
- Every response carries a Content-Security-Policy that allows only this origin: no inline script or
  style, no other host, no framing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

PAGE_PATH: Final = "/lobby"
ASSETS_PATH: Final = "/lobby/assets"
PAGE_FILE: Final = "lobby.html"

#: Only these kinds of file are served; anything else in the static folder stays private.
MEDIA_TYPES: Final[Mapping[str, str]] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

REVALIDATE: Final = "no-cache"
IMMUTABLE: Final = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class StaticAsset:
    """One file of the page, with its media type and content hash."""

    name: str
    body: bytes
    media_type: str

    @property
    def version(self) -> str:
        """The first 16 hex digits of the body's SHA-256: changes whenever the body does."""
        return hashlib.sha256(self.body).hexdigest()[:16]

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


class LobbyAssets:
    """The page and its assets, held in memory; the page names each asset with its version."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        assets: dict[str, StaticAsset] = {}
        for name, body in files.items():
            suffix = name[name.rfind(".") :] if "." in name else ""
            media_type = MEDIA_TYPES.get(suffix)
            if media_type is not None:
                assets[name] = StaticAsset(name, body, media_type)
        if PAGE_FILE not in assets:
            raise FileNotFoundError(f"the lobby page {PAGE_FILE} is missing from the static files")
        html = assets.pop(PAGE_FILE).body.decode("utf-8")
        for asset in assets.values():
            plain = f'"{ASSETS_PATH}/{asset.name}"'
            html = html.replace(plain, f'"{ASSETS_PATH}/{asset.name}?v={asset.version}"')
        self.page = StaticAsset(PAGE_FILE, html.encode("utf-8"), MEDIA_TYPES[".html"])
        self.assets: Mapping[str, StaticAsset] = assets

    @classmethod
    def from_package(cls) -> LobbyAssets:
        """The files shipped in ``pam/web/static``."""
        folder = resources.files("pam.web").joinpath("static")
        files = {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.is_file()}
        return cls(files)


def _respond(request: Request, asset: StaticAsset, cache_control: str) -> Response:
    headers = {**SECURITY_HEADERS, "ETag": asset.etag, "Cache-Control": cache_control}
    if_none_match = request.headers.get("if-none-match", "")
    if asset.etag in (tag.strip().removeprefix("W/") for tag in if_none_match.split(",")):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def page_routes(assets: LobbyAssets | None = None) -> list[BaseRoute]:
    """The routes of the lobby page, for the API app's route list (GET and HEAD)."""
    served = assets if assets is not None else LobbyAssets.from_package()

    async def lobby_page(request: Request) -> Response:
        return _respond(request, served.page, REVALIDATE)

    async def lobby_asset(request: Request) -> Response:
        asset = served.assets.get(request.path_params["name"])
        if asset is None:
            raise HTTPException(status_code=404, detail="no such lobby asset")
        current = request.query_params.get("v") == asset.version
        return _respond(request, asset, IMMUTABLE if current else REVALIDATE)

    return [
        Route(PAGE_PATH, lobby_page, methods=["GET"], name="lobby_page"),
        Route(f"{ASSETS_PATH}/{{name}}", lobby_asset, methods=["GET"], name="lobby_asset"),
    ]
