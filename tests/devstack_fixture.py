"""pytest plugin: the local AWS stack (devstack) for a test session, and clients built the LocalStack way.

Register it with ``pytest_plugins = ["tests.devstack_fixture"]``. Fixtures:

- ``devstack`` (session): a :class:`devstack.stack.DevStack` started in a temporary state dir, every port
  (the edge's too) picked free, so it never clashes with a stack of the user's on 4566. Stopped at the end.
- ``devstack_env`` (session): its environment (``AWS_ENDPOINT_URL``..., ``STREAM_WORKER_*``) as a dict;
  apply it with ``monkeypatch.setenv`` or pass it to a subprocess.
- ``aws_edge_url`` (session): the edge URL every client goes through.
- ``localstack_session`` (session): a ``localstack_client.session.Session`` pointed at the edge.
- ``aws_client`` (session): ``aws_client("kinesis")`` -> a boto3 client through the edge; from the
  localstack session for the services localstack-client knows, and for the ones it does not
  (``personalize``, ``personalize-events``, ``personalize-runtime``) a plain boto3 client with
  ``endpoint_url`` = the edge, which is exactly what the localstack session would build.

Pointing the same tests at a LocalStack you already run: ``DEVSTACK_AWS_UPSTREAM=http://127.0.0.1:4566``.
The stack then starts only our Personalize emulator and the edge, and the edge sends every AWS service
to that LocalStack.

Nothing is skipped silently: when kinesis-mock is not installed the fixture fails and says how to install
it (``bash .ci/install-node-deps.sh``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.config import Config
from localstack_client.config import get_service_endpoints
from localstack_client.session import Session as LocalStackSession

from devstack.settings import DevStackSettings
from devstack.stack import DevStack, DevStackError

AwsClientFactory = Callable[..., Any]

_CLIENT_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60)


@pytest.fixture(scope="session")
def devstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    # Other settings (DEVSTACK_AWS_UPSTREAM, DEVSTACK_STARTUP_TIMEOUT, ...) come from the environment.
    settings = DevStackSettings(state_dir=tmp_path_factory.mktemp("devstack"), edge_port=0)
    stack = DevStack(settings)
    try:
        stack.start()
    except DevStackError as exc:
        pytest.fail(f"the local stack did not start: {exc}", pytrace=False)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def devstack_env(devstack: DevStack) -> dict[str, str]:
    return devstack.env()


@pytest.fixture(scope="session")
def aws_edge_url(devstack: DevStack) -> str:
    return devstack.edge_url


@pytest.fixture(scope="session")
def localstack_session(devstack: DevStack) -> LocalStackSession:
    """A localstack-client session whose every endpoint is our edge.

    localstack-client prefers ``$AWS_ENDPOINT_URL`` over ``localstack_host`` when it is set (a developer
    may have eval'd the env of another stack), so the session is built with that variable pointing at
    this stack's edge.
    """
    env = devstack.env()
    with mock.patch.dict(os.environ, {"AWS_ENDPOINT_URL": devstack.edge_url}):
        return LocalStackSession(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
            localstack_host=env["LOCALSTACK_HOST"],
        )


@pytest.fixture(scope="session")
def aws_client(devstack: DevStack, localstack_session: LocalStackSession) -> AwsClientFactory:
    env = devstack.env()
    known = set(get_service_endpoints())

    def make(service_name: str, **kwargs: Any) -> Any:
        kwargs.setdefault("config", _CLIENT_CONFIG)
        if service_name in known:
            return localstack_session.client(service_name, **kwargs)
        return boto3.session.Session().client(
            service_name,  # type: ignore[call-overload]
            endpoint_url=devstack.edge_url,
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            **kwargs,
        )

    return make
