"""``stream-worker run``: the container entrypoint. Starts the KCL MultiLangDaemon and watches over it.

- Renders the daemon's properties (:mod:`stream_worker.kcl_properties`) and a logback configuration
  into a run folder, and starts ``java ... MultiLangDaemon`` in its own process group, so a terminal's
  Ctrl-C reaches the supervisor alone. The daemon starts one ``stream-worker process`` child per lease.
- Re-emits the daemon's output as JSON log lines on stderr: KCL's own lines with their level, the
  children's lines (KCL echoes their stderr) as the children wrote them. KCL also logs every child line
  at ERROR as "Received error line from subprocess"; those duplicates are dropped. A line longer than
  :data:`MAX_LINE_BYTES` is cut there and marked (the rest of it is read and dropped).
- Serves ``/metrics`` (the children's metrics from ``PROMETHEUS_MULTIPROC_DIR``, emptied at start,
  plus the supervisor's own), ``/healthz`` and ``/readyz`` on ``metrics_address:metrics_port``.
- On SIGTERM or SIGINT: sends SIGTERM to the daemon, whose shutdown hook runs KCL's graceful shutdown
  (every shard drains and checkpoints) for up to ``shutdown_grace_millis``; SIGKILL after that plus
  :data:`KILL_MARGIN_SECONDS`, or at once on a second signal. The handlers are installed first thing
  in :meth:`Supervisor.run` (as a container's PID 1, a signal without a handler is not delivered at
  all); a signal that comes before the daemon is started stops the run without starting it.
- Is a child subreaper (Linux), so that what the daemon's children leave behind when they or the daemon
  end is re-parented to it (as to PID 1 in the container), and reaps it: no zombies.

Exit status: 0 after a graceful shutdown (the daemon exited 0, or 143 once KCL confirmed its graceful
shutdown), or when a signal came before the daemon was started; 1 when the daemon died on its own, had
to be killed, was killed by a signal (say the OOM killer) or ended with another status before KCL
confirmed its graceful shutdown, or KCL reported that the shutdown failed; 2 (from the CLI) for a
configuration error.

Health: ``/healthz`` is 200 while the daemon process is alive. ``/readyz`` is 200 while the daemon is
alive, not shutting down, KCL has logged that its worker finished initializing (it then holds or seeks
leases), and no shard has been inside ``process_records`` for longer than ``stuck_after_seconds``
(the children publish ``stream_worker_process_records_since_timestamp_seconds``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from stream_worker import kcl_properties
from stream_worker.errors import FatalConfigurationError
from stream_worker.procfs import (
    ENDED_STATES,
    PROC_MOUNTED,
    ProcUnreadableError,
    proc_stat,
    process_identity,
)
from stream_worker.settings import ENV_PREFIX, WorkerSettings

log = logging.getLogger(__name__)

EXIT_GRACEFUL: Final = 0
EXIT_DAEMON_FAILED: Final = 1
#: The JVM's exit status after it ran its shutdown hooks (KCL's graceful shutdown) on SIGTERM.
DAEMON_EXIT_ON_SIGTERM: Final = 128 + signal.SIGTERM
#: How long after KCL's own grace period the daemon gets before SIGKILL.
KILL_MARGIN_SECONDS: Final = 10.0
#: How long leftover children of a dead daemon get between SIGTERM and SIGKILL.
LEFTOVER_GRACE_SECONDS: Final = 5.0
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
#: The gauge the shard children set while inside process_records (0 when not).
PROCESSING_SINCE_METRIC: Final = "stream_worker_process_records_since_timestamp_seconds"

#: What KCL 3.1.3 logs at its milestones (Scheduler.run, MultiLangDaemon's shutdown hook).
KCL_INITIALIZED: Final = "Initialization complete. Starting worker loop."
KCL_SHUTDOWN_COMPLETE: Final = "Process shutdown is complete."
KCL_SHUTDOWN_FAILED: Final = "Encountered an error during shutdown."
KCL_CHILD_EXITED: Final = "Child process exited with value:"
KCL_CHILD_STDERR: Final = "Received error line from subprocess"

#: The longest line of the daemon's output relayed (a longer one is cut, so a huge line costs bounded
#: memory); TRUNCATED_MARK ends a cut line.
MAX_LINE_BYTES: Final = 1 << 20
TRUNCATED_MARK: Final = " ... [line cut: {dropped} more bytes not relayed]"

_POLL_SECONDS: Final = 0.2
_SWEEP_SECONDS: Final = 2.0
_PR_SET_PDEATHSIG: Final = 1
_PR_SET_CHILD_SUBREAPER: Final = 36
_JAVA_LEVELS: Final = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "FATAL": logging.CRITICAL,
}
#: LogRecord attributes a relayed line must not overwrite.
_RECORD_FIELDS: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


# --- the daemon's output -----------------------------------------------------------------------------


def format_slf4j(pattern: str, arguments: Iterable[Any]) -> str:
    """An SLF4J message: each ``{}`` replaced by the next argument (``\\{}`` stays a literal ``{}``)."""
    args = iter(arguments)
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("\\{}", i):
            out.append("{}")
            i += 3
        elif pattern.startswith("{}", i):
            out.append(str(next(args, "{}")))
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out)


def describe_throwable(throwable: Any, frames: int = 3) -> str:
    """``Class: message`` of a logback JSON throwable and its causes, with the first few frames."""
    parts: list[str] = []
    seen = 0
    while isinstance(throwable, dict) and seen < 8:
        head = str(throwable.get("className", "Throwable"))
        if throwable.get("message"):
            head += f": {throwable['message']}"
        steps = throwable.get("stepArray") or []
        where = [
            f"{s.get('className')}.{s.get('methodName')}({s.get('fileName')}:{s.get('lineNumber')})"
            for s in steps[:frames]
            if isinstance(s, dict)
        ]
        parts.append(head + ("" if not where else " at " + " < ".join(where)))
        throwable = throwable.get("cause")
        seen += 1
    return " | caused by: ".join(parts)


class DaemonOutput:
    """Re-emits the daemon's stdout (KCL's JSON log lines) and stderr as our JSON log lines.

    Notices KCL's milestones: :attr:`initialized`, :attr:`shutdown_complete`, :attr:`shutdown_failed`,
    and :attr:`child_exited` (set whenever a shard child ended; the caller clears it).
    """

    def __init__(
        self,
        daemon_pid: int,
        logger: logging.Logger | None = None,
        kcl_level: str = "DEBUG",
        logger_levels: Mapping[str, str] | None = None,
    ) -> None:
        self.daemon_pid = daemon_pid
        self.log = logger or logging.getLogger("stream_worker.daemon")
        #: KCL lines below this are only looked at (milestones), not re-emitted...
        self.kcl_level = _JAVA_LEVELS.get(kcl_level.upper(), logging.DEBUG)
        #: ... unless their logger (or a parent of it) has a level of its own.
        self._logger_levels = {
            name: _JAVA_LEVELS.get(level.upper(), logging.DEBUG) for name, level in (logger_levels or {}).items()
        }
        self._thresholds: dict[str, int] = {}
        self.initialized = threading.Event()
        self.shutdown_complete = threading.Event()
        self.shutdown_failed = threading.Event()
        self.child_exited = threading.Event()
        self.lines: Counter[str] = Counter()
        self._lock = threading.Lock()

    def threshold(self, logger: str) -> int:
        """The level below which ``logger``'s lines are not re-emitted: that of its nearest configured
        ancestor (logback's rule), else the KCL level."""
        found = self._thresholds.get(logger)
        if found is None:
            found = self.kcl_level
            name = logger
            while name:
                if name in self._logger_levels:
                    found = self._logger_levels[name]
                    break
                name = name.rpartition(".")[0]
            self._thresholds[logger] = found
        return found

    def _count(self, level: int) -> None:
        with self._lock:
            self.lines[logging.getLevelName(level).lower()] += 1

    def lines_by_level(self) -> dict[str, int]:
        with self._lock:
            return dict(self.lines)

    def _emit(
        self,
        level: int,
        logger: str,
        message: str,
        *,
        created: Any,
        pid: Any,
        fields: dict[str, Any],
        leveled: bool = False,
    ) -> None:
        """Re-emit one line; ``leveled``: the KCL levels already chose it, whatever our own level."""
        self._count(level)
        if not leveled and not self.log.isEnabledFor(level):
            return
        record = logging.makeLogRecord(
            {
                "name": logger,
                "levelno": level,
                "levelname": logging.getLevelName(level),
                "msg": message,
                "args": None,
                "created": created if isinstance(created, int | float) else time.time(),
                "process": pid if isinstance(pid, int) else self.daemon_pid,
                **{(k if k not in _RECORD_FIELDS else f"field_{k}"): v for k, v in fields.items()},
            }
        )
        self.log.handle(record)

    def kcl_line(self, line: str) -> None:
        """One line of the daemon's stdout: a logback JSON event, or (rarely) plain text."""
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or "level" not in event:
            if line.strip():
                self._emit(logging.INFO, "kcl", line, created=None, pid=None, fields={"source": "kcl"})
            return
        logger = str(event.get("loggerName") or "kcl")
        pattern = str(event.get("message") or "")
        if pattern.startswith(KCL_CHILD_STDERR):
            return  # the child's line itself arrives on stderr
        message = format_slf4j(pattern, event.get("arguments") or [])
        level = _JAVA_LEVELS.get(str(event["level"]).upper(), logging.INFO)
        if message.startswith(KCL_INITIALIZED):
            self.initialized.set()
        elif message.startswith(KCL_SHUTDOWN_COMPLETE):
            self.shutdown_complete.set()
        elif message.startswith(KCL_SHUTDOWN_FAILED):
            self.shutdown_failed.set()
        elif message.startswith(KCL_CHILD_EXITED):
            self.child_exited.set()
        if level < self.threshold(logger):
            return
        fields: dict[str, Any] = {"source": "kcl", "java_thread": event.get("threadName")}
        mdc = event.get("mdc")
        if isinstance(mdc, dict) and mdc.get("ShardId"):
            fields["shard"] = mdc["ShardId"]
        if event.get("throwable"):
            fields["exc"] = describe_throwable(event["throwable"])
        stamp = event.get("timestamp")
        created = stamp / 1000.0 if isinstance(stamp, int | float) else None
        self._emit(level, logger, message, created=created, pid=None, fields=fields, leveled=True)

    def stderr_line(self, line: str) -> None:
        """One line of the daemon's stderr: a shard child's JSON log line, or the JVM's own text."""
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict) and "msg" in event and "level" in event:
            level = _JAVA_LEVELS.get(str(event["level"]).upper(), logging.INFO)
            rest = {k: v for k, v in event.items() if k not in ("ts", "level", "logger", "msg", "pid")}
            logger = str(event.get("logger") or "child")
            self._emit(level, logger, str(event["msg"]), created=event.get("ts"), pid=event.get("pid"), fields=rest)
            return
        lowered = line.lower()
        if "exception" in lowered or "error" in lowered or "traceback" in lowered:
            level = logging.ERROR
        elif line.startswith(("Picked up ", "NOTE: Picked up")):
            level = logging.INFO
        else:
            level = logging.WARNING
        self._emit(level, "stderr", line, created=None, pid=None, fields={"source": "daemon-stderr"})

    def pump(self, stream: IO[bytes], handle_line: Any) -> None:
        """Read ``stream`` to its end, one line at a time (for a reader thread). A line longer than
        :data:`MAX_LINE_BYTES` is relayed cut there, marked, and the rest of it read and dropped."""
        try:
            while raw := stream.readline(MAX_LINE_BYTES):
                dropped = 0
                if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    dropped = _skip_rest_of_line(stream)
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if dropped:
                    line += TRUNCATED_MARK.format(dropped=dropped)
                try:
                    handle_line(line)
                except Exception:  # never let one odd line end the relay
                    log.exception("could not relay a line of the daemon's output")
        finally:
            with contextlib.suppress(OSError):
                stream.close()


def _skip_rest_of_line(stream: IO[bytes]) -> int:
    """Read ``stream`` to the end of the current line, a bounded piece at a time; returns how many bytes
    of the line were dropped (not counting its line break)."""
    dropped = 0
    while piece := stream.readline(MAX_LINE_BYTES):
        if piece.endswith(b"\n"):
            return dropped + len(piece.rstrip(b"\r\n"))
        dropped += len(piece)
    return dropped


# --- the shard children's metrics ------------------------------------------------------------------


class ChildMetrics:
    """``PROMETHEUS_MULTIPROC_DIR``: the children's metric files, aggregated; dead children marked.

    The files are named by pid, and pids are reused: a child is a pid and its process's start time
    (:func:`process_identity`), so a later process given the pid is not taken for the child, and a
    new child with the pid of one marked dead (it writes live gauges again) is swept like any other.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.exits = 0
        #: pid -> start time of the live child that writes that pid's files.
        self._children: dict[int, int] = {}
        #: pids whose last child was marked dead (its live gauges removed).
        self._dead: set[int] = set()
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Create the folder, or empty it of metric files left by an earlier run."""
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in self.path.glob("*.db"):
            stale.unlink(missing_ok=True)

    def _pids(self) -> tuple[set[int], set[int]]:
        """The pids that have metric files, and those of them with live gauge files."""
        pids: set[int] = set()
        live_gauges: set[int] = set()
        for file in self.path.glob("*.db"):
            kind, _, tail = file.stem.rpartition("_")
            if tail.isdigit():
                pids.add(int(tail))
                if kind.startswith("gauge_live"):
                    live_gauges.add(int(tail))
        return pids, live_gauges

    def _mark_dead(self, pid: int) -> None:
        mark_process_dead(pid, str(self.path))  # type: ignore[no-untyped-call]
        self._children.pop(pid, None)
        self._dead.add(pid)
        self.exits += 1
        log.info("shard process ended; its live gauges are dropped", extra={"child_pid": pid})

    def sweep(self) -> int:
        """Mark children that have exited as dead (their live gauges go); returns the live count."""
        with self._lock:
            live = 0
            pids, live_gauges = self._pids()
            for pid in pids:
                if pid in self._dead and pid not in live_gauges:
                    continue  # whatever has the pid now writes no live gauges: not a child of ours
                holder = process_identity(pid)
                if pid in self._children:
                    if holder == self._children[pid]:
                        live += 1
                    else:  # ended (or a zombie, or the pid already went to another process)
                        self._mark_dead(pid)
                    continue
                if pid in self._dead:  # live gauges again after they were removed: a new child
                    self._dead.discard(pid)
                    log.info("new shard process with the pid of an ended one", extra={"child_pid": pid})
                if holder is None:
                    self._mark_dead(pid)
                else:
                    self._children[pid] = holder
                    live += 1
            return live

    def collect(self) -> list[Metric]:
        with self._lock:
            collector = MultiProcessCollector(None, path=str(self.path))  # type: ignore[no-untyped-call]
            return list(collector.collect())  # type: ignore[no-untyped-call]


def stuck_shards(families: Iterable[Metric], now: float, threshold: float) -> dict[str, float]:
    """Shards inside process_records for longer than ``threshold`` seconds -> for how long."""
    stuck: dict[str, float] = {}
    for family in families:
        if family.name != PROCESSING_SINCE_METRIC:
            continue
        for sample in family.samples:
            since = sample.value
            if since > 0 and now - since > threshold:
                stuck[sample.labels.get("shard", "?")] = round(now - since, 1)
    return stuck


# --- the supervisor ------------------------------------------------------------------------------


def default_jars_dir() -> Path:
    import amazon_kclpy

    return Path(amazon_kclpy.__file__).resolve().parent / "jars"


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: the daemon gets SIGKILL should the supervisor itself be killed outright."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL: Final = _load_prctl()


def become_subreaper() -> bool:
    """Linux: descendants orphaned by their parent's end (the shard children of a dead daemon, or what
    a shard child started) are re-parented to this process rather than to PID 1, so that it can stop
    them and collect their exit status (:func:`reap_orphans`). False where that is not available."""
    if _PRCTL is None:
        return False
    return bool(_PRCTL(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def reap_orphans(keep: int | None = None) -> list[int]:
    """Collect the exit status of every ended child but ``keep`` (the daemon, while its Popen has not
    collected it), so none lingers as a zombie: orphans re-parented to us as a subreaper or as PID 1.
    The supervisor starts no other child, so nothing else waits for these. Returns the pids reaped."""
    reaped: list[int] = []
    if not hasattr(os, "waitid"):
        return reaped
    while True:
        try:  # look first (WNOWAIT): the daemon's status is its Popen's to collect
            ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return reaped
        if ended is None or ended.si_pid == keep:
            return reaped
        with contextlib.suppress(ChildProcessError):
            os.waitpid(ended.si_pid, os.WNOHANG)
        reaped.append(ended.si_pid)


class Supervisor:
    """Runs the KCL daemon for ``settings`` until it stops or is told to; see the module doc."""

    def __init__(self, settings: WorkerSettings, *, environ: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.environ = dict(os.environ if environ is None else environ)
        self.process: subprocess.Popen[bytes] | None = None
        self.output: DaemonOutput | None = None
        self.child_metrics: ChildMetrics | None = None
        self.started_at: float | None = None
        self.live_children = 0
        self._signals = 0
        self._signalled_at: float | None = None
        self._killed = False
        self._stopping = False
        self._run_dir: Path | None = None
        self._own_run_dir = False
        self._readers: list[threading.Thread] = []

    # -- configuration ------------------------------------------------------------------------------

    def properties(self) -> dict[str, str]:
        return kcl_properties.kcl_properties(self.settings, environ=self.environ)

    def properties_text(self) -> str:
        return kcl_properties.render(self.properties())

    def _jars_dir(self) -> Path:
        jars = self.settings.kcl_jars_dir or default_jars_dir()
        if not any(jars.glob("amazon-kinesis-client-multilang-*.jar")):
            raise FatalConfigurationError(
                f"{ENV_PREFIX}KCL_JARS_DIR={jars}: no amazon-kinesis-client-multilang jar there "
                "(amazon_kclpy downloads them when it is installed)"
            )
        return jars

    def _java(self) -> str:
        java = shutil.which(self.settings.java)
        if java is None:
            raise FatalConfigurationError(f"{ENV_PREFIX}JAVA={self.settings.java}: no such executable (Java 17+)")
        return java

    def daemon_command(self, properties_file: Path, logback_file: Path) -> list[str]:
        return [
            self._java(),
            "-cp",
            str(self._jars_dir() / "*"),
            kcl_properties.DAEMON_MAIN_CLASS,
            "--properties-file",
            str(properties_file),
            "--log-configuration",
            str(logback_file),
        ]

    def _prepare(self) -> list[str]:
        """Write the run folder; returns the daemon's argv. Raises FatalConfigurationError."""
        properties = self.properties()
        if self.settings.run_dir is not None:
            run_dir = self.settings.run_dir
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            run_dir = Path(tempfile.mkdtemp(prefix="stream-worker-run-"))
            self._own_run_dir = True
        self._run_dir = run_dir
        properties_file = kcl_properties.write_properties(run_dir / "kcl.properties", properties)
        logback_file = run_dir / "logback.xml"
        logback_file.write_text(
            kcl_properties.logback_config(self.settings.kcl_log_level, self.settings.kcl_logger_levels()),
            encoding="utf-8",
        )
        multiproc = self.environ.get(MULTIPROC_ENV) or str(run_dir / "prometheus")
        self.child_metrics = ChildMetrics(Path(multiproc))
        self.child_metrics.reset()
        log.info("KCL daemon properties", extra={"properties": properties, "file": str(properties_file)})
        return self.daemon_command(properties_file, logback_file)

    def daemon_environment(self) -> dict[str, str]:
        assert self.child_metrics is not None
        env = dict(self.environ)
        env[MULTIPROC_ENV] = str(self.child_metrics.path)
        return env

    # -- health -------------------------------------------------------------------------------------

    def daemon_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def health(self) -> tuple[bool, dict[str, Any]]:
        alive = self.daemon_alive()
        body: dict[str, Any] = {
            "status": "ok" if alive else "down",
            "daemon_pid": self.process.pid if self.process is not None else None,
            "uptime_seconds": None if self.started_at is None else round(time.time() - self.started_at, 1),
        }
        return alive, body

    def readiness(self, families: list[Metric] | None = None) -> tuple[bool, dict[str, Any]]:
        alive = self.daemon_alive()
        initialized = self.output is not None and self.output.initialized.is_set()
        if families is None:
            families = self._child_families()
        stuck = stuck_shards(families, time.time(), self.settings.stuck_after_seconds)
        reasons: list[str] = []
        if not alive:
            reasons.append("the KCL daemon is not running")
        if self._stopping:
            reasons.append("shutting down")
        if not initialized:
            reasons.append("the KCL worker has not finished initializing")
        if stuck:
            reasons.append(
                f"shards inside process_records for more than {self.settings.stuck_after_seconds:g}s: "
                + ", ".join(sorted(stuck))
            )
        body = {
            "ready": not reasons,
            "reasons": reasons,
            "daemon_pid": self.process.pid if self.process is not None else None,
            "initialized": initialized,
            "shard_processes": self.live_children,
            "stuck_shards": stuck,
        }
        return not reasons, body

    def _child_families(self) -> list[Metric]:
        if self.child_metrics is None:
            return []
        self.live_children = self.child_metrics.sweep()
        return self.child_metrics.collect()

    def collect(self) -> Iterator[Metric]:
        """Every metric of ``/metrics``: the children's, aggregated, then the supervisor's."""
        families = self._child_families()
        yield from families
        ready, body = self.readiness(families)
        alive = self.daemon_alive()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield gauge("stream_worker_daemon_up", "1 while the KCL MultiLangDaemon process is alive", float(alive))
        yield gauge(
            "stream_worker_daemon_start_time_seconds",
            "Unix time the KCL daemon was started",
            self.started_at or 0.0,
        )
        initialized = float(body["initialized"])
        yield gauge("stream_worker_daemon_initialized", "1 once the KCL worker finished initializing", initialized)
        yield gauge("stream_worker_ready", "1 while /readyz answers 200", float(ready))
        yield gauge(
            "stream_worker_shard_processes", "Shard child processes alive (that wrote metrics)", self.live_children
        )
        yield gauge(
            "stream_worker_stuck_shards",
            "Shards inside process_records for longer than the stuck threshold",
            len(body["stuck_shards"]),
        )
        exits = CounterMetricFamily(
            "stream_worker_shard_process_exits", "Shard child processes seen to end (their live gauges dropped)"
        )
        exits.add_metric([], self.child_metrics.exits if self.child_metrics is not None else 0)
        yield exits
        lines = CounterMetricFamily(
            "stream_worker_daemon_log_lines", "Log lines of the KCL daemon and its children, by level", labels=["level"]
        )
        for level, count in sorted((self.output.lines_by_level() if self.output is not None else {}).items()):
            lines.add_metric([level], count)
        yield lines

    # -- running ------------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only plain assignments here: the loop in _supervise acts on them.
        self._signals += 1

    def _install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _bind_server(self) -> ThreadingHTTPServer:
        address, port = self.settings.metrics_address, self.settings.metrics_port
        try:
            server = _HealthServer((address, port), _HealthHandler, self)
        except OSError as exc:
            raise FatalConfigurationError(
                f"cannot serve /metrics on {address}:{port} ({ENV_PREFIX}METRICS_ADDRESS, "
                f"{ENV_PREFIX}METRICS_PORT): {exc}"
            ) from exc
        return server

    def _start_daemon(self, command: list[str]) -> None:
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.daemon_environment(),
                start_new_session=True,
                preexec_fn=_die_with_parent if _PRCTL is not None else None,  # noqa: PLW1509
            )
        except OSError as exc:
            raise FatalConfigurationError(
                f"cannot start the KCL daemon with {ENV_PREFIX}JAVA={command[0]}: {exc}"
            ) from exc
        self.started_at = time.time()
        self.output = DaemonOutput(
            self.process.pid,
            kcl_level=self.settings.kcl_log_level,
            logger_levels=self.settings.kcl_logger_levels(),
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self.output.pump, args=(stream, handler), name=name, daemon=True)
            for stream, handler, name in (
                (self.process.stdout, self.output.kcl_line, "kcl-stdout"),
                (self.process.stderr, self.output.stderr_line, "kcl-stderr"),
            )
        ]
        for reader in self._readers:
            reader.start()
        log.info("KCL daemon started", extra={"daemon_pid": self.process.pid, "command": command})

    def run(self, early_signals: Sequence[int] = ()) -> int:
        """Start everything, supervise until the daemon ends; returns the exit status.

        ``early_signals``: stop signals caught before this was called (``stream-worker run`` catches
        them from its first import on); read after this installs its own handlers, so none is missed.
        Raises FatalConfigurationError (naming the setting) before anything is started.
        """
        # First of all: as a container's PID 1 we would not even receive a signal without a handler.
        self._install_signal_handlers()
        self._signals += len(early_signals)
        become_subreaper()
        self._java()  # fail before writing or starting anything
        self._jars_dir()
        server = self._bind_server()
        serving: threading.Thread | None = None
        try:
            command = self._prepare()
            if self._signals:
                log.info("stopping: a signal came before the KCL daemon was started, so it is not started")
                return EXIT_GRACEFUL
            self._start_daemon(command)
            serving = threading.Thread(target=server.serve_forever, name="health-server", daemon=True)
            serving.start()
            log.info(
                "serving /metrics, /healthz, /readyz",
                extra={"address": self.settings.metrics_address, "port": server.server_address[1]},
            )
            return self._supervise()
        finally:
            if serving is not None:
                server.shutdown()
            server.server_close()
            self._after_daemon()

    def _supervise(self) -> int:
        process = self.process
        output = self.output
        assert process is not None and output is not None
        grace = self.settings.shutdown_grace_millis / 1000.0
        kill_at: float | None = None
        next_sweep = time.monotonic() + _SWEEP_SECONDS
        signals_handled = 0
        while True:
            code = process.poll()
            if code is not None:
                break
            now = time.monotonic()
            if self._signals > signals_handled:
                signals_handled = self._signals
                if self._signalled_at is None:
                    self._stopping = True
                    self._signalled_at = now
                    kill_at = now + grace + KILL_MARGIN_SECONDS
                    log.info(
                        "stopping: SIGTERM to the KCL daemon for a graceful shutdown",
                        extra={"daemon_pid": process.pid, "grace_seconds": grace},
                    )
                    with contextlib.suppress(ProcessLookupError):
                        process.send_signal(signal.SIGTERM)
                else:
                    log.warning("second signal: killing the KCL daemon now", extra={"daemon_pid": process.pid})
                    kill_at = now
            if kill_at is not None and now >= kill_at and not self._killed:
                log.error(
                    "the KCL daemon did not stop in time: SIGKILL",
                    extra={"daemon_pid": process.pid, "waited_seconds": round(now - (self._signalled_at or now), 1)},
                )
                self._killed = True
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            if now >= next_sweep or output.child_exited.is_set():
                output.child_exited.clear()
                next_sweep = now + _SWEEP_SECONDS
                if self.child_metrics is not None:
                    self.live_children = self.child_metrics.sweep()
            reap_orphans(keep=process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=_POLL_SECONDS)
        _stop_group(process.pid)  # leftover children may hold the daemon's output pipes open
        deadline = time.monotonic() + 5.0
        for reader in self._readers:
            reader.join(timeout=max(0.0, deadline - time.monotonic()))
        return self._verdict(code)

    def _verdict(self, code: int) -> int:
        output = self.output
        assert output is not None
        extra: dict[str, Any] = {"daemon_exit_code": code}
        if self._killed:
            log.error("the KCL daemon was killed: shutdown was not graceful", extra=extra)
            return EXIT_DAEMON_FAILED
        if self._signalled_at is not None:
            took = round(time.monotonic() - self._signalled_at, 1)
            confirmed = output.shutdown_complete.is_set()
            extra = {**extra, "seconds": took, "kcl_confirmed": confirmed}
            if output.shutdown_failed.is_set():
                log.error("the KCL daemon reported that its graceful shutdown failed", extra=extra)
                return EXIT_DAEMON_FAILED
            if code < 0:  # e.g. the kernel's OOM killer, mid-drain
                log.error(
                    "the KCL daemon was killed by a signal during its shutdown: not graceful",
                    extra={**extra, "daemon_signal": _signal_name(-code)},
                )
                return EXIT_DAEMON_FAILED
            # The JVM exits 128 + 15 after its shutdown hooks ran on SIGTERM; KCL's hook logs the
            # confirmation once every shard has drained and checkpointed.
            if code != 0 and not (confirmed and code == DAEMON_EXIT_ON_SIGTERM):
                log.error("the KCL daemon ended without KCL confirming its graceful shutdown", extra=extra)
                return EXIT_DAEMON_FAILED
            log.info("the KCL daemon stopped gracefully", extra=extra)
            return EXIT_GRACEFUL
        log.critical("the KCL daemon exited on its own", extra=extra)
        return EXIT_DAEMON_FAILED

    def _after_daemon(self) -> None:
        """Stop children a dead daemon left behind, mark them dead, tidy the run folder."""
        process = self.process
        if process is not None:
            if process.poll() is None:  # only when run() failed between start and supervise
                process.kill()
                process.wait()
            _stop_group(process.pid)
        if self.child_metrics is not None:
            self.live_children = self.child_metrics.sweep()
        if self._own_run_dir and self._run_dir is not None:
            props = self._run_dir / "kcl.properties"
            logback = self._run_dir / "logback.xml"
            for file in (props, logback):
                file.unlink(missing_ok=True)
            if self.child_metrics is not None and self.child_metrics.path.parent == self._run_dir:
                shutil.rmtree(self.child_metrics.path, ignore_errors=True)
            with contextlib.suppress(OSError):
                self._run_dir.rmdir()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies are not: ``killpg(pgid, 0)``
    succeeds on them until they are reaped, and they may never be, when their parent is gone)."""
    if PROC_MOUNTED:
        with contextlib.suppress(OSError, ProcUnreadableError):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                fields = proc_stat(entry.name)
                if fields is not None and fields[0] not in ENDED_STATES and int(fields[2]) == pgid:
                    return True
            return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(pgid: int) -> None:
    """SIGTERM, then SIGKILL, whatever is left in the daemon's process group (its shard children), and
    reap those re-parented to us. Call once the daemon itself has been waited for."""
    reap_orphans()
    if not _group_alive(pgid):
        return
    log.warning("stopping shard processes the KCL daemon left behind", extra={"process_group": pgid})
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.1)
        reap_orphans()
    if _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 2.0  # SIGKILL is not instant either; then reap what it ended
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.05)
    reap_orphans()


# --- the HTTP endpoints ---------------------------------------------------------------------------


class _HealthServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], supervisor: Supervisor):
        super().__init__(address, handler)
        self.supervisor = supervisor
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SupervisorCollector(supervisor))


class _SupervisorCollector:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        return self.supervisor.collect()


class _HealthHandler(BaseHTTPRequestHandler):
    server: _HealthServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        supervisor = self.server.supervisor
        try:
            if path == "/metrics":
                self._answer(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, body = supervisor.health()
                self._json(200 if ok else 503, body)
            elif path == "/readyz":
                ok, body = supervisor.readiness()
                self._json(200 if ok else 503, body)
            else:
                self._json(404, {"error": f"no such path {path}; try /metrics, /healthz, /readyz"})
        except Exception:
            log.exception("health endpoint failed", extra={"path": path})
            self._json(500, {"error": "internal error"})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._answer(status, json.dumps(body, sort_keys=True).encode("utf-8"), "application/json")

    def _answer(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("health request: " + format % args)
