"""End-to-end fixtures: a local stack of the e2e tests' own, and each test's :class:`Scenario`.

The stack is separate from the session's ``devstack`` (tests/devstack_fixture.py) because these tests
inject Personalize faults, which are global to an emulator, and run long-lived daemons against it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from devstack.personalize.client import EmulatorClient
from devstack.settings import DevStackSettings
from devstack.stack import DevStack, DevStackError
from tests.e2e.harness import Scenario

_CLIENT_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60)


@pytest.fixture(scope="session")
def e2e_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    if shutil.which("java") is None:
        pytest.fail("java (17+) is not on PATH: the KCL daemon needs it", pytrace=False)
    stack = DevStack(DevStackSettings(state_dir=tmp_path_factory.mktemp("e2e-devstack"), edge_port=0))
    try:
        stack.start()
    except DevStackError as exc:
        pytest.fail(f"the local stack did not start: {exc}", pytrace=False)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def scenario(e2e_stack: DevStack, tmp_path: Path) -> Iterator[Scenario]:
    env = e2e_stack.env()

    def client(service: str) -> object:
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=e2e_stack.edge_url,
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            config=_CLIENT_CONFIG,
        )

    emulator = EmulatorClient(e2e_stack.edge_url)
    world = Scenario(env, emulator, client("kinesis"), client("dynamodb"), tmp_path)
    try:
        yield world
    finally:
        world.close()
        emulator.clear_faults()
