"""devstack's process handling without the stack: stopping never signals a pid that changed hands."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import processes
from devstack.processes import Spawned, spawn, stop_all, wait_until

#: Ignores SIGTERM (noting that it came in a file), so only a SIGKILL ends it.
_STUBBORN = """
import pathlib, signal, sys, time
here = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: (here / "terminated").touch())
(here / "ready").touch()
time.sleep(120)
"""
_MARKER = "devstack-robustness-stubborn"


@pytest.fixture
def stubborn(tmp_path: Path) -> Iterator[Spawned]:
    spawned = spawn(
        "moto",
        [sys.executable, "-c", _STUBBORN, str(tmp_path), _MARKER],
        cwd=tmp_path,
        env=os.environ,
        log_path=tmp_path / "moto.log",
        markers=(_MARKER,),
    )
    try:
        wait_until((tmp_path / "ready").exists, timeout=30, what="the test process to start")
        yield spawned
    finally:
        if spawned.popen.poll() is None:
            spawned.popen.kill()
        spawned.popen.wait()


@pytest.mark.parametrize("our_child", [True, False], ids=["popen", "down-from-another-shell"])
def test_stop_leaves_alone_a_pid_that_changed_hands_during_the_wait(
    stubborn: Spawned, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, our_child: bool
) -> None:
    """Ours exits on SIGTERM and its pid goes to a process started later: that one is not waited on or killed.

    The stubborn process plays both: ours until the SIGTERM, then (by its start time) someone else.
    """
    record = stubborn.record
    real_start_ticks = processes.start_ticks

    def start_ticks(pid: int) -> int | None:
        ticks = real_start_ticks(pid)
        if pid == record.pid and ticks is not None and (tmp_path / "terminated").exists():
            return ticks + 1
        return ticks

    monkeypatch.setattr(processes, "start_ticks", start_ticks)
    timeout = 3.0
    began = time.monotonic()
    stopped = stop_all([(record, stubborn.popen if our_child else None)], timeout=timeout)
    took = time.monotonic() - began

    assert stopped == ["moto"]
    assert (tmp_path / "terminated").exists()  # ours did get its SIGTERM
    assert stubborn.popen.poll() is None, "the process now holding the pid was killed"
    assert took < timeout, f"waited {took:.1f}s on a process that is not ours"


def test_stop_still_kills_our_own_process_that_ignores_sigterm(stubborn: Spawned, tmp_path: Path) -> None:
    stopped = stop_all([(stubborn.record, None)], timeout=0.5)
    assert stopped == ["moto"]
    assert (tmp_path / "terminated").exists()
    assert stubborn.popen.wait(timeout=10) == -signal.SIGKILL
