"""The environment of a running stack: what it holds, and the file ``devstack env`` prints for ``eval``."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

#: boto3 / AWS SDK service ids whose ``AWS_ENDPOINT_URL_<ID>`` we set (all through the edge).
ENDPOINT_SERVICE_IDS: Final = (
    "KINESIS",
    "DYNAMODB",
    "DYNAMODB_STREAMS",
    "S3",
    "STS",
    "PERSONALIZE",
    "PERSONALIZE_EVENTS",
    "PERSONALIZE_RUNTIME",
)

Format = Literal["sh", "dotenv", "json"]
_HEADER: Final = '# devstack: eval "$(devstack env)" to use the local stack\n'


def stack_env(
    *,
    edge_url: str,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    kcl_kinesis_endpoint: str,
    kcl_dynamodb_endpoint: str,
    stream_name: str,
    tracking_id: str,
    application_name: str,
    dead_letter_url: str,
) -> dict[str, str]:
    env = {"AWS_ENDPOINT_URL": edge_url}
    env.update({f"AWS_ENDPOINT_URL_{service_id}": edge_url for service_id in ENDPOINT_SERVICE_IDS})
    host_port = edge_url.split("://", 1)[-1].rstrip("/")
    env.update(
        {
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ACCESS_KEY_ID": access_key_id,
            "AWS_SECRET_ACCESS_KEY": secret_access_key,
            # LocalStack tooling (awslocal, localstack-client) reads this when AWS_ENDPOINT_URL is unset.
            "LOCALSTACK_HOST": host_port,
            "STREAM_WORKER_STREAM_NAME": stream_name,
            "STREAM_WORKER_TRACKING_ID": tracking_id,
            "STREAM_WORKER_APPLICATION_NAME": application_name,
            "STREAM_WORKER_DEAD_LETTER_URL": dead_letter_url,
            "STREAM_WORKER_REGION": region,
            # The KCL daemon needs HTTP/2 (h2c), which the edge does not speak: it goes to the mock directly.
            "STREAM_WORKER_KCL_KINESIS_ENDPOINT": kcl_kinesis_endpoint,
            "STREAM_WORKER_KCL_DYNAMODB_ENDPOINT": kcl_dynamodb_endpoint,
        }
    )
    return env


def render(env: Mapping[str, str], fmt: Format = "sh") -> str:
    if fmt == "json":
        return json.dumps(dict(env), indent=2, sort_keys=True) + "\n"
    if fmt == "dotenv":
        return "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items())
    return _HEADER + "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())


def write(path: Path, env: Mapping[str, str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(env, "sh"), encoding="utf-8")
    tmp.replace(path)


def read(path: Path) -> dict[str, str]:
    """Parse a file written by :func:`write` (``export KEY=VALUE`` lines, shell-quoted)."""
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            env[key] = value
    return env
