"""devstack end to end: the session stack through its edge, and the CLI's own up/status/env/down.

Needs the ``tests.devstack_fixture`` plugin and kinesis-mock (``bash .ci/install-node-deps.sh``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from devstack import envfile
from devstack.processes import ProcessRecord, free_port, is_alive, start_ticks, wait_until
from devstack.settings import DevStackSettings
from devstack.stack import DevStack

AwsClient = Any
REPO = Path(__file__).resolve().parents[2]


def _own_stack_only(stack: DevStack) -> None:
    if stack.settings.aws_upstream:
        pytest.skip(f"about kinesis-mock and moto; this session runs against {stack.settings.aws_upstream}")


def _get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


# -- the session stack, through the edge --------------------------------------------------------------


def test_kinesis_stream_put_and_get_through_the_edge(aws_client: AwsClient, devstack_env: dict[str, str]) -> None:
    kinesis = aws_client("kinesis")
    stream = devstack_env["STREAM_WORKER_STREAM_NAME"]
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert summary["StreamStatus"] == "ACTIVE"
    assert summary["OpenShardCount"] == 4

    marker = uuid.uuid4().hex
    sent = {f"{marker}-{i}".encode() for i in range(25)}
    result = kinesis.put_records(StreamName=stream, Records=[{"Data": d, "PartitionKey": d.decode()} for d in sent])
    assert result["FailedRecordCount"] == 0

    iterators = [
        kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        for shard in kinesis.list_shards(StreamName=stream)["Shards"]
    ]
    received: set[bytes] = set()

    def all_received() -> bool:
        for i, iterator in enumerate(iterators):
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            iterators[i] = page["NextShardIterator"]
            received.update(r["Data"] for r in page["Records"] if r["Data"].startswith(marker.encode()))
        return received == sent

    wait_until(all_received, timeout=30, what="every record to be readable")


def test_dynamodb_through_the_edge(aws_client: AwsClient) -> None:
    dynamodb = aws_client("dynamodb")
    table = dynamodb.describe_table(TableName="similar-games")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "gameId", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    item = {"gameId": {"S": "starburst"}, "similar": {"L": [{"S": "gonzos-quest"}, {"S": "book-of-dead"}]}}
    dynamodb.put_item(TableName="similar-games", Item=item)
    assert dynamodb.get_item(TableName="similar-games", Key={"gameId": {"S": "starburst"}})["Item"] == item


def test_s3_through_the_edge_including_presigned_urls(aws_client: AwsClient) -> None:
    s3 = aws_client("s3", config=Config(signature_version="s3v4"))
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {"patron-datasets", "patron-dead-letters"} <= names
    body = os.urandom(3 * 1024 * 1024)
    s3.put_object(Bucket="patron-datasets", Key="it/blob.bin", Body=body)
    assert s3.get_object(Bucket="patron-datasets", Key="it/blob.bin")["Body"].read() == body
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "patron-datasets", "Key": "it/blob.bin"})
    assert "X-Amz-Credential" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == body


def test_personalize_emulator_through_the_edge(
    aws_client: AwsClient, aws_edge_url: str, devstack_env: dict[str, str]
) -> None:
    status, health = _get_json(f"{aws_edge_url}/_emulator/health")
    assert status == 200
    assert health["status"] == "ok"
    tracking_id = devstack_env["STREAM_WORKER_TRACKING_ID"]
    status, tracker = _get_json(f"{aws_edge_url}/_emulator/trackers/{tracking_id}")
    assert status == 200, tracker
    events = aws_client("personalize-events")
    response = events.put_events(
        trackingId=tracking_id,
        userId="player-1",
        sessionId="session-1",
        eventList=[{"eventId": uuid.uuid4().hex, "eventType": "play", "itemId": "starburst", "sentAt": time.time()}],
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_localstack_health_endpoints(aws_edge_url: str) -> None:
    status, body = _get_json(f"{aws_edge_url}/_localstack/health")
    assert status == 200
    for service in ("kinesis", "dynamodb", "s3", "personalize"):
        assert body["services"][service] == "running"
    status, body = _get_json(f"{aws_edge_url}/_devstack/health")
    assert status == 200
    assert all(upstream["status"] == "running" for upstream in body["upstreams"].values())


def test_a_localstack_client_session_reaches_every_service(localstack_session: Any) -> None:
    assert "clickstream" in localstack_session.client("kinesis").list_streams()["StreamNames"]
    assert "similar-games" in localstack_session.client("dynamodb").list_tables()["TableNames"]
    buckets = {b["Name"] for b in localstack_session.client("s3").list_buckets()["Buckets"]}
    assert "patron-dead-letters" in buckets


def test_env_names_the_edge_and_the_direct_kcl_endpoints(devstack: DevStack) -> None:
    _own_stack_only(devstack)
    env = devstack.env()
    edge = devstack.edge_url
    assert env["AWS_ENDPOINT_URL"] == edge
    for service_id in (
        "KINESIS",
        "DYNAMODB",
        "S3",
        "PERSONALIZE",
        "PERSONALIZE_EVENTS",
        "PERSONALIZE_RUNTIME",
    ):
        assert env[f"AWS_ENDPOINT_URL_{service_id}"] == edge
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "test"
    assert env["STREAM_WORKER_STREAM_NAME"] == "clickstream"
    assert env["STREAM_WORKER_TRACKING_ID"] == "local-tracker"
    assert env["STREAM_WORKER_APPLICATION_NAME"] == "clickstream-to-personalize"
    assert env["STREAM_WORKER_DEAD_LETTER_URL"] == "s3://patron-dead-letters/dead-letters"
    state = devstack.load_state()
    assert state is not None
    assert env["STREAM_WORKER_KCL_KINESIS_ENDPOINT"] == f"http://127.0.0.1:{state['ports']['kinesis']}"
    assert env["STREAM_WORKER_KCL_DYNAMODB_ENDPOINT"] == f"http://127.0.0.1:{state['ports']['moto']}"
    assert envfile.read(devstack.env_path) == env


def test_the_direct_kinesis_endpoint_speaks_h2c(devstack_env: dict[str, str]) -> None:
    """The KCL daemon forces HTTP/2 on plain http: kinesis-mock's plain port must answer an h2c preface."""
    host_port = devstack_env["STREAM_WORKER_KCL_KINESIS_ENDPOINT"].split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        frame = b""
        while len(frame) < 9:
            chunk = sock.recv(9 - len(frame))
            assert chunk, "connection closed before a frame arrived"
            frame += chunk
    assert frame[3] == 0x4  # the server's SETTINGS frame


def test_services_are_on_loopback_only(devstack: DevStack) -> None:
    _own_stack_only(devstack)
    state = devstack.load_state()
    assert state is not None
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    local = {(line.split()[1], line.split()[3]) for line in listening}
    for name in ("kinesis", "kinesis_tls", "moto", "personalize", "edge"):
        port_hex = f"{state['ports'][name]:04X}"
        bound = {addr for addr, st in local if st == "0A" and addr.endswith(f":{port_hex}")}
        assert bound == {f"0100007F:{port_hex}"}, (name, bound)


def test_an_edge_in_front_of_another_stack(devstack: DevStack, tmp_path: Path) -> None:
    """DEVSTACK_AWS_UPSTREAM: a stack whose edge sends AWS services to a running LocalStack (here, the
    session stack's edge) starts no kinesis-mock or moto of its own."""
    settings = DevStackSettings(state_dir=tmp_path / "front", edge_port=0, aws_upstream=devstack.edge_url)
    with DevStack(settings) as front:
        state = front.load_state()
        assert state is not None
        assert set(state["processes"]) == {"personalize", "edge"}
        env = front.env()
        assert env["STREAM_WORKER_KCL_KINESIS_ENDPOINT"] == devstack.edge_url
        kinesis = boto3.session.Session().client(
            "kinesis",
            endpoint_url=front.edge_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        assert "clickstream" in kinesis.list_streams()["StreamNames"]
        assert {s.name: s.answers for s in front.status()} == {"personalize": True, "edge": True, "aws": True}
    assert not any(is_alive(r.pid) for r in DevStack.records(state))
    assert devstack.is_healthy()


def test_down_leaves_alone_a_pid_that_is_not_ours(tmp_path: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        ticks = start_ticks(stranger.pid)
        assert ticks is not None
        records = {
            # right pid, wrong start time: the pid was reused since
            "moto": ProcessRecord("moto", stranger.pid, ticks + 1, ("time.sleep",), "").to_json(),
            # right pid and start time, but not the command line we started
            "edge": ProcessRecord("edge", stranger.pid, ticks, ("devstack.edge",), "").to_json(),
        }
        state = {"version": 1, "host": "127.0.0.1", "ready": True, "ports": {}, "processes": records}
        (tmp_path / "state.json").write_text(json.dumps(state))
        stopped = DevStack(DevStackSettings(state_dir=tmp_path)).stop()
        assert stopped == []
        assert stranger.poll() is None
        assert not (tmp_path / "state.json").exists()
    finally:
        stranger.kill()
        stranger.wait()


# -- the CLI --------------------------------------------------------------------------------------------


#: What the CLI tests let through of a developer's DEVSTACK_* settings (they test our own stack).
_KEPT_SETTINGS = ("DEVSTACK_STARTUP_TIMEOUT", "DEVSTACK_NODE", "DEVSTACK_KINESIS_LOCAL_DIR")


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSTACK_") or k in _KEPT_SETTINGS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return env


def _devstack(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        cwd=REPO,
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli_state(tmp_path: Path) -> Iterator[Path]:
    state_dir = tmp_path / "cli-stack"
    yield state_dir
    _devstack("down", "--state-dir", str(state_dir))


def _pids(state_dir: Path) -> dict[str, int]:
    state = json.loads((state_dir / "state.json").read_text())
    return {name: int(record["pid"]) for name, record in state["processes"].items()}


def test_cli_up_status_env_down(cli_state: Path) -> None:
    up = _devstack("up", "--state-dir", str(cli_state), "--edge-port", "0", "--stream", "cli-stream", "--shards", "2")
    assert up.returncode == 0, up.stderr
    assert "devstack is up" in up.stdout
    for line in up.stderr.strip().splitlines():  # structured logs on stderr
        assert isinstance(json.loads(line), dict)
    pids = _pids(cli_state)
    assert set(pids) == {"kinesis", "moto", "personalize", "edge"}

    again = _devstack("up", "--state-dir", str(cli_state), "--edge-port", "0")
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stdout
    assert _pids(cli_state) == pids

    status = _devstack("status", "--state-dir", str(cli_state))
    assert status.returncode == 0, status.stdout + status.stderr
    for name, pid in pids.items():
        row = next(line for line in status.stdout.splitlines() if line.startswith(name + " "))
        assert str(pid) in row
        assert "answers" in row
    report = json.loads(_devstack("status", "--state-dir", str(cli_state), "--json").stdout)
    assert report["healthy"] is True

    env_out = _devstack("env", "--state-dir", str(cli_state))
    assert env_out.returncode == 0
    exported = subprocess.run(
        [
            "bash",
            "-c",
            'eval "$1" && echo "$STREAM_WORKER_STREAM_NAME $AWS_ENDPOINT_URL"',
            "_",
            env_out.stdout,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert exported[0] == "cli-stream"
    assert exported[1] == report["edge_url"]
    as_json = json.loads(_devstack("env", "--state-dir", str(cli_state), "--format", "json").stdout)
    assert as_json["STREAM_WORKER_STREAM_NAME"] == "cli-stream"

    kinesis = boto3.session.Session().client(
        "kinesis",
        endpoint_url=as_json["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    assert kinesis.describe_stream_summary(StreamName="cli-stream")["StreamDescriptionSummary"]["OpenShardCount"] == 2

    down = _devstack("down", "--state-dir", str(cli_state))
    assert down.returncode == 0, down.stderr
    assert not any(is_alive(pid) for pid in pids.values())
    assert _devstack("status", "--state-dir", str(cli_state)).returncode == 3
    assert _devstack("env", "--state-dir", str(cli_state)).returncode == 3
    again_down = _devstack("down", "--state-dir", str(cli_state))
    assert again_down.returncode == 0
    assert "not running" in again_down.stdout


def test_cli_up_replaces_a_broken_stack(cli_state: Path) -> None:
    assert _devstack("up", "--state-dir", str(cli_state), "--edge-port", "0").returncode == 0
    before = _pids(cli_state)
    os.killpg(before["moto"], signal.SIGKILL)
    wait_until(lambda: not is_alive(before["moto"]), timeout=10, what="moto to die")
    assert _devstack("status", "--state-dir", str(cli_state)).returncode == 1

    up = _devstack("up", "--state-dir", str(cli_state), "--edge-port", "0")
    assert up.returncode == 0, up.stderr
    assert "devstack is up" in up.stdout
    after = _pids(cli_state)
    assert after["moto"] != before["moto"]
    assert not any(is_alive(pid) for pid in before.values())
    assert _devstack("status", "--state-dir", str(cli_state)).returncode == 0


def test_cli_foreground_stops_on_sigterm(cli_state: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack",
            "up",
            "--state-dir",
            str(cli_state),
            "--edge-port",
            "0",
            "--foreground",
        ],
        cwd=REPO,
        env=_cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        state_file = cli_state / "state.json"
        wait_until(
            lambda: state_file.is_file() and json.loads(state_file.read_text()).get("ready"),
            timeout=120,
            what="the foreground stack to be ready",
            abort=lambda: f"exited with {process.returncode}" if process.poll() is not None else None,
        )
        pids = _pids(cli_state)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert not any(is_alive(pid) for pid in pids.values())
        assert not state_file.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_refuses_a_taken_edge_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = _devstack("up", "--state-dir", str(tmp_path / "s"), "--edge-port", str(port))
    assert result.returncode == 2
    assert "is taken" in result.stderr


def _in_time_wait(port: int) -> bool:
    """Some IPv4 socket on local port ``port`` is in TIME_WAIT (state 06 of /proc/net/tcp)."""
    rows = [row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return any(row[1].endswith(f":{port:04X}") and row[3] == "06" for row in rows)


def test_cli_up_right_after_down_on_the_same_edge_port(cli_state: Path) -> None:
    """The old edge's closed connections (TIME_WAIT for a minute) do not make the port "taken"."""
    port = free_port()
    assert _devstack("up", "--state-dir", str(cli_state), "--edge-port", str(port)).returncode == 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"GET /_localstack/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        while client.recv(65536):  # to the end: the edge closes first, so its side waits in TIME_WAIT
            pass
    assert _devstack("down", "--state-dir", str(cli_state)).returncode == 0
    assert _in_time_wait(port)

    up = _devstack("up", "--state-dir", str(cli_state), "--edge-port", str(port))
    assert up.returncode == 0, up.stderr
    assert _devstack("status", "--state-dir", str(cli_state)).returncode == 0


def test_cli_names_a_bad_setting(tmp_path: Path) -> None:
    result = _devstack("up", "--state-dir", str(tmp_path / "s"), "--shards", "0")
    assert result.returncode == 2
    assert "DEVSTACK_SHARDS" in result.stderr
