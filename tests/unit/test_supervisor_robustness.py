"""The supervisor where pids are scarce or special: run inside a private pid namespace (``unshare``, as an
unprivileged user with a user namespace), where a pid can be handed out twice on purpose and where
``stream-worker run`` is PID 1, as in its container. Skipped where user namespaces are not allowed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_worker.supervisor import LEFTOVER_GRACE_SECONDS
from tests.unit.test_supervisor import SIGNAL_WHILE_PREPARING, FakeRun, get, wait_until

UNSHARE = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]


def _namespaces_allowed() -> bool:
    if shutil.which("unshare") is None or not Path("/proc/self/stat").exists():
        return False
    try:
        probe = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _namespaces_allowed(), reason="needs unshare and unprivileged user namespaces")


def run_as_pid_1(script: str, *args: str, timeout: float = 120) -> Any:
    """Runs ``script`` as PID 1 of a new pid namespace; returns the JSON it prints last."""
    result = subprocess.run(
        [*UNSHARE, sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


# -- pid reuse ------------------------------------------------------------------------------------------

PID_REUSE = """
    import json, os, subprocess, sys, time
    from pathlib import Path
    from stream_worker.supervisor import ChildMetrics, stuck_shards

    CHILD = '''
    import sys, time
    from stream_worker.metrics import WorkerMetrics, Telemetry
    telemetry = Telemetry(WorkerMetrics(), sys.argv[1])
    telemetry.records_received(1)
    telemetry.in_flight_set(5)
    telemetry.processing_records(time.time() - 1000 if sys.argv[2] == "stuck" else None)
    print("written", flush=True)
    if sys.argv[2] == "stuck":
        time.sleep(600)
    '''
    metrics = ChildMetrics(Path(sys.argv[1]))
    metrics.reset()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics.path)}

    def child_at(pid, shard, state):
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))  # the next process gets pid
        child = subprocess.Popen([sys.executable, "-c", CHILD, shard, state], env=env, stdout=subprocess.PIPE)
        assert child.stdout.readline() == b"written\\n"
        return child

    def state(child):
        live = metrics.sweep()
        stuck = stuck_shards(metrics.collect(), time.time(), threshold=300.0)
        return {"pid": child.pid, "live": live, "exits": metrics.exits, "stuck": sorted(stuck)}

    seen = []
    a = child_at(500, "shardId-A", "between")
    a.wait()
    seen.append(state(a))  # A ended
    b = child_at(500, "shardId-B", "stuck")
    seen.append(state(b))  # B has A's pid, and is stuck inside process_records
    b.kill()
    b.wait()
    seen.append(state(b))  # B was killed
    print(json.dumps(seen))
"""


def test_a_shard_child_given_the_pid_of_an_ended_one_is_swept_when_it_ends(tmp_path: Path) -> None:
    a_ended, b_stuck, b_killed = run_as_pid_1(PID_REUSE, str(tmp_path / "prometheus"))
    assert a_ended == {"pid": 500, "live": 0, "exits": 1, "stuck": []}
    assert b_stuck == {"pid": 500, "live": 1, "exits": 1, "stuck": ["shardId-B"]}
    assert b_killed == {"pid": 500, "live": 0, "exits": 2, "stuck": []}


# -- `stream-worker run` as PID 1 -----------------------------------------------------------------------


@pytest.fixture
def pid_1_run(tmp_path: Path) -> Iterator[Callable[..., FakeRun]]:
    """``stream-worker run`` around the stand-in daemon as PID 1 of a new pid namespace."""
    runs: list[FakeRun] = []

    def start(mode: str, **options: Any) -> FakeRun:
        (tmp_path / mode).mkdir()
        # --kill-child: should unshare be killed (by close()), its child and so the namespace go too.
        run = FakeRun(tmp_path / mode, mode, wrapper=[*UNSHARE, "--kill-child"], **options)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.close()


def test_as_pid_1_a_signal_before_the_daemon_starts_is_not_lost(pid_1_run: Callable[..., FakeRun]) -> None:
    run = pid_1_run("graceful", argv=("-c", SIGNAL_WHILE_PREPARING))
    assert run.process.wait(timeout=30) == 0, run.log_path.read_text()
    assert not run.record_path.exists()
    assert "KCL daemon started" not in [entry["msg"] for entry in run.logs()]


def test_as_pid_1_sigterm_stops_the_daemon_gracefully(pid_1_run: Callable[..., FakeRun]) -> None:
    run = pid_1_run("graceful")
    run.daemon()
    wait_until(lambda: get(run.url + "/readyz")[0] == 200, 30, "/readyz to answer 200")
    os.kill(run.supervisor_pid(), signal.SIGTERM)
    assert run.process.wait(timeout=30) == 0
    assert "the KCL daemon stopped gracefully" in [entry["msg"] for entry in run.logs()]


def test_as_pid_1_the_children_of_a_dead_daemon_are_stopped_and_reaped_at_once(
    pid_1_run: Callable[..., FakeRun],
) -> None:
    run = pid_1_run("dies")  # the stand-in daemon starts a child (sleep 300) and exits 1 a second later
    assert run.process.wait(timeout=60) == 1, run.log_path.read_text()
    entries = run.logs()
    at = {entry["msg"]: entry["ts"] for entry in entries}
    # Orphaned to PID 1, the child ends on SIGTERM and is reaped: no wait for the leftovers' grace
    # period (a zombie still counts for killpg(pgid, 0)), and nothing left for a second round.
    took = at["the KCL daemon exited on its own"] - at["KCL daemon started"]
    assert took < 1.0 + LEFTOVER_GRACE_SECONDS / 2, f"{took:.1f}s"
    assert [entry["msg"] for entry in entries].count("stopping shard processes the KCL daemon left behind") == 1
