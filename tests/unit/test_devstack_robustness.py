"""devstack's process and port handling without the stack: stopping never signals a pid that changed
hands, and a port counts as taken only while something listens on it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import processes
from devstack.processes import Spawned, port_is_free, spawn, stop_all, wait_until

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


def _port_in_time_wait() -> int:
    """A loopback port whose listener is closed, after the server side closed a connection first.

    The listener sets SO_REUSEADDR as the edge's does (asyncio), and Linux lets a new socket share a
    port with a TIME_WAIT one only when both set it.
    """
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            conn, _ = listener.accept()
            conn.close()  # the active close: this side's socket (on ``port``) ends in TIME_WAIT
            assert client.recv(1) == b""
    return port


def test_a_port_left_in_time_wait_is_free() -> None:
    """``devstack down`` then ``up`` on the same edge port: the old edge's closed connections do not block it."""
    port = _port_in_time_wait()
    assert port_is_free("127.0.0.1", port)

    async def bind_like_the_edge() -> None:
        server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", port)
        server.close()
        await server.wait_closed()

    asyncio.run(bind_like_the_edge())  # the probe agrees with the edge's own listener


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0"])
@pytest.mark.parametrize("reuse", [False, True], ids=["plain", "so_reuseaddr"])
def test_a_port_with_a_listener_is_taken(address: str, reuse: bool) -> None:
    with socket.socket() as listener:
        if reuse:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        assert not port_is_free("127.0.0.1", port)
    assert port_is_free("127.0.0.1", port)
