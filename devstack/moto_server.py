"""moto server (``python -m devstack.moto_server -H HOST -p PORT``), without a log line per request.

The KCL daemon renews its leases through moto every second or so and tests send thousands of requests:
werkzeug's access log would grow without bound. ``DEVSTACK_MOTO_ACCESS_LOG=1`` keeps it.

:func:`run_moto_server` starts one on a free loopback port for tests and benchmarks that need moto
alone, without the rest of the stack.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    if os.environ.get("DEVSTACK_MOTO_ACCESS_LOG", "").lower() not in ("1", "true", "yes"):
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.server import main as moto_main

    moto_main(list(sys.argv[1:] if argv is None else argv))
    return 0


@contextmanager
def run_moto_server(log: Path, *, timeout: float = 30.0) -> Iterator[str]:
    """moto server on a free loopback port, logging to ``log``; yields its URL once it answers. Stopped
    (terminate, then kill) when the block ends; a server that exits or stays silent raises with its log."""
    from devstack.processes import free_port, tail
    from devstack.services import answers

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
                raise TimeoutError(f"moto server did not answer within {timeout:g} s: {tail(log)}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    sys.exit(main())
