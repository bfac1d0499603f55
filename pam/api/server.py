"""``pam serve``: the app under uvicorn (uvloop and httptools, no access log: metrics count requests).

With ``workers`` > 1, uvicorn binds the socket once and runs that many processes, each a full copy of the
service (its own caches, breakers, connections and metrics registry) built by :func:`worker_app` from the
same settings: the environment, plus the database URL ``pam serve`` was given.
"""

from __future__ import annotations

import gc
import logging
import os

import uvicorn
from starlette.applications import Starlette

from pam.api.app import create_app
from pam.api.wiring import build_services
from pam.settings import ENV_PREFIX, PamSettings, load_settings

#: The young generation is collected every this many allocations (Python's default: 700).
YOUNG_GENERATION_THRESHOLD = 10_000


def _settle_memory() -> None:
    # Everything built so far lives as long as the process: out of the collector's sight, a full
    # collection no longer walks the SDK's models and the ORM (those walks were the lobby's p99).
    gc.collect()
    gc.freeze()
    # A lobby allocates a few hundred containers that die young; collecting them every 10,000
    # allocations rather than every 700 costs a tenth of the time.
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, 10, 10)


def _app(settings: PamSettings) -> Starlette:
    app = create_app(build_services(settings))
    _settle_memory()
    return app


def worker_app() -> Starlette:
    """The app of one worker process (uvicorn's factory when ``workers`` > 1)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return _app(load_settings())


def serve(settings: PamSettings) -> None:
    """Serve until SIGINT/SIGTERM; :class:`~pam.settings.SettingsError` before listening if a setting is wrong."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    options = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        # Nothing reads the client's address (no access log): no X-Forwarded-For parsing per request.
        "proxy_headers": False,
        "log_level": "info",
        "timeout_graceful_shutdown": 10,
    }
    if settings.workers == 1:
        uvicorn.run(_app(settings), **options)  # type: ignore[arg-type]
        return
    # Fail here, before any worker starts, if a setting is wrong; the workers read the same settings.
    for close in build_services(settings).closers:
        close()
    os.environ[f"{ENV_PREFIX}DATABASE_URL"] = settings.database_url.get_secret_value()
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=settings.workers, **options)  # type: ignore[arg-type]
