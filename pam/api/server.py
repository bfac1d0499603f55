"""``pam serve``: the app under uvicorn (uvloop and httptools, no access log: metrics count requests)."""

from __future__ import annotations

import logging

import uvicorn

from pam.api.app import create_app
from pam.api.wiring import build_services
from pam.settings import PamSettings


def serve(settings: PamSettings) -> None:
    """Serve until SIGINT/SIGTERM; :class:`~pam.settings.SettingsError` before listening if a setting is wrong."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(build_services(settings))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=10,
    )
