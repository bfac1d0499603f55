"""How each part of the stack is started and how we know it answers.

- kinesis: kinesis-mock, ``node main.js`` in its package folder; answers ``GET /healthcheck`` (plain port).
- moto: moto server (DynamoDB, S3, STS, ...) via :mod:`devstack.moto_server`; ``GET /moto-api/config``.
- personalize: our emulator, ``python -m devstack.personalize``; ``GET /_emulator/health``.
- edge: :mod:`devstack.edge` in front of them; ``GET /_devstack/health`` (200 once every upstream answers).
"""

from __future__ import annotations

import http.client
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from devstack.settings import LOOPBACK_PRELOAD, DevStackSettings

KINESIS: Final = "kinesis"
MOTO: Final = "moto"
PERSONALIZE: Final = "personalize"
EDGE: Final = "edge"
#: An external LocalStack standing in for kinesis-mock and moto (``aws_upstream``).
AWS_UPSTREAM: Final = "aws"

HEALTH_PATHS: Final[Mapping[str, str]] = {
    KINESIS: "/healthcheck",
    MOTO: "/moto-api/config",
    PERSONALIZE: "/_emulator/health",
    EDGE: "/_devstack/health",
    AWS_UPSTREAM: "/_localstack/health",
}

#: The folder that holds the ``devstack`` package.
_IMPORT_ROOT: Final = Path(__file__).resolve().parent.parent
#: The variables of ours or the user's that must not leak into a child (they would point it at itself).
_SCRUB_PREFIXES: Final = ("AWS_ENDPOINT_URL", "LOCALSTACK_HOST")


class KinesisLocalMissingError(FileNotFoundError):
    """kinesis-mock (npm package kinesis-local) is not installed where devstack looks for it."""


@dataclass(frozen=True)
class Launch:
    """One process to start: argv, where, with which environment, and how to find its port."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    markers: tuple[str, ...]
    health_path: str
    port: int | None = None
    port_file: Path | None = None
    extra_ports: dict[str, int] = field(default_factory=dict)


def child_env(settings: DevStackSettings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env.update(
        {
            "AWS_REGION": settings.region,
            "AWS_DEFAULT_REGION": settings.region,
            "AWS_ACCESS_KEY_ID": settings.access_key_id,
            "AWS_SECRET_ACCESS_KEY": settings.secret_access_key,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("AWS_SESSION_TOKEN", None)
    env.pop("AWS_PROFILE", None)
    # The Python children run ``-m devstack...`` from the state dir: make sure they import this very copy.
    python_path = [str(_IMPORT_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(python_path))
    if extra:
        env.update(extra)
    return env


def require_kinesis_local(settings: DevStackSettings) -> Path:
    """The kinesis-local package folder, or :class:`KinesisLocalMissingError` saying how to install it."""
    package = settings.kinesis_local_dir.resolve()
    if not (package / "main.js").is_file():
        raise KinesisLocalMissingError(
            f"kinesis-mock is not installed: {package / 'main.js'} is missing. "
            "Run `bash .ci/install-node-deps.sh` (npm ci in devstack/node) first."
        )
    return package


def kinesis_mock(settings: DevStackSettings, state_dir: Path, plain_port: int, tls_port: int) -> Launch:
    """``node main.js`` in the kinesis-local package folder (it reads ``server.json`` there)."""
    package = require_kinesis_local(settings)
    delay = settings.kinesis_operation_delay
    env = {
        "KINESIS_MOCK_PLAIN_PORT": str(plain_port),
        "KINESIS_MOCK_TLS_PORT": str(tls_port),
        "DEVSTACK_BIND_HOST": settings.host,
        "AWS_ACCOUNT_ID": "000000000000",
        "LOG_LEVEL": settings.kinesis_log_level,
        "ROOT_LOG_LEVEL": "ERROR",
        "SHARD_LIMIT": str(settings.kinesis_shard_limit),
        "ON_DEMAND_STREAM_COUNT_LIMIT": "50",
        "SHOULD_PERSIST_DATA": "true" if settings.kinesis_persist else "false",
        "LOAD_DATA_IF_EXISTS": "true" if settings.kinesis_persist else "false",
        "PERSIST_PATH": str((state_dir / "kinesis-data").resolve()),
    }
    for op in (
        "CREATE_STREAM",
        "DELETE_STREAM",
        "REGISTER_STREAM_CONSUMER",
        "DEREGISTER_STREAM_CONSUMER",
        "START_STREAM_ENCRYPTION",
        "STOP_STREAM_ENCRYPTION",
        "MERGE_SHARDS",
        "SPLIT_SHARD",
        "UPDATE_SHARD_COUNT",
        "UPDATE_STREAM_MODE",
    ):
        env[f"{op}_DURATION"] = delay
    return Launch(
        name=KINESIS,
        argv=[settings.node, "--require", str(LOOPBACK_PRELOAD), "main.js"],
        cwd=package,
        env=child_env(settings, env),
        markers=("main.js", str(LOOPBACK_PRELOAD)),
        health_path=HEALTH_PATHS[KINESIS],
        port=plain_port,
        extra_ports={"kinesis_tls": tls_port},
    )


def moto_server(settings: DevStackSettings, state_dir: Path, port: int) -> Launch:
    return Launch(
        name=MOTO,
        argv=[sys.executable, "-m", "devstack.moto_server", "-H", settings.host, "-p", str(port)],
        cwd=state_dir.resolve(),
        env=child_env(settings),
        markers=("devstack.moto_server", str(port)),
        health_path=HEALTH_PATHS[MOTO],
        port=port,
    )


def personalize_emulator(settings: DevStackSettings, state_dir: Path, *, s3_endpoint_url: str | None = None) -> Launch:
    port_file = (state_dir / "personalize.port").resolve()
    data_dir = (state_dir / "personalize-data").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        *settings.emulator_command(),
        "--host",
        settings.host,
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--data-dir",
        str(data_dir),
        "--region",
        settings.region,
        # A start-up tracker survives the emulator's /_emulator/reset, which tests call between cases.
        "--tracker",
        settings.tracking_id,
    ]
    if s3_endpoint_url:
        argv += ["--s3-endpoint-url", s3_endpoint_url]
    return Launch(
        name=PERSONALIZE,
        argv=argv,
        cwd=state_dir.resolve(),
        env=child_env(settings),
        markers=(str(port_file),),
        health_path=HEALTH_PATHS[PERSONALIZE],
        port_file=port_file,
    )


def edge(settings: DevStackSettings, state_dir: Path, config_path: Path, port: int) -> Launch:
    port_file = (state_dir / "edge.port").resolve()
    argv = [
        sys.executable,
        "-m",
        "devstack.edge",
        "--config",
        str(config_path.resolve()),
        "--host",
        settings.host,
        "--port",
        str(port),
        "--port-file",
        str(port_file),
        "--state-dir",
        str(state_dir.resolve()),
    ]
    return Launch(
        name=EDGE,
        argv=argv,
        cwd=state_dir.resolve(),
        env=child_env(settings),
        markers=("devstack.edge", str(port_file)),
        health_path=HEALTH_PATHS[EDGE],
        port_file=port_file,
    )


def answers(host: str, port: int, path: str, *, timeout: float = 1.0) -> bool:
    """True when ``GET path`` answers with a 2xx status."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return 200 <= response.status < 300
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def read_port_file(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
