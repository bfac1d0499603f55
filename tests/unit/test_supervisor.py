"""The supervisor's parts without Java: the daemon's log lines, the children's metric files, and the
signal and exit-code logic of ``stream-worker run`` around a stand-in daemon (a small Python script
given as STREAM_WORKER_JAVA). ``tests/integration/test_supervisor.py`` runs the real daemon."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import GaugeMetricFamily

from stream_worker import procfs
from stream_worker import supervisor as supervisor_module
from stream_worker.logs import JsonFormatter
from stream_worker.settings import load_settings
from stream_worker.supervisor import ChildMetrics, DaemonOutput, Supervisor, format_slf4j, stuck_shards

#: Lines the KCL 3.1.3 daemon wrote on stdout with the supervisor's logback configuration (captured
#: against the local stack; the last one's stack frames trimmed to two per exception).
KCL_STDOUT = r"""
{"sequenceNumber":0,"timestamp":1796418582877,"nanoseconds":877720258,"level":"INFO","threadName":"multi-lang-daemon-0000","loggerName":"software.amazon.kinesis.coordinator.Scheduler","context":{"name":"default","birthdate":1796418563495,"properties":{}},"mdc": {},"message":"Initialization complete. Starting worker loop.","throwable":null}
{"sequenceNumber":0,"timestamp":1796418596012,"nanoseconds":12351241,"level":"ERROR","threadName":"multi-lang-daemon-0001","loggerName":"software.amazon.kinesis.multilang.DrainChildSTDERRTask","context":{"name":"default","birthdate":1796418563495,"properties":{}},"mdc": {},"message":"Received error line from subprocess [{}] for shard {}","arguments": ["{\"ts\":1796418596.009,\"level\":\"info\",\"logger\":\"stream_worker.processor\",\"msg\":\"shard processor started\",\"pid\":23179,\"shard\":\"shardId-000000000002\",\"from\":\"TRIM_HORIZON\"}","shardId-000000000002"],"throwable":null}
{"sequenceNumber":0,"timestamp":1796418599652,"nanoseconds":652331485,"level":"INFO","threadName":"ShardRecordProcessor-0002","loggerName":"software.amazon.kinesis.multilang.MultiLangShardRecordProcessor","context":{"name":"default","birthdate":1796418563495,"properties":{}},"mdc": {},"message":"Child process exited with value: {}","arguments": ["0"],"throwable":null}
{"sequenceNumber":0,"timestamp":1796418583082,"nanoseconds":82132239,"level":"WARN","threadName":"lam-thread","loggerName":"software.amazon.kinesis.coordinator.assignment.LeaseAssignmentManager","context":{"name":"default","birthdate":1796418563495,"properties":{}},"mdc": {},"message":"Not able to assign all expiredOrUnAssignedLeases","throwable":null}
{"sequenceNumber":0,"timestamp":1796418600520,"nanoseconds":520151820,"level":"INFO","threadName":"Thread-1","loggerName":"software.amazon.kinesis.multilang.MultiLangDaemon","context":{"name":"default","birthdate":1796418563495,"properties":{}},"mdc": {},"message":"Process shutdown is complete.","throwable":null}
{"sequenceNumber":0,"timestamp":1796418150218,"nanoseconds":218198919,"level":"ERROR","threadName":"multi-lang-daemon-0000","loggerName":"software.amazon.kinesis.coordinator.Scheduler","context":{"name":"default","birthdate":1796418145288,"properties":{}},"mdc":{},"message":"Caught exception when initializing LeaseCoordinator","throwable":{"className":"java.lang.RuntimeException","message":"software.amazon.awssdk.core.exception.SdkClientException: Unable to execute HTTP request: Connection refused: /127.0.0.1:1 (SDK Attempt Count: 9)","stepArray":[{"className":"software.amazon.kinesis.retrieval.AWSExceptionManager","methodName":"apply","fileName":"AWSExceptionManager.java","lineNumber":68},{"className":"software.amazon.kinesis.leases.dynamodb.DynamoDBLeaseRefresher","methodName":"describeLeaseTable","fileName":"DynamoDBLeaseRefresher.java","lineNumber":297}],"cause":{"className":"software.amazon.awssdk.core.exception.SdkClientException","message":"Unable to execute HTTP request: Connection refused: /127.0.0.1:1 (SDK Attempt Count: 9)","stepArray":[{"className":"software.amazon.awssdk.core.exception.SdkClientException$BuilderImpl","methodName":"build","fileName":"SdkClientException.java","lineNumber":130},{"className":"software.amazon.awssdk.core.exception.SdkClientException$BuilderImpl","methodName":"build","fileName":"SdkClientException.java","lineNumber":95}],"commonFramesCount":3,"cause":{"className":"io.netty.channel.AbstractChannel$AnnotatedConnectException","message":"Connection refused: /127.0.0.1:1","stepArray":[],"cause":{"className":"java.net.ConnectException","message":"Connection refused","stepArray":[{"className":"sun.nio.ch.Net","methodName":"pollConnect","fileName":"Net.java","lineNumber":-2},{"className":"sun.nio.ch.Net","methodName":"pollConnectNow","fileName":"Net.java","lineNumber":672}]}}}}}
"""  # noqa: E501
CHILD_STDERR = (
    '{"ts":1796418596.009,"level":"info","logger":"stream_worker.processor","msg":"shard processor started",'
    '"pid":23179,"shard":"shardId-000000000002","from":"TRIM_HORIZON"}'
)


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def relay() -> Iterator[tuple[DaemonOutput, Captured]]:
    logger = logging.getLogger("test.daemon")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = Captured()
    logger.addHandler(handler)
    try:
        yield DaemonOutput(daemon_pid=4242, logger=logger), handler
    finally:
        logger.removeHandler(handler)


def test_kcl_lines_come_out_with_their_level_and_formatted_message(relay: tuple[DaemonOutput, Captured]) -> None:
    output, captured = relay
    for line in KCL_STDOUT.strip().splitlines():
        output.kcl_line(line)
    got = [(r.levelname, r.name.rsplit(".", 1)[-1], r.getMessage()) for r in captured.records]
    assert got == [
        ("INFO", "Scheduler", "Initialization complete. Starting worker loop."),
        ("INFO", "MultiLangShardRecordProcessor", "Child process exited with value: 0"),
        ("WARNING", "LeaseAssignmentManager", "Not able to assign all expiredOrUnAssignedLeases"),
        ("INFO", "MultiLangDaemon", "Process shutdown is complete."),
        ("ERROR", "Scheduler", "Caught exception when initializing LeaseCoordinator"),
    ]  # the "Received error line from subprocess" duplicate is gone
    assert output.initialized.is_set()
    assert output.child_exited.is_set()
    assert output.shutdown_complete.is_set()
    assert not output.shutdown_failed.is_set()
    first = captured.records[0]
    assert first.created == pytest.approx(1796418582.877)
    assert first.process == 4242
    assert first.__dict__["java_thread"] == "multi-lang-daemon-0000"
    error = captured.records[-1].__dict__["exc"]
    assert error.startswith("java.lang.RuntimeException: software.amazon.awssdk.core.exception.SdkClientException")
    assert "caused by: java.net.ConnectException: Connection refused at sun.nio.ch.Net.pollConnect" in error
    assert output.lines_by_level() == {"info": 3, "warning": 1, "error": 1}


def test_kcl_lines_below_the_kcl_level_are_noticed_but_not_emitted() -> None:
    logger = logging.getLogger("test.daemon.quiet")
    logger.propagate = False
    handler = Captured()
    logger.addHandler(handler)
    output = DaemonOutput(daemon_pid=1, logger=logger, kcl_level="WARN")
    for line in KCL_STDOUT.strip().splitlines():
        output.kcl_line(line)
    logger.removeHandler(handler)
    assert [r.levelname for r in handler.records] == ["WARNING", "ERROR"]
    assert output.initialized.is_set()
    assert output.shutdown_complete.is_set()


def kcl_event(level: str, logger: str, message: str) -> str:
    return json.dumps({"timestamp": 1796418600000, "level": level, "loggerName": logger, "mdc": {}, "message": message})


def test_a_logger_level_of_its_own_lets_its_lines_through_whatever_the_kcl_and_our_levels() -> None:
    logger = logging.getLogger("test.daemon.per-logger")
    logger.setLevel(logging.INFO)  # our own level (LOG_LEVEL) does not hide what the KCL levels chose
    logger.propagate = False
    handler = Captured()
    logger.addHandler(handler)
    output = DaemonOutput(
        daemon_pid=1,
        logger=logger,
        kcl_level="INFO",
        logger_levels={
            "software.amazon.kinesis.retrieval.polling": "DEBUG",
            "software.amazon.kinesis.leases": "ERROR",
        },
    )
    prefetch = "software.amazon.kinesis.retrieval.polling.PrefetchRecordsPublisher"
    lines = [
        kcl_event("DEBUG", prefetch, "s:shardId-000000000001 : Queue is full waiting for consumer for 250 ms"),
        kcl_event("DEBUG", "software.amazon.kinesis.retrieval.pollingx.Other", "not a child of the logger"),
        kcl_event("DEBUG", "software.amazon.kinesis.coordinator.Scheduler", "below the KCL level"),
        kcl_event("WARN", "software.amazon.kinesis.leases.LeaseCleanupManager", "below its logger's level"),
        kcl_event("ERROR", "software.amazon.kinesis.leases.LeaseCleanupManager", "at its logger's level"),
        kcl_event("INFO", "software.amazon.kinesis.coordinator.Scheduler", "at the KCL level"),
    ]
    for line in lines:
        output.kcl_line(line)
    logger.removeHandler(handler)
    assert [r.getMessage() for r in handler.records] == [
        "s:shardId-000000000001 : Queue is full waiting for consumer for 250 ms",
        "at its logger's level",
        "at the KCL level",
    ]
    assert output.threshold(prefetch) == logging.DEBUG
    assert output.threshold("software.amazon.kinesis") == logging.INFO


def test_a_child_line_is_re_emitted_as_the_child_wrote_it(relay: tuple[DaemonOutput, Captured]) -> None:
    output, captured = relay
    output.stderr_line(CHILD_STDERR)
    (record,) = captured.records
    assert json.loads(JsonFormatter().format(record)) == json.loads(CHILD_STDERR)


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("Picked up JAVA_TOOL_OPTIONS: -Xmx512m", "INFO"),
        ('Exception in thread "main" java.lang.IllegalArgumentException: bad', "ERROR"),
        ("Traceback (most recent call last):", "ERROR"),
        ("some unexpected output", "WARNING"),
    ],
)
def test_other_stderr_lines_get_a_level_by_their_look(
    line: str, level: str, relay: tuple[DaemonOutput, Captured]
) -> None:
    output, captured = relay
    output.stderr_line(line)
    assert [(r.levelname, r.getMessage(), r.__dict__["source"]) for r in captured.records] == [
        (level, line, "daemon-stderr")
    ]


def test_a_huge_line_is_relayed_cut_and_the_lines_after_it_whole() -> None:
    limit = supervisor_module.MAX_LINE_BYTES
    mark = supervisor_module.TRUNCATED_MARK
    stream = io.BytesIO(
        b"before\n"
        + b"x" * (3 * limit + 123)
        + b"\n"
        + b"y" * limit  # exactly the limit, then its line break: whole
        + b"\r\n"
        + b"after\n"
        + b"z" * (limit + 5)  # no line break before the end
    )
    lines: list[str] = []
    DaemonOutput(daemon_pid=1).pump(stream, lines.append)
    assert lines == [
        "before",
        "x" * limit + mark.format(dropped=2 * limit + 123),
        "y" * limit,
        "after",
        "z" * limit + mark.format(dropped=5),
    ]
    assert stream.closed


def test_a_huge_line_costs_bounded_memory() -> None:
    limit = supervisor_module.MAX_LINE_BYTES
    huge = b'{"level":"error","msg":"' + b"x" * (32 * limit) + b'"}'
    stream = io.BytesIO(huge + b"\nnext\n")
    lengths: list[int] = []
    tracemalloc.start()
    try:
        DaemonOutput(daemon_pid=1).pump(stream, lambda line: lengths.append(len(line)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * limit, f"{peak / limit:.1f} times the longest line relayed"
    assert lengths == [limit + len(supervisor_module.TRUNCATED_MARK.format(dropped=len(huge) - limit)), 4]


def test_slf4j_placeholders() -> None:
    assert format_slf4j("a {} b {}", ["1", 2]) == "a 1 b 2"
    assert format_slf4j("escaped \\{} and {}", ["x"]) == "escaped {} and x"
    assert format_slf4j("missing {} {}", ["only"]) == "missing only {}"


def test_a_shard_inside_process_records_too_long_is_stuck() -> None:
    family = GaugeMetricFamily("stream_worker_process_records_since_timestamp_seconds", "", labels=["shard"])
    family.add_metric(["shardId-000000000000"], 0.0)  # between calls
    family.add_metric(["shardId-000000000001"], 1000.0)  # inside for 500 s
    family.add_metric(["shardId-000000000002"], 1400.0)  # inside for 100 s
    other = GaugeMetricFamily("stream_worker_last_checkpoint_timestamp_seconds", "", labels=["shard"])
    other.add_metric(["shardId-000000000003"], 1.0)
    assert stuck_shards([family, other], now=1500.0, threshold=300.0) == {"shardId-000000000001": 500.0}


def test_dead_children_lose_their_live_gauges_and_keep_their_counters(tmp_path: Path) -> None:
    metrics = ChildMetrics(tmp_path / "prometheus")
    metrics.reset()
    (metrics.path / "counter_999999.db").write_bytes(b"stale from an earlier run")
    metrics.reset()
    assert list(metrics.path.iterdir()) == []
    child = textwrap.dedent(
        """
        from stream_worker.metrics import WorkerMetrics, Telemetry
        telemetry = Telemetry(WorkerMetrics(), "shardId-000000000000")
        telemetry.records_received(3)
        telemetry.processing_records(1234.0)
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics.path)}
    subprocess.run([sys.executable, "-c", child], env=env, check=True, timeout=60)
    names = {file.name.rsplit("_", 1)[0] for file in metrics.path.glob("*.db")}
    assert {"counter", "gauge_livemax"} <= names
    assert metrics.sweep() == 0
    assert metrics.exits == 1
    names = {file.name.rsplit("_", 1)[0] for file in metrics.path.glob("*.db")}
    assert "counter" in names
    assert not any(name.startswith("gauge_live") for name in names)
    families = {family.name: family for family in metrics.collect()}
    assert families["stream_worker_records"].samples[0].value == 3
    assert "stream_worker_process_records_since_timestamp_seconds" not in families
    assert metrics.sweep() == 0
    assert metrics.exits == 1  # counted once


#: A shard child writing its metric files as process ``pid`` (prometheus_client names the files by it).
CHILD_AS_PID = """
import sys, time
from prometheus_client import values
values.ValueClass = values.MultiProcessValue(lambda: int(sys.argv[1]))
from stream_worker.metrics import WorkerMetrics, Telemetry
telemetry = Telemetry(WorkerMetrics(), sys.argv[2])
telemetry.records_received(1)
telemetry.in_flight_set(5)
telemetry.processing_records(float(sys.argv[3]) or None)
"""


def write_child_metrics(path: Path, pid: int, shard: str, processing_since: float) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)}
    command = [sys.executable, "-c", CHILD_AS_PID, str(pid), shard, str(processing_since)]
    subprocess.run(command, env=env, check=True, timeout=60)


def live_samples(metrics: ChildMetrics) -> dict[str, list[float]]:
    names = ("stream_worker_in_flight_events", "stream_worker_process_records_since_timestamp_seconds")
    return {f.name: [s.value for s in f.samples] for f in metrics.collect() if f.name in names and f.samples}


def test_a_child_is_its_pid_and_start_time_so_a_reused_pid_is_swept_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = 4_000_001
    holder: dict[int, int | None] = {pid: None}  # the start time of whatever process has the pid now
    monkeypatch.setattr(supervisor_module, "process_identity", holder.get)
    metrics = ChildMetrics(tmp_path / "prometheus")
    metrics.reset()

    holder[pid] = 100  # shard child A, between process_records calls
    write_child_metrics(metrics.path, pid, "shardId-A", processing_since=0.0)
    assert metrics.sweep() == 1
    holder[pid] = None  # A ends
    assert metrics.sweep() == 0
    assert metrics.exits == 1
    assert live_samples(metrics) == {}

    holder[pid] = 200  # an unrelated process is given the pid: it writes no metrics, it is not a child
    assert metrics.sweep() == 0
    assert metrics.exits == 1

    holder[pid] = 300  # shard child B is given the pid, and is inside process_records since long ago
    write_child_metrics(metrics.path, pid, "shardId-B", processing_since=1000.0)
    assert metrics.sweep() == 1
    assert live_samples(metrics) == {
        "stream_worker_in_flight_events": [5.0],
        "stream_worker_process_records_since_timestamp_seconds": [1000.0],
    }
    assert stuck_shards(metrics.collect(), now=2000.0, threshold=300.0) == {"shardId-B": 1000.0}
    holder[pid] = 400  # B is killed and the pid goes to yet another process
    assert metrics.sweep() == 0
    assert metrics.exits == 2
    assert live_samples(metrics) == {}
    assert stuck_shards(metrics.collect(), now=2000.0, threshold=300.0) == {}
    families = {family.name: family for family in metrics.collect()}
    assert families["stream_worker_records"].samples[0].value == 2  # counters outlive their children


def zombie(process: subprocess.Popen[bytes]) -> bool:
    return Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_zombie_is_not_a_live_child(tmp_path: Path) -> None:
    metrics = ChildMetrics(tmp_path / "prometheus")
    metrics.reset()
    child = textwrap.dedent(
        """
        from stream_worker.metrics import WorkerMetrics, Telemetry
        Telemetry(WorkerMetrics(), "shardId-000000000000").processing_records(1234.0)
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics.path)}
    process = subprocess.Popen([sys.executable, "-c", child], env=env)  # not waited for: ends as a zombie
    try:
        wait_until(lambda: zombie(process), 60, "the child to be a zombie")
        assert metrics.sweep() == 0
        assert metrics.exits == 1
        assert live_samples(metrics) == {}
        assert supervisor_module.process_identity(process.pid) is None
        assert supervisor_module.process_identity(os.getpid()) == supervisor_module.process_identity(os.getpid())
        assert supervisor_module.process_identity(os.getpid()) not in (None, procfs.UNKNOWN_START)
    finally:
        process.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_process_group_of_zombies_is_not_alive() -> None:
    leader = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    try:
        wait_until(lambda: zombie(leader), 60, "the group leader to be a zombie")
        assert not supervisor_module._group_alive(leader.pid)
    finally:
        leader.wait()
    member = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        assert supervisor_module._group_alive(member.pid)
    finally:
        member.kill()
        member.wait()


#: In a process of its own: ended children are reaped, but not the daemon (its Popen collects it).
REAPING = """
import json, subprocess, sys, time
from pathlib import Path
from stream_worker.supervisor import reap_orphans

daemon = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
other = subprocess.Popen([sys.executable, "-c", "pass"])
for process in (daemon, other):
    stat = Path(f"/proc/{process.pid}/stat")
    while stat.read_text().rpartition(")")[2].split()[0] != "Z":
        time.sleep(0.01)
while_daemon_unreaped = reap_orphans(keep=daemon.pid)
code = daemon.wait()
print(json.dumps({"other": other.pid, "daemon_code": code, "reaped": while_daemon_unreaped + reap_orphans()}))
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_orphans_are_reaped_and_the_daemon_status_is_left_to_its_popen() -> None:
    result = subprocess.run([sys.executable, "-c", REAPING], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["daemon_code"] == 3
    assert seen["reaped"] == [seen["other"]]


def test_health_and_readiness_before_the_daemon_starts() -> None:
    supervisor = Supervisor(load_settings(), environ={})
    alive, health = supervisor.health()
    assert not alive
    assert health["status"] == "down"
    ready, body = supervisor.readiness()
    assert not ready
    assert "the KCL daemon is not running" in body["reasons"]
    assert "the KCL worker has not finished initializing" in body["reasons"]


# -- `stream-worker run` around a stand-in daemon ------------------------------------------------------

FAKE_DAEMON = """\
#!{python}
# Stands in for `java -cp ... MultiLangDaemon --properties-file F --log-configuration L`.
import json, os, signal, subprocess, sys, time

mode = os.environ["FAKE_DAEMON_MODE"]
record = {{"argv": sys.argv[1:], "pid": os.getpid(), "pgid": os.getpgid(0),
          "multiproc": os.environ.get("PROMETHEUS_MULTIPROC_DIR"),
          "properties": open(sys.argv[sys.argv.index("--properties-file") + 1]).read()}}

def log(level, message, *arguments):
    print(json.dumps({{"timestamp": int(time.time() * 1000), "level": level, "threadName": "main",
                      "loggerName": "software.amazon.kinesis.Fake", "mdc": {{}}, "message": message,
                      "arguments": list(arguments), "throwable": None}}), flush=True)

def on_term(signum, frame):
    if mode == "stubborn":
        log("INFO", "ignoring SIGTERM")
        return
    if mode == "unconfirmed":  # like the JVM on SIGTERM before KCL's shutdown hook is in place
        os._exit(143)
    log("INFO", "Process terminated, will initiate shutdown.")
    log("INFO", "Process shutdown is complete.")
    os._exit(143)

signal.signal(signal.SIGTERM, on_term)
if mode == "dies":
    child = subprocess.Popen(["sleep", "300"])
    record["child"] = child.pid
with open(os.environ["FAKE_DAEMON_RECORD"], "w") as out:
    json.dump(record, out)
log("INFO", "Initialization complete. Starting worker loop.")
print('{{"ts":1.5,"level":"warning","logger":"stream_worker.processor","msg":"from a child","pid":7}}',
      file=sys.stderr, flush=True)
if mode == "dies":
    time.sleep(1.0)
    os._exit(1)
while True:
    time.sleep(0.05)
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, None


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return result


class FakeRun:
    """``stream-worker run`` (or ``python`` with other ``argv``) around the stand-in daemon, its output in
    a log file; ``wrapper``: a command to start it under (e.g. ``unshare``, which stays its parent)."""

    def __init__(
        self,
        tmp_path: Path,
        mode: str,
        *,
        argv: Sequence[str] = ("-m", "stream_worker.cli", "run"),
        wrapper: Sequence[str] = (),
    ) -> None:
        self.tmp_path = tmp_path
        self.wrapped = bool(wrapper)
        java = tmp_path / "fake-java"
        java.write_text(FAKE_DAEMON.format(python=sys.executable), encoding="utf-8")
        java.chmod(0o755)
        jars = tmp_path / "jars"
        jars.mkdir()
        (jars / "amazon-kinesis-client-multilang-3.1.3.jar").write_bytes(b"")
        self.record_path = tmp_path / "daemon.json"
        self.log_path = tmp_path / "supervisor.log"
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAM_WORKER_", "PROMETHEUS_MULTIPROC"))}
        env.update(
            {
                "FAKE_DAEMON_MODE": mode,
                "FAKE_DAEMON_RECORD": str(self.record_path),
                "AWS_REGION": "us-east-1",
                "STREAM_WORKER_JAVA": str(java),
                "STREAM_WORKER_KCL_JARS_DIR": str(jars),
                "STREAM_WORKER_METRICS_ADDRESS": "127.0.0.1",
                "STREAM_WORKER_METRICS_PORT": str(self.port),
                "STREAM_WORKER_WORKER_ID": "fake-worker",
            }
        )
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen([*wrapper, sys.executable, *argv], env=env, stdout=log, stderr=log)
        self.url = f"http://127.0.0.1:{self.port}"

    def supervisor_pid(self) -> int:
        """The supervisor's pid (seen from here): the process started, or the wrapper's child."""
        if not self.wrapped:
            return self.process.pid
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return int(wait_until(lambda: children.read_text().split(), 30, "the wrapper to start its child")[0])

    def daemon(self) -> dict[str, Any]:
        def written() -> dict[str, Any] | None:
            assert self.process.poll() is None, self.logs()
            try:
                return dict(json.loads(self.record_path.read_text()))
            except (OSError, ValueError):
                return None

        return dict(wait_until(written, 30, "the stand-in daemon to start"))

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def fake_run(tmp_path: Path) -> Iterator[Callable[..., FakeRun]]:
    runs: list[FakeRun] = []

    def start(mode: str, **options: Any) -> FakeRun:
        (tmp_path / mode).mkdir()
        run = FakeRun(tmp_path / mode, mode, **options)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.close()


def test_sigterm_is_forwarded_and_a_graceful_stop_exits_0(fake_run: Callable[..., FakeRun]) -> None:
    run = fake_run("graceful")
    daemon = run.daemon()
    assert daemon["pgid"] == daemon["pid"]  # its own process group: a terminal's Ctrl-C does not reach it
    argv = daemon["argv"]
    assert argv[:3] == ["-cp", str(run.tmp_path / "jars" / "*"), "software.amazon.kinesis.multilang.MultiLangDaemon"]
    assert argv[3] == "--properties-file" and argv[5] == "--log-configuration"
    assert "workerId = fake-worker\n" in daemon["properties"]
    assert daemon["multiproc"] and Path(daemon["multiproc"]).is_dir()

    wait_until(lambda: get(run.url + "/readyz")[0] == 200, 30, "/readyz to answer 200")
    status, body = get(run.url + "/healthz")
    assert status == 200
    assert json.loads(body)["daemon_pid"] == daemon["pid"]
    status, body = get(run.url + "/metrics")
    assert status == 200
    assert b"stream_worker_daemon_up 1.0" in body
    assert b"stream_worker_daemon_initialized 1.0" in body
    assert get(run.url + "/nowhere")[0] == 404

    run.process.send_signal(signal.SIGTERM)
    assert run.process.wait(timeout=30) == 0
    messages = {entry["msg"]: entry for entry in run.logs()}
    assert messages["the KCL daemon stopped gracefully"]["kcl_confirmed"] is True
    assert messages["the KCL daemon stopped gracefully"]["daemon_exit_code"] == 143
    assert messages["from a child"]["level"] == "warning"
    assert messages["from a child"]["pid"] == 7


def test_a_daemon_that_dies_ends_the_supervisor_with_1_and_its_children_too(
    fake_run: Callable[..., FakeRun],
) -> None:
    run = fake_run("dies")
    daemon = run.daemon()
    assert run.process.wait(timeout=30) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(daemon["child"], 0)
    messages = [entry["msg"] for entry in run.logs()]
    assert "the KCL daemon exited on its own" in messages
    assert "stopping shard processes the KCL daemon left behind" in messages


def test_a_second_signal_kills_a_daemon_that_does_not_stop(fake_run: Callable[..., FakeRun]) -> None:
    run = fake_run("stubborn")
    run.daemon()
    wait_until(lambda: get(run.url + "/readyz")[0] == 200, 30, "/readyz to answer 200")
    run.process.send_signal(signal.SIGINT)
    wait_until(
        lambda: any(e["msg"] == "ignoring SIGTERM" for e in run.logs()), 30, "the daemon to get the forwarded SIGTERM"
    )
    status, body = get(run.url + "/readyz")
    assert status == 503
    assert "shutting down" in json.loads(body)["reasons"]
    run.process.send_signal(signal.SIGINT)
    assert run.process.wait(timeout=30) == 1
    messages = [entry["msg"] for entry in run.logs()]
    assert "second signal: killing the KCL daemon now" in messages
    assert "the KCL daemon was killed: shutdown was not graceful" in messages


def test_a_daemon_killed_by_a_signal_while_it_drains_is_not_a_graceful_stop(
    fake_run: Callable[..., FakeRun],
) -> None:
    run = fake_run("stubborn")
    daemon = run.daemon()
    wait_until(lambda: get(run.url + "/readyz")[0] == 200, 30, "/readyz to answer 200")
    run.process.send_signal(signal.SIGTERM)
    wait_until(
        lambda: any(e["msg"] == "ignoring SIGTERM" for e in run.logs()), 30, "the daemon to get the forwarded SIGTERM"
    )
    os.kill(daemon["pid"], signal.SIGKILL)  # say the OOM killer, mid-drain
    assert run.process.wait(timeout=30) == 1
    messages = {entry["msg"]: entry for entry in run.logs()}
    assert "the KCL daemon stopped gracefully" not in messages
    killed = messages["the KCL daemon was killed by a signal during its shutdown: not graceful"]
    assert killed["daemon_exit_code"] == -signal.SIGKILL
    assert killed["daemon_signal"] == "SIGKILL"
    assert killed["kcl_confirmed"] is False


def test_a_daemon_that_ends_without_kcl_confirming_its_shutdown_is_not_a_graceful_stop(
    fake_run: Callable[..., FakeRun],
) -> None:
    run = fake_run("unconfirmed")
    run.daemon()
    wait_until(lambda: get(run.url + "/readyz")[0] == 200, 30, "/readyz to answer 200")
    run.process.send_signal(signal.SIGTERM)
    assert run.process.wait(timeout=30) == 1
    messages = {entry["msg"]: entry for entry in run.logs()}
    ended = messages["the KCL daemon ended without KCL confirming its graceful shutdown"]
    assert ended["daemon_exit_code"] == 143
    assert ended["kcl_confirmed"] is False


#: ``stream-worker run`` that gets SIGTERM while it prepares the daemon's files (the pod is deleted
#: while the worker starts).
SIGNAL_WHILE_PREPARING = """
import os, signal, sys
from stream_worker.cli import main
from stream_worker.supervisor import Supervisor

prepare = Supervisor._prepare

def prepare_after_a_signal(self):
    os.kill(os.getpid(), signal.SIGTERM)
    return prepare(self)

Supervisor._prepare = prepare_after_a_signal
sys.exit(main(["run"]))
"""


def test_a_signal_before_the_daemon_starts_stops_the_run_without_starting_it(
    fake_run: Callable[..., FakeRun],
) -> None:
    run = fake_run("graceful", argv=("-c", SIGNAL_WHILE_PREPARING))
    assert run.process.wait(timeout=30) == 0, run.log_path.read_text()
    assert not run.record_path.exists()  # the stand-in daemon never ran
    messages = [entry["msg"] for entry in run.logs()]
    assert "stopping: a signal came before the KCL daemon was started, so it is not started" in messages
    assert "KCL daemon started" not in messages


#: ``stream-worker run`` that gets SIGTERM while it loads its settings, before the supervisor exists.
SIGNAL_WHILE_LOADING_SETTINGS = """
import os, signal, sys
import stream_worker.cli as cli

load_settings = cli.load_settings

def load_settings_after_a_signal(**overrides):
    os.kill(os.getpid(), signal.SIGTERM)
    return load_settings(**overrides)

cli.load_settings = load_settings_after_a_signal
sys.exit(cli.main(["run"]))
"""


def test_a_signal_while_run_loads_its_settings_stops_the_run_without_starting_the_daemon(
    fake_run: Callable[..., FakeRun],
) -> None:
    run = fake_run("graceful", argv=("-c", SIGNAL_WHILE_LOADING_SETTINGS))
    assert run.process.wait(timeout=30) == 0, run.log_path.read_text()
    assert not run.record_path.exists()  # the stand-in daemon never ran
    messages = [entry["msg"] for entry in run.logs()]
    assert "stopping: a signal came before the KCL daemon was started, so it is not started" in messages


@pytest.mark.parametrize("problem", ["java", "jars", "port"])
def test_what_stops_run_from_starting_is_named_and_exits_2(problem: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAM_WORKER_", "PROMETHEUS_MULTIPROC"))}
    env.update({"AWS_REGION": "us-east-1", "STREAM_WORKER_METRICS_ADDRESS": "127.0.0.1"})
    env["STREAM_WORKER_RUN_DIR"] = str(tmp_path / "run")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if problem == "java":
            env["STREAM_WORKER_JAVA"] = str(tmp_path / "no-such-java")
            named = "STREAM_WORKER_JAVA"
        elif problem == "jars":
            env["STREAM_WORKER_KCL_JARS_DIR"] = str(tmp_path)
            named = "STREAM_WORKER_KCL_JARS_DIR"
        else:
            env["STREAM_WORKER_METRICS_PORT"] = str(taken.getsockname()[1])
            named = "STREAM_WORKER_METRICS_PORT"
        result = subprocess.run(
            [sys.executable, "-m", "stream_worker.cli", "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert not (tmp_path / "run").exists()
