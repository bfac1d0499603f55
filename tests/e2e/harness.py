"""What the end-to-end tests are made of: ``stream-worker run`` subprocesses, generated captures, the
lease table, the stream read back, and polling with deadlines.

- :class:`Worker`: one ``stream-worker run`` (the supervisor, which starts the real KCL MultiLangDaemon,
  which starts one ``stream-worker process`` child per lease). Started in a session of its own; the
  daemon runs in another (the supervisor starts it so), with the shard children in the daemon's process
  group. :meth:`Worker.kill` ends both groups; :meth:`Worker.sigkill` is the crash of a whole pod.
- :class:`Capture`: a deterministic capture from the generator, with every event carrying a client
  ``event_id``, and the eventIds the worker must deliver: the events run through
  :class:`~clickstream.normalize.Normalizer` in the order of their partition key (one player's
  sessions go to one key, so to one shard, in order), which collapses rounds and drops client retries.
  With client ids and collapsed ids only, the *set* of eventIds does not depend on shards or sequence
  numbers, so it is known before the capture is produced.
- :class:`Scenario`: one test's streams, trackers, captures and workers, with unique names, and the
  clean-up of every process it started.
- :func:`stream_origins`: where each eventId lies in the stream (shard, sequence number), from the
  stream read back: a re-delivered event must lie past the checkpoint its shard restarted from.
"""

from __future__ import annotations

import contextlib
import gzip
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
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from clickstream.capture import CaptureRecord, write_capture
from clickstream.generator import SHORT_SESSIONS, generate_catalog, generate_events, pack_records
from clickstream.mapping import EventMapping
from clickstream.normalize import Normalizer, Source, normalize
from clickstream.outcomes import Drop
from devstack.personalize.client import EmulatorClient

T = TypeVar("T")

PYTHON = sys.executable
#: KCL waits a random 1-30 s before its first shard sync on an empty lease table, then takes leases.
FIRST_LEASE_TIMEOUT = 75.0
#: From producing a capture to every event at the emulator (includes KCL's first shard sync).
DELIVERY_TIMEOUT = 150.0
#: A fixed generator start (2023-11-14): events are in the past, within the normalizer's range.
CAPTURE_START = 1_700_000_000.0
SHUTDOWN_GRACE_MILLIS = 15_000
SHUTDOWN_GRACE_SECONDS = 8.0
CHECKPOINT_INTERVAL_SECONDS = 1.0
#: The KCL timings of the tests (production defaults are 10 s / 60 s / 10 s / 1 s).
FAILOVER_TIME_MILLIS = 3_000
SHARD_SYNC_INTERVAL_MILLIS = 2_000
PARENT_SHARD_POLL_INTERVAL_MILLIS = 1_000
IDLE_TIME_BETWEEN_READS_MILLIS = 250
#: The batcher's linger while caught up and while behind (production: 1 s and 20 s).
LINGER_SECONDS = 0.5
BACKLOG_LINGER_SECONDS = 2.0


# --- polling -----------------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.5,
) -> T:
    """Poll ``condition`` until it returns something truthy and return that; TimeoutError naming
    ``what`` (a text, or a function giving one, e.g. with the last state seen) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            text = what() if callable(what) else what
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {text}")
        time.sleep(min(interval, remaining))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except OSError:
        return 0, b""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- metrics -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metrics:
    """One scrape of ``/metrics``: every sample as (name, labels, value), and the text."""

    text: str
    samples: tuple[tuple[str, dict[str, str], float], ...]

    @classmethod
    def parse(cls, text: str) -> Metrics:
        samples = tuple(
            (sample.name, dict(sample.labels), float(sample.value))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        )
        return cls(text, samples)

    def value(self, name: str, **labels: str) -> float | None:
        """The sum of ``name``'s samples whose labels include ``labels``; None when there is none."""
        found = [v for n, ls, v in self.samples if n == name and all(ls.get(k) == w for k, w in labels.items())]
        return sum(found) if found else None

    def by_label(self, name: str, label: str) -> dict[str, float]:
        return {ls[label]: v for n, ls, v in self.samples if n == name and label in ls}


# --- the worker --------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _killpg(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


@dataclass
class Worker:
    """A ``stream-worker run`` subprocess, its environment and its log (stdout and stderr)."""

    name: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    daemon_pid: int | None = None
    exit_code: int | None = None

    @property
    def worker_id(self) -> str:
        return self.env["STREAM_WORKER_WORKER_ID"]

    @property
    def application(self) -> str:
        return self.env["STREAM_WORKER_APPLICATION_NAME"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['STREAM_WORKER_METRICS_PORT']}"

    def start(self) -> Worker:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [PYTHON, "-m", "stream_worker.cli", "run"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own process group: a SIGKILL of it hits nothing else
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- what it serves ---------------------------------------------------------------------------

    def get_json(self, path: str) -> tuple[int, Any]:
        status, body = http_get(self.url + path)
        try:
            decoded = json.loads(body) if body else None
        except ValueError:
            decoded = body.decode("utf-8", "replace")
        if isinstance(decoded, dict) and isinstance(decoded.get("daemon_pid"), int):
            self.daemon_pid = decoded["daemon_pid"]
        return status, decoded

    def healthz(self) -> tuple[int, Any]:
        return self.get_json("/healthz")

    def readyz(self) -> tuple[int, Any]:
        return self.get_json("/readyz")

    def metrics_text(self) -> str | None:
        status, body = http_get(self.url + "/metrics")
        return body.decode("utf-8") if status == 200 else None

    def metrics(self) -> Metrics | None:
        text = self.metrics_text()
        return None if text is None else Metrics.parse(text)

    def metric(self, name: str, **labels: str) -> float | None:
        scraped = self.metrics()
        return None if scraped is None else scraped.value(name, **labels)

    # -- its log ----------------------------------------------------------------------------------

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines of its log (other lines are skipped)."""
        entries = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        return entries

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return f"--- {self.name} ({self.log_path}) ---\n" + "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """AssertionError with the log's tail if the supervisor has exited."""
        assert self.alive(), f"{self.name} exited with {self.process and self.process.returncode}:\n{self.tail()}"

    # -- signals and the end ----------------------------------------------------------------------

    def learn_daemon_pid(self) -> int | None:
        """The daemon's pid from /healthz, else the supervisor's child that is not gone."""
        if self.daemon_pid is None and self.alive():
            self.healthz()
        if self.daemon_pid is None and self.process is not None:
            children = _children(self.process.pid)
            if children:
                self.daemon_pid = children[0]
        return self.daemon_pid

    def sigterm(self) -> None:
        assert self.process is not None
        self.learn_daemon_pid()
        self.process.send_signal(signal.SIGTERM)

    def sigkill(self) -> None:
        """A crash of the whole worker: SIGKILL the daemon's group (java and the shard children), then
        the supervisor's group, with no chance for any of them to checkpoint."""
        assert self.process is not None
        daemon = self.learn_daemon_pid()
        if daemon is not None:
            _killpg(daemon, signal.SIGKILL)
        _killpg(self.process.pid, signal.SIGKILL)
        self.wait(timeout=10)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        self.exit_code = self.process.wait(timeout=timeout)
        return self.exit_code

    def kill(self) -> None:
        """Clean-up: SIGKILL whatever of this worker is still running (supervisor, daemon, children)."""
        if self.process is None:
            return
        self.learn_daemon_pid()
        if self.daemon_pid is not None:
            _killpg(self.daemon_pid, signal.SIGKILL)
        _killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self.daemon_pid is not None:
            deadline = time.monotonic() + 10
            while _group_alive(self.daemon_pid) and time.monotonic() < deadline:
                time.sleep(0.1)


# --- the lease table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    key: str
    owner: str | None
    checkpoint: str | None
    counter: int
    parents: tuple[str, ...]


def scan_leases(dynamodb: Any, table: str) -> dict[str, Lease]:
    """Every lease of KCL's lease table (named after the application), by lease key (the shard id).

    An empty dict while the table does not exist yet.
    """
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    try:
        while True:
            page = dynamodb.scan(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    except dynamodb.exceptions.ResourceNotFoundException:
        return {}
    leases = {}
    for item in items:
        key = item["leaseKey"]["S"]
        leases[key] = Lease(
            key=key,
            owner=item.get("leaseOwner", {}).get("S"),
            checkpoint=item.get("checkpoint", {}).get("S"),
            counter=int(item.get("leaseCounter", {}).get("N", "0")),
            parents=tuple(item.get("parentShardId", {}).get("SS", ())),
        )
    return leases


# --- captures ----------------------------------------------------------------------------------------


def decode_events(data: bytes) -> list[dict[str, Any]]:
    """A record's events the simple way: gunzip if gzip, split lines, parse JSON."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.split(b"\n") if line.strip()]


@dataclass
class Capture:
    """A generated capture file, and the eventIds the worker must deliver for it (each once)."""

    path: Path
    records: int
    events: int
    expected: frozenset[str]

    def __len__(self) -> int:
        return len(self.expected)


def expected_event_ids(records: Iterable[CaptureRecord]) -> Counter[str]:
    """What the worker must deliver: one Normalizer per partition key, records in capture order.

    Every event has a client ``event_id`` (or collapses to an id of session, game and type), so no
    eventId depends on where the record lands in the stream.
    """
    normalizers: dict[str, Normalizer] = defaultdict(lambda: Normalizer(EventMapping.default()))
    expected: Counter[str] = Counter()
    for number, record in enumerate(records):
        normalizer = normalizers[record.partition_key]
        for position, event in enumerate(decode_events(record.data)):
            source = Source("unknown-shard", str(number), 0, position, time.time())
            outcome = normalizer.normalize(event, source)
            if not isinstance(outcome, Drop):
                expected[outcome.event_id] += 1
    return expected


def make_capture(
    path: Path,
    *,
    seed: int,
    sessions: int,
    players: int = 120,
    multi_event_fraction: float = 0.2,
    gzip_fraction: float = 0.1,
) -> Capture:
    """A capture of ``sessions`` short sessions (about 35 raw events and 8 deliverable ones each).

    Every event carries a client ``event_id`` (the generator gives one to 95% by default); 1% of
    events are client retries (same id). A record holds up to 10 events of one partition key
    (``multi_event_fraction`` of them several) and ``gzip_fraction`` are gzip-compressed.
    """
    catalog = generate_catalog(150, seed=seed)
    config = SHORT_SESSIONS.with_(event_id_fraction=1.0)
    events = list(
        generate_events(catalog, n_players=players, seed=seed, start=CAPTURE_START, n_sessions=sessions, config=config)
    )
    for event in events:
        assert event.get("event_id") or event.get("eventId"), event
    records = list(
        pack_records(events, multi_event_fraction=multi_event_fraction, gzip_fraction=gzip_fraction, seed=seed)
    )
    write_capture(path, records, kind="kinesis")
    expected = expected_event_ids(records)
    assert all(count == 1 for count in expected.values())
    return Capture(path, len(records), len(events), frozenset(expected))


# --- the stream --------------------------------------------------------------------------------------


def wait_stream_active(kinesis: Any, stream: str, timeout: float = 30.0) -> None:
    wait_until(
        lambda: (
            kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
        ),
        timeout=timeout,
        what=f"stream {stream} to be ACTIVE",
        interval=0.2,
    )


def list_shards(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    while True:
        page = kinesis.list_shards(**kwargs)
        shards.extend(page["Shards"])
        token = page.get("NextToken")
        if not token:
            return shards
        kwargs = {"NextToken": token}


def read_stream(kinesis: Any, stream: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every record of every shard (open or closed), each with its ``ShardId``, read from TRIM_HORIZON
    until each shard is caught up (open) or at its end (closed)."""
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    for shard in list_shards(kinesis, stream):
        shard_id = shard["ShardId"]
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        while iterator:
            assert time.monotonic() < deadline, f"reading {stream} took more than {timeout:g}s"
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records.extend({**r, "ShardId": shard_id} for r in page["Records"])
            iterator = page.get("NextShardIterator")
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
    return records


def stream_origins(records: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[str, int]]]:
    """Where each eventId occurs in the stream: [(shard id, sequence number)], every occurrence
    (a collapsed id occurs once per round of the game; a client retry twice)."""
    mapping = EventMapping.default()
    origins: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for record in records:
        sequence = str(record["SequenceNumber"])
        for position, event in enumerate(decode_events(record["Data"])):
            outcome = normalize(event, Source(record["ShardId"], sequence, 0, position, time.time()), mapping)
            if not isinstance(outcome, Drop):
                origins[outcome.event_id].append((record["ShardId"], int(sequence)))
    return origins


def duplicates(received: Counter[str]) -> Counter[str]:
    """eventIds received more than once, with how many extra times."""
    return Counter({event_id: n - 1 for event_id, n in received.items() if n > 1})


@dataclass
class Producer:
    """A ``stream-worker produce`` subprocess putting a capture into a stream."""

    capture: Capture
    base: Path
    stream: str
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str], rate: float | None) -> None:
        command = [PYTHON, "-m", "stream_worker.cli", "produce", str(self.capture.path), "--stream", self.stream]
        command += ["--summary-json", str(self.base.with_suffix(".json")), "--no-progress"]
        if rate is not None:
            command += ["--rate", f"{rate:g}"]
        with self.base.with_suffix(".log").open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def done(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def wait(self, timeout: float = 120.0) -> dict[str, Any]:
        """Its summary, once it has put every record (AssertionError otherwise)."""
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        log = self.base.with_suffix(".log").read_text(encoding="utf-8", errors="replace")
        assert code == 0, f"produce exited with {code}:\n{log[-3000:]}"
        summary: dict[str, Any] = json.loads(self.base.with_suffix(".json").read_text(encoding="utf-8"))
        assert summary["put"] == self.capture.records and summary["failed"] == 0, summary
        return summary

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --- one test's world --------------------------------------------------------------------------------


@dataclass
class Scenario:
    """One test's streams, trackers, captures and workers on the shared local stack."""

    stack_env: dict[str, str]
    emulator: EmulatorClient
    kinesis: Any
    dynamodb: Any
    tmp_path: Path
    workers: list[Worker] = field(default_factory=list)
    producers: list[Producer] = field(default_factory=list)

    # -- resources --------------------------------------------------------------------------------

    def create_stream(self, shards: int) -> str:
        stream = unique("e2e-stream")
        self.kinesis.create_stream(StreamName=stream, ShardCount=shards)
        wait_stream_active(self.kinesis, stream)
        return stream

    def create_tracker(self) -> str:
        tracking_id = unique("e2e-tracker")
        self.emulator.create_tracker(tracking_id, quota_per_second=None)
        return tracking_id

    def capture(self, name: str, **kwargs: Any) -> Capture:
        return make_capture(self.tmp_path / f"{name}.jsonl", **kwargs)

    def produce(self, capture: Capture, stream: str, *, rate: float | None = None) -> dict[str, Any]:
        """``stream-worker produce`` the capture into ``stream``; its summary."""
        return self.start_producing(capture, stream, rate=rate).wait()

    def start_producing(self, capture: Capture, stream: str, *, rate: float | None = None) -> Producer:
        """``stream-worker produce`` in the background (at ``rate`` records/s: a live stream)."""
        producer = Producer(capture, self.tmp_path / f"produce-{uuid.uuid4().hex[:8]}", stream)
        producer.start(self.base_env(), rate)
        self.producers.append(producer)
        return producer

    # -- workers ----------------------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        """This process's environment without worker settings, plus the local stack's."""
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("STREAM_WORKER_", "PROMETHEUS_MULTIPROC", "AWS_"))
        }
        return {**inherited, **self.stack_env}

    def worker(
        self,
        *,
        stream: str,
        application: str,
        tracking_id: str,
        name: str | None = None,
        start: bool = True,
        **settings: Any,
    ) -> Worker:
        """A ``stream-worker run`` with the tests' timings; ``settings`` (lower-case names without the
        prefix) override them."""
        name = name or f"worker-{len(self.workers) + 1}"
        suffix = uuid.uuid4().hex[:6]
        values: dict[str, Any] = {
            "tracking_id": tracking_id,
            "stream_name": stream,
            "application_name": application,
            "worker_id": f"{name}-{suffix}",
            "metrics_address": "127.0.0.1",
            "metrics_port": free_port(),
            "dead_letter_url": str(self.tmp_path / f"dead-letters-{name}-{suffix}"),
            "run_dir": str(self.tmp_path / f"run-{name}-{suffix}"),
            "idle_time_between_reads_millis": IDLE_TIME_BETWEEN_READS_MILLIS,
            "failover_time_millis": FAILOVER_TIME_MILLIS,
            "shard_sync_interval_millis": SHARD_SYNC_INTERVAL_MILLIS,
            "parent_shard_poll_interval_millis": PARENT_SHARD_POLL_INTERVAL_MILLIS,
            "shutdown_grace_millis": SHUTDOWN_GRACE_MILLIS,
            "shutdown_grace_seconds": SHUTDOWN_GRACE_SECONDS,
            "checkpoint_interval_seconds": CHECKPOINT_INTERVAL_SECONDS,
            "linger_seconds": LINGER_SECONDS,
            "backlog_linger_seconds": BACKLOG_LINGER_SECONDS,
        }
        values.update(settings)
        env = self.base_env()
        env.update({f"STREAM_WORKER_{key.upper()}": str(value) for key, value in values.items()})
        worker = Worker(name, env, self.tmp_path / f"{name}-{suffix}.log")
        self.workers.append(worker)
        return worker.start() if start else worker

    def tails(self) -> str:
        return "\n".join(worker.tail() for worker in self.workers)

    def close(self) -> None:
        for producer in self.producers:
            producer.kill()
        for worker in self.workers:
            worker.kill()

    # -- what arrived -----------------------------------------------------------------------------

    def received(self, tracking_id: str) -> Counter[str]:
        """Every eventId the emulator accepted for the tracker, with how often."""
        return Counter(str(event_id) for event_id in self.emulator.event_ids(tracking_id))

    def wait_delivered(
        self,
        tracking_id: str,
        expected: frozenset[str],
        *,
        timeout: float = DELIVERY_TIMEOUT,
        alive: Iterable[Worker] = (),
    ) -> Counter[str]:
        """Poll until every expected eventId has arrived; the received Counter. Fails early, with the
        logs, when one of the ``alive`` workers exits."""
        watch = list(alive)
        last: Counter[str] = Counter()

        def done() -> Counter[str] | None:
            nonlocal last
            for worker in watch:
                worker.check_alive()
            last = self.received(tracking_id)
            return last if expected <= last.keys() else None

        def state() -> str:
            missing = len(expected - last.keys())
            return f"{len(expected)} events ({missing} missing)\n{self.tails()}"

        return wait_until(done, timeout=timeout, what=state, interval=1.0)

    def leases(self, application: str) -> dict[str, Lease]:
        return scan_leases(self.dynamodb, application)
