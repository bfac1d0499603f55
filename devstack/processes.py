"""Child processes: start in their own process group, recognise them later, stop them by pid.

A recorded process is identified by its pid *and* its start time (``/proc/PID/stat`` field 22) *and*
words its command line must contain, so a pid that the system has since handed to someone else is never
signalled.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from stream_worker.procfs import ENDED_STATES, ProcUnreadableError, proc_stat

log = logging.getLogger("devstack.processes")

T = TypeVar("T")


class WaitTimeoutError(TimeoutError):
    """A condition did not become true before its deadline."""


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
    max_interval: float = 0.25,
    abort: Callable[[], str | None] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; never a fixed sleep.

    ``abort`` is checked between polls: a non-empty string from it ends the wait at once with that
    message (for example "the process exited").
    """
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        result = condition()
        if result:
            return result
        if abort is not None:
            reason = abort()
            if reason:
                raise WaitTimeoutError(f"gave up waiting for {what}: {reason}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, max_interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller retries if someone takes it meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now: no socket listens there.

    The probe binds as the edge's listener does (asyncio sets SO_REUSEADDR), so the TIME_WAIT
    connections a just-stopped edge leaves on its port for a minute do not count as taken (those of a
    listener without the option still do, as they would for the edge's own bind). On Linux
    SO_REUSEADDR still refuses a port with a live listener, on any address that overlaps ``host``.
    Elsewhere it can let a specific address share a port with a wildcard listener, so there the probe
    binds without it and stays strict.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sys.platform.startswith("linux"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot; None if there is no such process (or no
    ``/proc`` to tell)."""
    try:
        fields = proc_stat(pid)
    except ProcUnreadableError:
        return None
    return None if fields is None else int(fields[19])


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode("utf-8", errors="replace") for part in raw.split(b"\0") if part]


def is_alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        fields = proc_stat(pid)
    except ProcUnreadableError:
        return False
    return fields is not None and fields[0] not in ENDED_STATES


@dataclass(frozen=True)
class ProcessRecord:
    """What ``state.json`` keeps about one process we started."""

    name: str
    pid: int
    start_ticks: int
    markers: tuple[str, ...]
    log: str

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["markers"] = list(self.markers)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            start_ticks=int(data["start_ticks"]),
            markers=tuple(str(m) for m in data.get("markers", ())),
            log=str(data.get("log", "")),
        )

    def is_ours(self) -> bool:
        """The pid is alive, started when ours did, and its command line still looks like ours."""
        if not is_alive(self.pid) or start_ticks(self.pid) != self.start_ticks:
            return False
        argv = cmdline(self.pid)
        if argv is None:
            return False
        joined = " ".join(argv)
        return all(marker in joined for marker in self.markers)


@dataclass
class Spawned:
    """A process this interpreter started: its record, and the Popen to reap it with."""

    record: ProcessRecord
    popen: subprocess.Popen[bytes]


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    markers: Sequence[str],
) -> Spawned:
    """Start ``argv`` in a new session (its own process group), output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    ticks = start_ticks(popen.pid)
    if ticks is None:  # exited already (or /proc is missing): reap it and report
        popen.wait()
        raise RuntimeError(f"{name} exited at once; see {log_path}\n{tail(log_path)}")
    record = ProcessRecord(name=name, pid=popen.pid, start_ticks=ticks, markers=tuple(markers), log=str(log_path))
    log.info("started", extra={"service": name, "pid": popen.pid, "argv": list(argv), "log_file": str(log_path)})
    return Spawned(record=record, popen=popen)


def stop(record: ProcessRecord, *, popen: subprocess.Popen[bytes] | None = None, timeout: float = 10.0) -> bool:
    """Stop one recorded process; see :func:`stop_all`. True if it was running and is now stopped."""
    return bool(stop_all([(record, popen)], timeout=timeout))


def stop_all(
    processes: Sequence[tuple[ProcessRecord, subprocess.Popen[bytes] | None]], *, timeout: float = 10.0
) -> list[str]:
    """SIGTERM the process group of each record (in the given order), wait up to ``timeout`` for all of
    them, then SIGKILL the groups still there. ``popen`` (if this interpreter started it) is reaped.

    Only a process that still is ours (:meth:`ProcessRecord.is_ours`) is signalled or waited for, and
    that is checked again before every signal and on every poll of the wait: once ours has exited, its
    pid may be handed to someone else within the timeout, and that process is left alone. Returns the
    names of the processes that were stopped.
    """
    running: list[tuple[ProcessRecord, subprocess.Popen[bytes] | None]] = []
    for record, popen in processes:
        if record.is_ours():
            running.append((record, popen))
        else:
            if popen is not None:
                popen.poll()
            log.info("already gone", extra={"service": record.name, "pid": record.pid})

    def remaining() -> list[tuple[ProcessRecord, subprocess.Popen[bytes] | None]]:
        return [(record, popen) for record, popen in running if _still_ours(record, popen)]

    for record, popen in running:
        _signal_if_ours(record, popen, signal.SIGTERM)
    try:
        wait_until(lambda: not remaining(), timeout=timeout, what="the stack's processes to exit")
    except WaitTimeoutError:
        for record, popen in remaining():
            log.warning("did not exit on SIGTERM: killing", extra={"service": record.name, "pid": record.pid})
            _signal_if_ours(record, popen, signal.SIGKILL)
        wait_until(lambda: not remaining(), timeout=5.0, what="the stack's processes to die")
    for record, _ in running:
        log.info("stopped", extra={"service": record.name, "pid": record.pid})
    return [record.name for record, _ in running]


def _still_ours(record: ProcessRecord, popen: subprocess.Popen[bytes] | None) -> bool:
    """The recorded process is still running and is still the one we started.

    A child this interpreter has reaped is gone, whatever now runs under its pid. Otherwise the pid is
    checked whole (start time and markers, not just "alive"): the process may have exited and its pid
    been reused by an unrelated one since the last look.
    """
    if popen is not None and popen.poll() is not None:
        return False
    return record.is_ours()


def _signal_if_ours(record: ProcessRecord, popen: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    """Signal the process (group) only after checking, right before, that its pid still is ours.

    A child we have not reaped keeps its pid, so the check and the signal cannot be split by a reuse.
    For a process we did not start (``devstack down`` from another shell) a pid could in theory change
    hands between the check and the kill() call; that gap is a few system calls, not a stop timeout.
    """
    if _still_ours(record, popen):
        _signal_group(record, sig)


def _signal_group(record: ProcessRecord, sig: signal.Signals) -> None:
    try:
        pgid = os.getpgid(record.pid)
    except ProcessLookupError:
        return
    try:
        if pgid == record.pid:  # we made it a group leader: signal the whole group
            os.killpg(pgid, sig)
        else:
            os.kill(record.pid, sig)
    except ProcessLookupError:
        pass


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ('' if unreadable)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16_384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
