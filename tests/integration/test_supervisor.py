"""``stream-worker run`` with the real KCL 3.1.3 MultiLangDaemon against the local stack.

Each daemon test creates its own stream, application (lease table) and tracker, runs the supervisor as
a subprocess, and waits by polling with deadlines. KCL takes a random 1-30 s before its first shard
sync on an empty lease table, so the deadlines are generous; the tests take what KCL takes.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clickstream.mapping import EventMapping
from clickstream.normalize import Normalizer, Source
from clickstream.outcomes import Drop
from devstack.personalize.client import EmulatorClient
from devstack.stack import DevStack
from stream_worker.kcl_properties import MILESTONE_LOGGERS, kcl_properties, logback_config, render
from stream_worker.produce import produce
from stream_worker.settings import load_settings
from stream_worker.supervisor import default_jars_dir
from tests.integration.support import read_stream

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
AwsClient = Callable[..., Any]
#: KCL may wait up to 30 s before its first shard sync, then needs a lease round or two.
FIRST_DELIVERY_DEADLINE = 120.0
GRACE_MILLIS = 20_000

KEY_CHECK_JAVA = """
import java.io.FileInputStream;
import java.util.Properties;
import org.apache.commons.beanutils.PropertyUtilsBean;
import software.amazon.kinesis.multilang.config.KinesisClientLibConfigurator;
import software.amazon.kinesis.multilang.config.MultiLangDaemonConfiguration;

/** Loads a properties file the way the MultiLangDaemon does, and prints what KCL made of each key. */
public class KeyCheck {
    public static void main(String[] args) throws Exception {
        Properties properties = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) {
            properties.load(in);
        }
        MultiLangDaemonConfiguration c = new KinesisClientLibConfigurator().getConfiguration(properties);
        PropertyUtilsBean utils = new PropertyUtilsBean();
        for (String key : properties.stringPropertyNames()) {
            String name = key.equalsIgnoreCase("AwsCredentialsProvider") ? "awsCredentialsProvider" : key;
            System.out.println("known\\t" + key + "\\t" + utils.isWriteable(c, name));
        }
        System.out.println("read\\tapplicationName\\t" + c.getApplicationName());
        System.out.println("read\\tstreamName\\t" + c.getStreamName());
        System.out.println("read\\tworkerId\\t" + c.getWorkerIdentifier());
        System.out.println("read\\tregionName\\t" + c.getKinesisClient().get("region"));
        if (properties.containsKey("kinesisEndpoint")) {
            System.out.println("read\\tkinesisEndpoint\\t" + c.getKinesisClient().get("endpointOverride"));
        }
        if (properties.containsKey("dynamoDBEndpoint")) {
            System.out.println("read\\tdynamoDBEndpoint\\t" + c.getDynamoDbClient().get("endpointOverride"));
        }
        System.out.println("read\\tretrievalMode\\t" + c.getRetrievalMode());
        System.out.println("read\\tinitialPositionInStream\\t" + c.getInitialPositionInStream());
        System.out.println("read\\tmetricsLevel\\t" + c.getMetricsLevel());
        System.out.println("read\\tdisableWorkerMetrics\\t" + c.getDisableWorkerMetrics());
        System.out.println("read\\tcallProcessRecordsEvenForEmptyRecordList\\t"
            + c.isCallProcessRecordsEvenForEmptyRecordList());
        System.out.println("read\\tfailoverTimeMillis\\t" + c.getFailoverTimeMillis());
        System.out.println("read\\tshardSyncIntervalMillis\\t" + c.getShardSyncIntervalMillis());
        System.out.println("read\\tparentShardPollIntervalMillis\\t" + c.getParentShardPollIntervalMillis());
        System.out.println("read\\tshutdownGraceMillis\\t" + c.getShutdownGraceMillis());
        System.out.println("read\\tmaxRecords\\t" + c.getMaxRecords());
        System.out.println("read\\tidleTimeBetweenReadsInMillis\\t" + c.getIdleTimeBetweenReadsInMillis());
    }
}
"""


LOGBACK_CHECK_JAVA = """
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.joran.JoranConfigurator;
import org.slf4j.LoggerFactory;

/** Configures logback from a file the way the MultiLangDaemon does; prints each named logger's level. */
public class LogbackCheck {
    public static void main(String[] args) throws Exception {
        LoggerContext context = (LoggerContext) LoggerFactory.getILoggerFactory();
        context.reset();
        JoranConfigurator configurator = new JoranConfigurator();
        configurator.setContext(context);
        configurator.doConfigure(args[0]);
        for (int i = 1; i < args.length; i++) {
            Logger logger = context.getLogger(args[i]);
            System.out.println(args[i] + "\\t" + logger.getEffectiveLevel());
        }
    }
}
"""


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def java() -> str:
    found = shutil.which("java")
    if found is None:
        pytest.fail("java (17+) is not on PATH: the KCL daemon needs it", pytrace=False)
    return found


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


# -- the property names, checked by KCL itself --------------------------------------------------------


@pytest.mark.parametrize("where", ["local", "aws"])
def test_kcl_reads_every_key_the_supervisor_writes(where: str, tmp_path: Path) -> None:
    if where == "local":
        environ = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
        endpoints = {"kcl_kinesis_endpoint": "http://127.0.0.1:4567", "kcl_dynamodb_endpoint": "http://127.0.0.1:5000"}
    else:
        environ, endpoints = {}, {}
    settings = load_settings(
        stream_name="clickstream",
        application_name="key-check",
        region="eu-west-1",
        worker_id="worker-7",
        idle_time_between_reads_millis=250,
        failover_time_millis=2000,
        shard_sync_interval_millis=3000,
        parent_shard_poll_interval_millis=1000,
        max_records=777,
        initial_position="LATEST",
        **endpoints,
    )
    properties = kcl_properties(settings, environ=environ)
    (tmp_path / "kcl.properties").write_text(render(properties), encoding="ascii")
    (tmp_path / "KeyCheck.java").write_text(KEY_CHECK_JAVA, encoding="utf-8")
    result = subprocess.run(
        [java(), "-cp", str(default_jars_dir() / "*"), "KeyCheck.java", "kcl.properties"],
        cwd=tmp_path,
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    known: dict[str, str] = {}
    read: dict[str, str] = {}
    for line in result.stdout.splitlines():
        kind, _, rest = line.partition("\t")
        if kind in ("known", "read"):
            key, _, value = rest.partition("\t")
            (known if kind == "known" else read)[key] = value
    # executableName is read by MultiLangDaemonConfig, not by the configuration bean.
    assert known == {key: ("false" if key == "executableName" else "true") for key in properties}
    expected = {k: v for k, v in properties.items() if k not in ("executableName", "AwsCredentialsProvider")}
    assert read == expected
    assert f"Provider constructed successfully: {properties['AwsCredentialsProvider']}" in result.stdout


@pytest.mark.parametrize(
    ("root", "overrides"),
    [("INFO", "software.amazon.kinesis=WARN"), ("DEBUG", "software=ERROR"), ("WARN", "")],
)
def test_logback_keeps_the_milestone_loggers_at_info(root: str, overrides: str, tmp_path: Path) -> None:
    settings = load_settings(kcl_log_level=root, kcl_log_levels=overrides)
    (tmp_path / "logback.xml").write_text(
        logback_config(settings.kcl_log_level, settings.kcl_logger_levels()), encoding="utf-8"
    )
    (tmp_path / "LogbackCheck.java").write_text(LOGBACK_CHECK_JAVA, encoding="utf-8")
    other = "software.amazon.kinesis.leases.LeaseCleanupManager"
    result = subprocess.run(
        [java(), "-cp", str(default_jars_dir() / "*"), "LogbackCheck.java", "logback.xml", *MILESTONE_LOGGERS, other],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    levels = dict(line.split("\t") for line in result.stdout.splitlines() if "\t" in line)
    # The milestones at INFO (the supervisor needs their lines); the overrides hold for the rest.
    assert levels == {**dict.fromkeys(MILESTONE_LOGGERS, "INFO"), other: "ERROR" if root == "DEBUG" else "WARN"}


# -- the daemon on the local stack ----------------------------------------------------------------------


@dataclass
class Worker:
    """A ``stream-worker run`` subprocess and what it was given."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    stream: str
    application: str
    tracking_id: str

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_path.read_text(encoding="utf-8").splitlines() if line]

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def json(self, path: str) -> tuple[int, Any]:
        status, body = get(self.url + path)
        return status, json.loads(body) if body else None

    def metric(self, name: str) -> float | None:
        status, body = get(self.url + "/metrics")
        if status != 200:
            return None
        for family in text_string_to_metric_families(body.decode("utf-8")):
            for sample in family.samples:
                if sample.name == name and not sample.labels:
                    return float(sample.value)
        return None

    def alive(self) -> bool:
        return self.process.poll() is None


@pytest.fixture
def start_worker(devstack: DevStack, aws_client: AwsClient, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Starts ``stream-worker run`` on a new stream of ``shards`` shards with its own application and
    tracker; stops whatever is still running at the end."""
    started: list[Worker] = []
    kinesis = aws_client("kinesis")
    emulator = EmulatorClient(devstack.edge_url)

    def start(shards: int) -> Worker:
        suffix = uuid.uuid4().hex[:10]
        stream, application, tracking_id = f"run-{suffix}", f"run-app-{suffix}", f"run-tracker-{suffix}"
        kinesis.create_stream(StreamName=stream, ShardCount=shards)
        wait_until(
            lambda: (
                kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
                == "ACTIVE"
            ),
            timeout=30,
            what=f"stream {stream}",
        )
        emulator.create_tracker(tracking_id, quota_per_second=None)
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("STREAM_WORKER_", "PROMETHEUS_MULTIPROC"))},
            **devstack.env(),
            "STREAM_WORKER_STREAM_NAME": stream,
            "STREAM_WORKER_APPLICATION_NAME": application,
            "STREAM_WORKER_TRACKING_ID": tracking_id,
            "STREAM_WORKER_DEAD_LETTER_URL": str(tmp_path / f"dead-letters-{suffix}"),
            "STREAM_WORKER_WORKER_ID": f"test-{suffix}",
            "STREAM_WORKER_METRICS_ADDRESS": "127.0.0.1",
            "STREAM_WORKER_METRICS_PORT": str(port),
            "STREAM_WORKER_RUN_DIR": str(tmp_path / f"run-{suffix}"),
            "STREAM_WORKER_IDLE_TIME_BETWEEN_READS_MILLIS": "250",
            "STREAM_WORKER_FAILOVER_TIME_MILLIS": "2000",
            "STREAM_WORKER_SHARD_SYNC_INTERVAL_MILLIS": "2000",
            "STREAM_WORKER_PARENT_SHARD_POLL_INTERVAL_MILLIS": "1000",
            "STREAM_WORKER_SHUTDOWN_GRACE_MILLIS": str(GRACE_MILLIS),
            "STREAM_WORKER_CHECKPOINT_INTERVAL_SECONDS": "1",
        }
        log_path = tmp_path / f"supervisor-{suffix}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "stream_worker.cli", "run"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        worker = Worker(process, f"http://127.0.0.1:{port}", log_path, stream, application, tracking_id)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.alive():
            worker.process.send_signal(signal.SIGTERM)
            try:
                worker.process.wait(timeout=GRACE_MILLIS / 1000 + 15)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


def expected_event_ids(stored: list[dict[str, Any]]) -> Counter[str]:
    """The eventIds the worker must deliver for these records: one Normalizer per shard, records in
    sequence order, eventIds sourced from the shard id and sequence number as under KCL."""
    expected: Counter[str] = Counter()
    by_shard: dict[str, list[dict[str, Any]]] = {}
    for record in stored:
        by_shard.setdefault(record["ShardId"], []).append(record)
    for shard_id, records in by_shard.items():
        normalizer = Normalizer(EventMapping.default())
        for record in sorted(records, key=lambda r: int(r["SequenceNumber"])):
            data = record["Data"]
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            arrival = record["ApproximateArrivalTimestamp"].timestamp()
            for position, line in enumerate(data.split(b"\n")):
                if not line.strip():
                    continue
                source = Source(shard_id, record["SequenceNumber"], 0, position, arrival)
                outcome = normalizer.normalize(json.loads(line), source)
                if not isinstance(outcome, Drop):
                    expected[outcome.event_id] += 1
    return expected


def test_run_delivers_every_event_once_serves_health_and_metrics_and_stops_gracefully(
    start_worker: Callable[..., Worker], devstack: DevStack, aws_client: AwsClient
) -> None:
    started = time.monotonic()
    worker = start_worker(shards=2)
    kinesis = aws_client("kinesis")
    emulator = EmulatorClient(devstack.edge_url)

    # The supervisor answers at once; ready once KCL's worker has initialized.
    wait_until(lambda: worker.json("/healthz")[0] == 200, timeout=30, what="/healthz to answer 200")
    status, body = worker.json("/readyz")
    assert status in (200, 503), body

    summary = produce(FIXTURES / "kinesis_capture.jsonl", worker.stream, client=kinesis, progress=False)
    assert summary.failed_records == 0
    stored = read_stream(kinesis, worker.stream, summary.put)
    expected = expected_event_ids(stored)
    assert sum(expected.values()) > 100

    def delivered() -> list[str] | None:
        assert worker.alive(), f"the supervisor exited early:\n{worker.tail()}"
        ids = [e["eventId"] for e in emulator.events(worker.tracking_id, fields=["eventId"])]
        return ids if len(ids) >= sum(expected.values()) else None

    try:
        ids = wait_until(delivered, timeout=FIRST_DELIVERY_DEADLINE, what="every event at the emulator", interval=1)
    except TimeoutError:
        pytest.fail(f"not every event arrived; supervisor log tail:\n{worker.tail()}")
    first_delivery = time.monotonic() - started
    assert Counter(ids) == expected  # every event, exactly once

    status, health = worker.json("/healthz")
    assert status == 200
    assert health["status"] == "ok"
    status, ready = worker.json("/readyz")
    assert status == 200, ready
    assert ready["initialized"] is True
    assert ready["shard_processes"] == 2
    assert ready["stuck_shards"] == {}
    wait_until(
        lambda: worker.metric("stream_worker_events_delivered_total") == len(ids),
        timeout=10,
        what=f"stream_worker_events_delivered_total == {len(ids)}",
    )
    assert worker.metric("stream_worker_daemon_up") == 1
    assert worker.metric("stream_worker_ready") == 1
    assert worker.metric("stream_worker_records_total") == summary.put

    # Graceful shutdown: every shard drains and checkpoints its last record.
    stopping = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    code = worker.process.wait(timeout=GRACE_MILLIS / 1000 + 15)
    took = time.monotonic() - stopping
    assert code == 0, worker.tail()
    assert took < GRACE_MILLIS / 1000, f"shutdown took {took:.1f}s"

    leases = aws_client("dynamodb").scan(TableName=worker.application)["Items"]
    checkpoints = {item["leaseKey"]["S"]: item["checkpoint"]["S"] for item in leases}
    assert checkpoints == {shard: info["last_sequence_number"] for shard, info in summary.shards.items()}

    logs = worker.logs()  # every line the supervisor wrote is a JSON object
    messages = Counter(entry["msg"] for entry in logs)
    assert messages["shard processor started"] == 2
    assert messages["the KCL daemon stopped gracefully"] == 1
    assert not any("Received error line from subprocess" in entry["msg"] for entry in logs)
    assert all(entry["level"] in ("debug", "info", "warning") for entry in logs), [
        e for e in logs if e["level"] not in ("debug", "info", "warning")
    ]
    print(f"first full delivery after {first_delivery:.1f}s; graceful shutdown in {took:.1f}s")


def test_run_exits_non_zero_when_the_daemon_dies(start_worker: Callable[..., Worker]) -> None:
    worker = start_worker(shards=1)

    def a_shard_process() -> bool:
        assert worker.alive(), f"the supervisor exited early:\n{worker.tail()}"
        status, body = worker.json("/readyz")
        return status == 200 and body["shard_processes"] >= 1

    try:
        wait_until(a_shard_process, timeout=FIRST_DELIVERY_DEADLINE, what="a shard process", interval=0.5)
    except TimeoutError:
        pytest.fail(f"no shard process started; supervisor log tail:\n{worker.tail()}")
    _, health = worker.json("/healthz")
    daemon_pid = int(health["daemon_pid"])

    os.kill(daemon_pid, signal.SIGKILL)
    code = worker.process.wait(timeout=30)
    assert code != 0
    with pytest.raises(ProcessLookupError):  # the shard children went with it
        os.killpg(daemon_pid, 0)
    messages = [entry["msg"] for entry in worker.logs()]
    assert "the KCL daemon exited on its own" in messages
