"""Throughput of the record processor through the full MultiLang path, against a baseline.

What runs (every process separate, as in production):

- the Personalize emulator (``devstack.personalize``), one process, its tracker without a quota;
- ``stream-worker process``, the real KCL child, driven by
  :class:`stream_worker.multilang_driver.MultiLangDriver` the way the MultiLangDaemon drives it:
  ``initialize``, then ``processRecords`` batches of ``--batch-size`` records (KCL's maxRecords; the
  records are all there at once: a backlog), answering its checkpoints, then ``shardEnded`` (which
  drains and checkpoints SHARD_END);
- this process: it generates the capture, pre-encodes the batches (so the daemon's own JSON and
  base64 work is not charged to the measured run), feeds them, and samples CPU and emulator stats.

The capture is made with :func:`clickstream.generator.generate_events` + :func:`pack_records`
(mostly one event per record, ``--multi-event-fraction`` of records several), after a warm-up of
``--warmup-hours`` of event time, so that any prefix of it has the steady-state mix of sessions.

Then the baselines, ``bench/baseline_processor.py`` (one synchronous put_events per event, the way
the public AWS sample does it), run through the same driver on a prefix of the same capture, each
for at most ``--baseline-seconds``: ``same-events`` normalizes with the worker's Normalizer first,
so it sends exactly the worker's events (repeated rounds collapsed) one per call; ``sample`` is
faithful to the AWS sample: one call per raw interaction event, minimal mapping, no collapsing.
Both ratios are printed (``--baselines`` picks which run).

Printed: records/s, events/s, CPU microseconds per input record in the worker process (from
/proc/<pid>/stat: utime+stime, all threads), mean events per PutEvents call against the best the
capture allows (sum over (userId, sessionId) groups of events / sum of ceil(events / 10)), the
emulator's own ceiling, and a "target met" line per target. Exits 0 whatever the figures.

    .venv/bin/python bench/processor_throughput.py              # defaults: ~2-3 minutes on 2 cores
    .venv/bin/python bench/processor_throughput.py --records 500000 --batch-size 10000
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import itertools
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench/ is the script's own folder, so first on sys.path: the baseline lives next to this file.
from baseline_processor import MODES as BASELINE_MODES
from baseline_processor import sample_event

from clickstream.capture import CaptureRecord
from clickstream.generator import (
    DEFAULT_CONFIG,
    SHORT_SESSIONS,
    GeneratorConfig,
    generate_catalog,
    generate_events,
    pack_records,
)
from clickstream.generator.records import event_millis
from clickstream.mapping import EventMapping
from clickstream.normalize import Normalizer, Source
from clickstream.outcomes import Drop
from devstack.personalize.client import EmulatorProcess, latency_fault, start_emulator
from stream_worker.multilang_driver import MultiLangDriver

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
TRACKER = "bench-tracker"
SHARD_ID = "shardId-000000000000"
CLK_TCK = os.sysconf("SC_CLK_TCK")
FIXED_START = 1_736_164_800.0
#: Configs of the generator by name.
CONFIGS = {"default": DEFAULT_CONFIG, "short": SHORT_SESSIONS}


# --------------------------------------------------------------------------------------- capture


def build_capture(
    n_records: int,
    *,
    seed: int,
    players: int,
    games: int,
    sessions_per_hour: float | None,
    config_name: str,
    multi_event_fraction: float,
    gzip_fraction: float,
    warmup_hours: float,
    start: float | None = None,
    config: GeneratorConfig | None = None,
) -> list[CaptureRecord]:
    """``n_records`` records of a generated stream, from ``warmup_hours`` of event time on
    (``config`` overrides ``config_name``)."""
    config = config or CONFIGS[config_name]
    if sessions_per_hour is not None:
        config = config.with_(sessions_per_hour=sessions_per_hour)
    catalog = generate_catalog(games, seed)
    # A fixed start keeps the capture the same from run to run (2025-01-06T12:00Z; normalization
    # accepts any date after 2000 that is not after the record's arrival).
    begin = start if start is not None else FIXED_START
    warm_until = round((begin + warmup_hours * 3600) * 1000)
    events = generate_events(catalog, n_players=players, seed=seed, start=begin, n_sessions=10**9, config=config)
    steady: Iterator[dict[str, Any]] = itertools.dropwhile(lambda e: (event_millis(e) or 0) < warm_until, events)
    records = pack_records(steady, multi_event_fraction=multi_event_fraction, gzip_fraction=gzip_fraction, seed=seed)
    return list(itertools.islice(records, n_records))


@dataclass
class CaptureProfile:
    records: int = 0
    events: int = 0
    deliverable: int = 0
    groups: int = 0
    best_calls: int = 0
    multi_event_records: int = 0
    #: Events the sample-faithful baseline sends (raw interaction events with a session and an item).
    sample_events: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def best_mean(self) -> float:
        return self.deliverable / self.best_calls if self.best_calls else 0.0


def profile_capture(records: Sequence[CaptureRecord], shard_id: str = SHARD_ID) -> CaptureProfile:
    """Normalize the capture as the worker does; count what it can deliver and the best batching."""
    import gzip

    mapping = EventMapping.default()
    normalizer = Normalizer(mapping)
    profile = CaptureProfile(records=len(records))
    groups: Counter[tuple[str | None, str]] = Counter()
    for record in records:
        data = record.data
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        lines = data.split(b"\n")
        if sum(1 for line in lines if line.strip()) > 1:
            profile.multi_event_records += 1
        for position, line in enumerate(lines):
            if not line.strip():
                continue
            profile.events += 1
            try:
                event = json.loads(line)
            except ValueError:
                profile.dropped["malformed_json"] += 1
                continue
            if isinstance(event, dict):
                with contextlib.suppress(ValueError, OverflowError):
                    profile.sample_events += sample_event(event, mapping, record.arrival_time) is not None
            source = Source(shard_id, str(record.sequence_number), 0, position, record.arrival_time)
            outcome = normalizer.normalize(event, source)
            if isinstance(outcome, Drop):
                profile.dropped[outcome.reason.value] += 1
                continue
            profile.deliverable += 1
            groups[(outcome.user_id, outcome.session_id)] += 1
    profile.groups = len(groups)
    profile.best_calls = sum(math.ceil(n / 10) for n in groups.values())
    return profile


# ----------------------------------------------------------------------------------- the driver


class _Encoded(dict):  # type: ignore[type-arg]
    """A processRecords message whose JSON line was prepared ahead of time."""

    line: bytes
    count: int


def encode_batches(records: Sequence[CaptureRecord], batch_size: int, behind_ms: int = 3_600_000) -> list[_Encoded]:
    """processRecords messages, exactly as the daemon writes them, one JSON line each;
    ``behind_ms`` is the millisBehindLatest they report (default 1 h: a backlog)."""
    batches = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        message = {
            "action": "processRecords",
            "records": [
                {
                    "action": "record",
                    "data": base64.b64encode(r.data).decode("ascii"),
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "subSequenceNumber": 0,
                    "approximateArrivalTimestamp": round((r.arrival_time or time.time()) * 1000),
                }
                for r in chunk
            ],
            "millisBehindLatest": behind_ms,
        }
        encoded = _Encoded(action="processRecords")
        encoded.line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        encoded.count = len(chunk)
        batches.append(encoded)
    return batches


class PreEncodedDriver(MultiLangDriver):
    """MultiLangDriver that writes pre-encoded processRecords lines (same bytes, less work here)."""

    def _send(self, message: dict[str, Any]) -> None:
        line = getattr(message, "line", None)
        if line is None:
            super()._send(message)
            return
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(line)
        stdin.flush()

    def process_encoded(self, message: _Encoded) -> None:
        self._exchange(message)


# ------------------------------------------------------------------------------------ measuring


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (all its threads), seconds; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def self_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return float(total - idle), float(total)


@dataclass
class Sample:
    at: float
    worker_cpu: float | None
    emulator_cpu: float | None
    events: int
    calls_ok: int
    calls_throttled: int
    #: (busy, total) jiffies of the whole machine, and this process's CPU seconds.
    machine: tuple[float, float] = (0.0, 0.0)
    own_cpu: float = 0.0


def others_between(a: Sample, b: Sample) -> float:
    """CPU used between two samples by processes other than the worker, the emulator and this one,
    in cores (1.0 = one whole core)."""
    if b.at <= a.at or b.machine[1] <= a.machine[1]:
        return 0.0
    busy_cores = (b.machine[0] - a.machine[0]) / (b.machine[1] - a.machine[1]) * (os.cpu_count() or 1)
    ours = ((b.worker_cpu or 0.0) - (a.worker_cpu or 0.0)) + ((b.emulator_cpu or 0.0) - (a.emulator_cpu or 0.0))
    ours += b.own_cpu - a.own_cpu
    return max(0.0, busy_cores - ours / (b.at - a.at))


class Sampler:
    """Samples CPU of the worker and the emulator, and the emulator's stats, every ``interval``."""

    def __init__(self, emulator: EmulatorProcess, worker_pid: int | None, interval: float = 0.5) -> None:
        self.emulator = emulator
        self.worker_pid = worker_pid
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def take(self) -> Sample:
        stats = emulator_stats(self.emulator)
        return Sample(
            time.monotonic(),
            proc_cpu_seconds(self.worker_pid) if self.worker_pid else None,
            proc_cpu_seconds(self.emulator.process.pid),
            stats["events"],
            stats["ok"],
            stats["throttled"],
            machine_busy(),
            self_cpu_seconds(),
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self.samples.append(self.take())

    def __enter__(self) -> Sampler:
        self.samples.append(self.take())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(Exception):
            self.samples.append(self.take())


def emulator_stats(emulator: EmulatorProcess) -> dict[str, int]:
    snapshot = emulator.stats()
    calls = snapshot["calls"].get("PutEvents", {})
    return {
        "events": int(snapshot["eventsByTracker"].get(TRACKER, 0)),
        "distinct": int(snapshot["distinctEventIds"]),
        "ok": int(calls.get("ok", 0)),
        "throttled": int(calls.get("throttled", 0)),
        "other_errors": int(sum(v for k, v in calls.items() if k not in ("ok", "throttled"))),
    }


def busiest(samples: Sequence[Sample], attr: str) -> float:
    """The highest CPU share (1.0 = one full core) of ``attr`` between consecutive samples."""
    best = 0.0
    for a, b in itertools.pairwise(samples):
        x, y = getattr(a, attr), getattr(b, attr)
        if x is None or y is None or b.at <= a.at:
            continue
        best = max(best, (y - x) / (b.at - a.at))
    return best


# ---------------------------------------------------------------------------- the emulator probe


def _probe_body(n_events: int, thread: int) -> bytes:
    now = time.time()
    events = [
        {
            "eventId": f"probe-{thread}-{i}",
            "eventType": "click",
            "itemId": f"g-{i:05d}",
            "sentAt": now,
            "properties": '{"platform":"ios","country":"GB","lobbySection":"top","position":3}',
        }
        for i in range(n_events)
    ]
    body = {"trackingId": TRACKER, "sessionId": f"probe-session-{thread}", "userId": "p-probe", "eventList": events}
    return json.dumps(body).encode()


def _probe_worker(port: int, body: bytes, stop_at: float, counts: list[int], index: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    done = 0
    try:
        while time.monotonic() < stop_at:
            conn.request("POST", "/events", body, headers)
            response = conn.getresponse()
            response.read()
            done += 1
    finally:
        counts[index] = done
        conn.close()


def probe_main(port: int, seconds: float, threads: int, n_events: int) -> None:
    """The probe's load generator (a child process): ``threads`` keep-alive connections, flat out."""
    stop_at = time.monotonic() + seconds
    counts = [0] * threads
    workers = [
        threading.Thread(target=_probe_worker, args=(port, _probe_body(n_events, i), stop_at, counts, i))
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(json.dumps({"calls": sum(counts)}))


@dataclass
class ProbeResult:
    calls_per_second: float
    events_per_call: int
    emulator_cpu_share: float
    emulator_cpu_us_per_call: float
    uvloop: bool = False
    httptools: bool = False

    @property
    def ceiling(self) -> float:
        """Calls/s one emulator process could serve with a whole core to itself."""
        return 1e6 / self.emulator_cpu_us_per_call if self.emulator_cpu_us_per_call else 0.0


def probe_emulator(
    emulator: EmulatorProcess, seconds: float, processes: int, threads: int, n_events: int
) -> ProbeResult:
    """Drive the emulator flat out with cheap raw-HTTP clients; measure calls/s and its CPU per call."""
    before = emulator_stats(emulator)["ok"]
    cpu0 = proc_cpu_seconds(emulator.process.pid) or 0.0
    t0 = time.monotonic()
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--_probe", str(emulator.port), str(seconds), str(threads), str(n_events)],
            stdout=subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    for child in children:
        child.communicate(timeout=seconds + 60)
    elapsed = time.monotonic() - t0
    cpu1 = proc_cpu_seconds(emulator.process.pid) or 0.0
    calls = emulator_stats(emulator)["ok"] - before
    emulator.reset(trackers=True)
    try:
        maps = Path(f"/proc/{emulator.process.pid}/maps").read_text()
    except OSError:
        maps = ""
    return ProbeResult(
        uvloop="uvloop" in maps,
        httptools="httptools" in maps,
        calls_per_second=calls / elapsed,
        events_per_call=n_events,
        emulator_cpu_share=(cpu1 - cpu0) / elapsed,
        emulator_cpu_us_per_call=(cpu1 - cpu0) / calls * 1e6 if calls else 0.0,
    )


# -------------------------------------------------------------------------------------- the runs


def aws_env(emulator: EmulatorProcess, extra: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: this one without stray AWS/worker settings, plus the emulator."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "STREAM_WORKER_", "PROMETHEUS_MULTIPROC_DIR", "BASELINE_"))
    }
    env.update(
        {
            "AWS_ENDPOINT_URL_PERSONALIZE_EVENTS": emulator.url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "STREAM_WORKER_TRACKING_ID": TRACKER,
        }
    )
    env.update(extra)
    return env


@dataclass
class RunResult:
    name: str
    records: int
    seconds: float
    delivered: int
    distinct: int
    calls_ok: int
    calls_throttled: int
    other_errors: int
    child_cpu: float
    child_cpu_total: float
    driver_cpu: float
    emulator_cpu: float
    machine_busy_share: float
    checkpoints: int
    exit_status: int | None
    samples: list[Sample]
    cut_short: bool = False
    expected: int | None = None

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def events_per_second(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_record(self) -> float:
        return self.child_cpu / self.records * 1e6 if self.records else 0.0

    @property
    def mean_events_per_call(self) -> float:
        return self.delivered / self.calls_ok if self.calls_ok else 0.0

    @property
    def others_share(self) -> float:
        """CPU used by processes other than the worker, the emulator and this driver (1.0 = a core)."""
        if not self.seconds:
            return 0.0
        ours = (self.child_cpu + self.emulator_cpu + self.driver_cpu) / self.seconds
        return max(0.0, self.machine_busy_share * (os.cpu_count() or 1) - ours)


def run_child(
    name: str,
    command: Sequence[str],
    env: Mapping[str, str],
    emulator: EmulatorProcess,
    batches: Sequence[_Encoded],
    *,
    log_path: Path,
    time_budget: float | None = None,
    answer_timeout: float = 600.0,
    sample_interval: float = 0.5,
    py_spy: tuple[str, Path] | None = None,
    latency_ms: float = 0.0,
) -> RunResult:
    """Run one KCL child through initialize, the batches (or as many as ``time_budget`` allows) and
    shardEnded; measure from the first processRecords to the end of shardEnded."""
    emulator.reset(trackers=True)
    if latency_ms > 0:
        emulator.set_faults([latency_fault(latency_ms, operation="PutEvents")])
    reaped0 = _reaped_children_cpu()
    with log_path.open("wb") as log:
        driver = PreEncodedDriver(command, env=env, timeout=answer_timeout, stderr=log)
        driver.start()
        pid = driver.process.pid
        cut_short = False
        sent = 0
        profiler = None
        try:
            driver.initialize(SHARD_ID)
            if py_spy is not None:
                # A sampling profiler attached from outside (its own CPU is not the child's).
                executable, output = py_spy
                profiler = subprocess.Popen(
                    [
                        executable,
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        "200",
                        "--nonblocking",
                        "--gil",
                        "--threads",
                        "--format",
                        "raw",
                        "--output",
                        str(output),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)
            with Sampler(emulator, pid, sample_interval) as sampler:
                cpu0 = proc_cpu_seconds(pid) or 0.0
                emu0 = proc_cpu_seconds(emulator.process.pid) or 0.0
                self0 = self_cpu_seconds()
                busy0 = machine_busy()
                t0 = time.monotonic()
                for batch in batches:
                    driver.process_encoded(batch)
                    sent += batch.count
                    if time_budget is not None and time.monotonic() - t0 > time_budget:
                        cut_short = sent < sum(b.count for b in batches)
                        break
                driver.shard_ended()
                seconds = time.monotonic() - t0
                cpu1 = proc_cpu_seconds(pid) or cpu0
                emu1 = proc_cpu_seconds(emulator.process.pid) or emu0
                self1 = self_cpu_seconds()
                busy1 = machine_busy()
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                try:
                    profiler.wait(30)
                except subprocess.TimeoutExpired:
                    profiler.kill()
                    profiler.wait()
            status = driver.close(timeout=30)
    total_cpu = _reaped_children_cpu() - reaped0
    stats = emulator_stats(emulator)
    return RunResult(
        name=name,
        records=sent,
        seconds=seconds,
        delivered=stats["events"],
        distinct=stats["distinct"],
        calls_ok=stats["ok"],
        calls_throttled=stats["throttled"],
        other_errors=stats["other_errors"],
        child_cpu=cpu1 - cpu0,
        child_cpu_total=total_cpu,
        driver_cpu=self1 - self0,
        emulator_cpu=emu1 - emu0,
        machine_busy_share=(busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1]),
        checkpoints=len(driver.checkpoints),
        exit_status=status,
        samples=sampler.samples,
        cut_short=cut_short,
    )


def _reaped_children_cpu() -> float:
    """CPU seconds of every child reaped so far (RUSAGE_CHILDREN): the difference around one run is
    that child's whole life, start-up included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------------------------- reporting


def code_version() -> str:
    """The commit measured, and which product files differ from it in the work tree."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "stream_worker", "clickstream", "devstack"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git work tree)"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"commit {head}" + (f" + work-tree changes in {', '.join(changed)}" if changed else "")


def yes_no(ok: bool) -> str:
    return "yes" if ok else "NO"


def print_table(rows: Sequence[tuple[str, ...]], headers: tuple[str, ...]) -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    line = render(headers)
    print(line)
    print("-" * len(line))
    for row in rows:
        print(render(row))


def parse_env_pairs(pairs: Sequence[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--worker-env wants KEY=VALUE, not {pair!r}")
        env[key] = value
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--records", type=int, default=300_000, help="records in the capture (default 300000)")
    parser.add_argument(
        "--batch-size", type=int, default=10_000, help="records per processRecords (KCL maxRecords; default 10000)"
    )
    parser.add_argument(
        "--multi-event-fraction", type=float, default=0.1, help="records holding several events (default 0.1)"
    )
    parser.add_argument("--gzip-fraction", type=float, default=0.0, help="gzip-compressed records (default 0)")
    parser.add_argument(
        "--config", choices=sorted(CONFIGS), default="default", help="generator config (default: default)"
    )
    parser.add_argument(
        "--sessions-per-hour", type=float, default=None, help="session starts per hour (default: the config's, 720)"
    )
    parser.add_argument("--players", type=int, default=20_000)
    parser.add_argument("--games", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--warmup-hours", type=float, default=1.0, help="event time skipped at the start of the stream (default 1)"
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the worker (repeatable), e.g. STREAM_WORKER_MAX_CONCURRENCY=16",
    )
    parser.add_argument(
        "--no-multiproc-metrics", action="store_true", help="do not set PROMETHEUS_MULTIPROC_DIR (production sets it)"
    )
    parser.add_argument(
        "--worker-runs", type=int, default=3, help="repeat the worker run; the median is judged (default 3)"
    )
    parser.add_argument(
        "--baseline-records", type=int, default=100_000, help="prefix of the capture the baseline gets (default 100000)"
    )
    parser.add_argument(
        "--baseline-seconds", type=float, default=60.0, help="time budget of the baseline (default 60 s)"
    )
    parser.add_argument(
        "--baseline-batch-size",
        type=int,
        default=1_000,
        help="records per processRecords for the baseline (default 1000)",
    )
    parser.add_argument(
        "--baselines",
        default=",".join(BASELINE_MODES),
        help="baseline variants to run, comma-separated: same-events (normalized like the worker, same events "
        "one per call), sample (one call per raw interaction event, as the AWS sample); default both",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--behind-ms",
        type=int,
        default=3_600_000,
        help="millisBehindLatest of every processRecords (default 1 h: the worker knows it is in a backlog)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="emulator answers PutEvents this much later (a network/service latency; default 0)",
    )
    parser.add_argument(
        "--probe-seconds", type=float, default=5.0, help="emulator probe duration, 0 to skip (default 5)"
    )
    parser.add_argument("--probe-processes", type=int, default=2)
    parser.add_argument("--probe-threads", type=int, default=8)
    parser.add_argument(
        "--py-spy",
        metavar="OUTPUT",
        type=Path,
        help="profile the worker child with py-spy (on PATH) into OUTPUT (collapsed stacks); disturbs that run",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, dead letters)")
    parser.add_argument("--_probe", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._probe:
        port, seconds, threads, n_events = args._probe
        probe_main(int(port), float(seconds), int(threads), int(n_events))
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
        f"python {sys.version.split()[0]}"
    )
    print(f"code: {code_version()}")
    print(f"work folder: {workdir}")
    try:
        return _run(args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(args: argparse.Namespace, workdir: Path) -> int:
    t = time.monotonic()
    records = build_capture(
        args.records,
        seed=args.seed,
        players=args.players,
        games=args.games,
        sessions_per_hour=args.sessions_per_hour,
        config_name=args.config,
        multi_event_fraction=args.multi_event_fraction,
        gzip_fraction=args.gzip_fraction,
        warmup_hours=args.warmup_hours,
    )
    profile = profile_capture(records)
    prefix = records[: args.baseline_records]
    prefix_profile = profile_capture(prefix)
    batches = encode_batches(records, args.batch_size, args.behind_ms)
    print(f"capture built in {time.monotonic() - t:.1f}s")
    print()
    print("== capture ==")
    print_table(
        [
            ("records", f"{profile.records:,}", f"{prefix_profile.records:,}"),
            ("multi-event records", f"{profile.multi_event_records:,}", f"{prefix_profile.multi_event_records:,}"),
            ("raw events", f"{profile.events:,}", f"{prefix_profile.events:,}"),
            ("deliverable events (after normalization)", f"{profile.deliverable:,}", f"{prefix_profile.deliverable:,}"),
            (
                "raw interaction events (what the 'sample' baseline sends)",
                f"{profile.sample_events:,}",
                f"{prefix_profile.sample_events:,}",
            ),
            (
                "deliverable events per record",
                f"{profile.deliverable / profile.records:.4f}",
                f"{prefix_profile.deliverable / max(1, prefix_profile.records):.4f}",
            ),
            ("(userId, sessionId) groups", f"{profile.groups:,}", f"{prefix_profile.groups:,}"),
            ("best calls (sum of ceil(n/10))", f"{profile.best_calls:,}", f"{prefix_profile.best_calls:,}"),
            ("best mean events per call", f"{profile.best_mean:.2f}", f"{prefix_profile.best_mean:.2f}"),
        ],
        ("", "whole capture", "baseline prefix"),
    )
    print("dropped by normalization:", dict(profile.dropped.most_common()))
    print()

    emulator = start_emulator(trackers=[(TRACKER, None)], default_quota=0, log_level="warning")
    try:
        probe = None
        if args.probe_seconds > 0:
            n_events = max(1, round(profile.best_mean))
            probe = probe_emulator(emulator, args.probe_seconds, args.probe_processes, args.probe_threads, n_events)
            print("== emulator capacity probe (raw HTTP clients, keep-alive) ==")
            print(
                f"{probe.calls_per_second:,.0f} PutEvents calls/s of {probe.events_per_call} events "
                f"({args.probe_processes} processes x {args.probe_threads} connections); emulator CPU "
                f"{probe.emulator_cpu_share:.0%} of a core, {probe.emulator_cpu_us_per_call:.0f} us per call "
                f"-> ceiling ~{probe.ceiling:,.0f} calls/s on a whole core; uvloop {'on' if probe.uvloop else 'off'}, "
                f"httptools {'on' if probe.httptools else 'off'} (uvicorn picks them when installed)"
            )
            print()

        worker_extra = {
            "STREAM_WORKER_DEAD_LETTER_URL": str(workdir / "dead-letters"),
            "STREAM_WORKER_CHECKPOINT_INTERVAL_SECONDS": "5",
        }
        if not args.no_multiproc_metrics:
            prom = workdir / "prometheus"
            prom.mkdir(exist_ok=True)
            worker_extra["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
        worker_extra.update(parse_env_pairs(args.worker_env))
        worker_env = aws_env(emulator, worker_extra)
        shown = {k: v for k, v in sorted(worker_extra.items()) if k.startswith("STREAM_WORKER_") and "URL" not in k}
        print(
            f"worker settings: {shown or '(defaults)'}; batch {args.batch_size} records; "
            f"multiprocess metrics {'off' if args.no_multiproc_metrics else 'on'}; "
            f"emulator PutEvents latency {args.latency_ms:g} ms; "
            f"millisBehindLatest {args.behind_ms:,} ms "
            + (
                "(behind: past the worker's backlog threshold, 10 s by default, its backlog linger applies)"
                if args.behind_ms > 10_000
                else "(caught up, unless STREAM_WORKER_BACKLOG_THRESHOLD_SECONDS is lower: the normal linger applies)"
            )
        )

        worker_runs = []
        for run in range(args.worker_runs):
            result = run_child(
                "stream-worker",
                [str(VENV_BIN / "stream-worker"), "process"],
                worker_env,
                emulator,
                batches,
                log_path=workdir / f"worker-{run}.log",
                py_spy=_py_spy(args.py_spy, run),
                latency_ms=args.latency_ms,
            )
            result.expected = profile.deliverable
            worker_runs.append(result)
            print(
                f"  worker run {run + 1}: {result.records_per_second:,.0f} records/s, "
                f"{result.cpu_us_per_record:.1f} us CPU/record, "
                f"{result.mean_events_per_call:.2f} events/call, {result.seconds:.1f}s, exit {result.exit_status}"
            )
        baselines: dict[str, RunResult] = {}
        modes = [] if args.skip_baseline else [m.strip() for m in args.baselines.split(",") if m.strip()]
        for mode in modes:
            if mode not in BASELINE_MODES:
                raise SystemExit(f"--baselines: unknown variant {mode!r} (known: {', '.join(BASELINE_MODES)})")
        prefix_batches = encode_batches(prefix, args.baseline_batch_size, args.behind_ms) if modes else []
        for mode in modes:
            baseline_env = aws_env(emulator, {"BASELINE_CHECKPOINT_INTERVAL_SECONDS": "5", "BASELINE_MODE": mode})
            baseline = run_child(
                f"baseline {mode}",
                [sys.executable, str(BENCH_DIR / "baseline_processor.py")],
                baseline_env,
                emulator,
                prefix_batches,
                log_path=workdir / f"baseline-{mode}.log",
                time_budget=args.baseline_seconds,
                latency_ms=args.latency_ms,
            )
            baselines[mode] = baseline
            print(
                f"  baseline {mode}: {baseline.records:,} records in {baseline.seconds:.1f}s, "
                f"{baseline.records_per_second:,.0f} records/s, {baseline.cpu_us_per_record:.1f} us CPU/record"
                f"{' (time budget reached)' if baseline.cut_short else ''}"
            )
    finally:
        emulator.close()

    report(args, profile, prefix_profile, probe, worker_runs, baselines)
    return 0


def report(
    args: argparse.Namespace,
    profile: CaptureProfile,
    prefix_profile: CaptureProfile,
    probe: ProbeResult | None,
    runs: Sequence[RunResult],
    baselines: Mapping[str, RunResult],
) -> None:
    print()
    print("== results ==")
    rows = []
    for i, r in enumerate(runs):
        rows.append(_row(f"worker run {i + 1}", r))
    for mode, baseline in baselines.items():
        rows.append(_row(f"baseline {mode} (prefix" + (", cut short" if baseline.cut_short else "") + ")", baseline))
    print_table(
        rows,
        (
            "",
            "records",
            "seconds",
            "records/s",
            "events/s",
            "calls/s",
            "events/call",
            "us CPU/rec",
            "worker CPU",
            "emulator CPU",
            "driver CPU",
            "machine busy",
            "others",
            "peak emu",
        ),
    )
    print("(CPU columns: share of one core over the run; 'us CPU/rec' counts the worker child only, from the")
    print(" first processRecords to the end of shardEnded; 'machine busy' is all cores, 100% = every core busy;")
    print(" 'others' is what other processes on the machine used meanwhile, in cores: a disturbed run shows here)")
    for i, r in enumerate(runs):
        complete = (
            "every event exactly once"
            if r.delivered == r.distinct == profile.deliverable
            else (f"delivered {r.delivered:,} ({r.distinct:,} distinct) of {profile.deliverable:,} expected")
        )
        print(
            f"worker run {i + 1}: {complete}; throttled {r.calls_throttled}, other errors {r.other_errors}; "
            f"{r.checkpoints} checkpoints; whole-life CPU incl. start-up {r.child_cpu_total:.2f}s "
            f"({r.child_cpu_total / r.records * 1e6:.1f} us/record)"
        )
    if not runs:
        return
    pick = sorted(runs, key=lambda r: r.records_per_second)[len(runs) // 2]
    if len(runs) > 1:

        def spread(values: list[float], fmt: str) -> str:
            return f"{format(min(values), fmt)} .. {format(max(values), fmt)}"

        print(
            f"spread over {len(runs)} runs: records/s {spread([r.records_per_second for r in runs], ',.0f')}; "
            f"events/call {spread([r.mean_events_per_call for r in runs], '.2f')}; "
            f"us CPU/record {spread([r.cpu_us_per_record for r in runs], '.1f')}; "
            f"the targets below judge the median run by records/s (run {runs.index(pick) + 1})"
        )
    print()
    print("== targets ==")
    mean_ratio = pick.mean_events_per_call / profile.best_mean if profile.best_mean else 0.0
    print(
        f"mean events per PutEvents call: {pick.mean_events_per_call:.2f} "
        f"vs best the capture allows {profile.best_mean:.2f} "
        f"= {mean_ratio:.0%} (target >= 90%) -> target met: {yes_no(mean_ratio >= 0.9)}"
    )
    described = {
        "same-events": "normalized with the worker's Normalizer, so the same events (rounds collapsed), one per call",
        "sample": "as the public AWS sample: one call per raw interaction event, no collapsing",
    }
    for mode, baseline in baselines.items():
        if not baseline.records_per_second:
            continue
        ratio = pick.records_per_second / baseline.records_per_second
        issue = " [the issue's baseline: it is the AWS sample's behaviour]" if mode == "sample" else ""
        print(
            f"records/s vs baseline {mode!r} ({described[mode]}){issue}: worker {pick.records_per_second:,.0f} "
            f"vs {baseline.records_per_second:,.0f} = {ratio:.1f}x (target >= 8x) -> target met: {yes_no(ratio >= 8)}"
        )
        per_record = prefix_profile.sample_events if mode == "sample" else prefix_profile.deliverable
        print(
            f"  (ran on the first {baseline.records:,} records"
            f"{', stopped by its ' + format(args.baseline_seconds, 'g') + ' s budget' if baseline.cut_short else ''}; "
            f"events sent per record: {baseline.delivered / max(1, baseline.records):.4f} "
            f"(expected for the whole prefix {per_record / max(1, prefix_profile.records):.4f}); "
            f"{baseline.cpu_us_per_record:.1f} us CPU/record; {baseline.mean_events_per_call:.2f} events/call)"
        )
    if not baselines:
        print("records/s vs baseline: not measured (--skip-baseline) -> target met: unknown")
    print(
        f"CPU per input record in the worker process: {pick.cpu_us_per_record:.1f} us (target <= 100 us) "
        f"-> target met: {yes_no(pick.cpu_us_per_record <= 100)}"
    )
    if probe is not None:
        calls_per_s = pick.calls_ok / pick.seconds if pick.seconds else 0.0
        print()
        print(
            f"emulator: the worker's run used {calls_per_s:,.0f} calls/s with the emulator at "
            f"{pick.emulator_cpu / pick.seconds:.0%} of a core on average "
            f"(peak {busiest(pick.samples, 'emulator_cpu'):.0%}); "
            f"its probed ceiling is ~{probe.ceiling:,.0f} calls/s on a whole core "
            f"({probe.calls_per_second:,.0f} calls/s reached by the probe)"
        )


def _py_spy(output: Path | None, run: int) -> tuple[str, Path] | None:
    if output is None:
        return None
    executable = shutil.which("py-spy")
    if executable is None:
        print("py-spy not found on PATH (pip install py-spy); not profiling")
        return None
    return executable, output if run == 0 else output.with_name(f"{output.stem}-{run + 1}{output.suffix}")


def _row(name: str, r: RunResult) -> tuple[str, ...]:
    return (
        name,
        f"{r.records:,}",
        f"{r.seconds:.1f}",
        f"{r.records_per_second:,.0f}",
        f"{r.events_per_second:,.0f}",
        f"{r.calls_ok / r.seconds:,.0f}" if r.seconds else "-",
        f"{r.mean_events_per_call:.2f}",
        f"{r.cpu_us_per_record:.1f}",
        f"{r.child_cpu / r.seconds:.0%}" if r.seconds else "-",
        f"{r.emulator_cpu / r.seconds:.0%}" if r.seconds else "-",
        f"{r.driver_cpu / r.seconds:.0%}" if r.seconds else "-",
        f"{r.machine_busy_share:.0%}",
        f"{r.others_share:.0%}",
        f"{busiest(r.samples, 'emulator_cpu'):.0%}",
    )


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so the emulator and the worker child are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        main()
    except KeyboardInterrupt:
        pass
    except Exception:  # a benchmark reports; it does not fail (the error is printed, the figures are missing)
        traceback.print_exc()
        print("benchmark did not complete: see the error above; every target met: unknown")
    sys.exit(0)
