"""moto server for the benchmarks (``python -m devstack.moto_server``) on a free loopback port."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.processes import free_port, tail
from devstack.services import answers


@contextmanager
def moto_server(log: Path, *, timeout: float = 60.0) -> Iterator[str]:
    """moto server logging to ``log``; its URL once it answers. Stopped (terminate, then kill) at the end."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack.moto_server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        while not answers("127.0.0.1", port, "/moto-api/config"):
            if process.poll() is not None:
                raise RuntimeError(f"moto server exited with {process.returncode}: {tail(log)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"moto server did not answer within {timeout:g} s; see {log}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
