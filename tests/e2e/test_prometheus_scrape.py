"""A real Prometheus server scrapes the worker's /metrics: it reads every delivered event, and
``promtool check metrics`` accepts the exposition."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Scenario, duplicates, free_port, http_get, wait_until

pytestmark = pytest.mark.e2e

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


def _binary(path: str) -> str:
    found = path if Path(path).is_file() else shutil.which(Path(path).name)
    if found is None:
        pytest.fail(f"{path} is missing: install the Debian package prometheus (apt-get install -y prometheus)")
    return found


class PrometheusServer:
    """``prometheus`` on a loopback port, scraping one target every second, storage in ``folder``."""

    def __init__(self, folder: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: stream-worker\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n",
            encoding="utf-8",
        )
        self.log_path = folder / "prometheus.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    _binary(PROMETHEUS),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:])

    def ready(self) -> bool:
        assert self.process.poll() is None, f"prometheus exited:\n{self.tail()}"
        return http_get(self.url + "/-/ready")[0] == 200

    def query(self, expression: str) -> list[dict[str, Any]]:
        status, body = http_get(f"{self.url}/api/v1/query?query={urllib.parse.quote(expression)}")
        assert status == 200, body[:500]
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def scalar(self, expression: str) -> float | None:
        result = self.query(expression)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    servers: list[PrometheusServer] = []

    def start(target: str) -> PrometheusServer:
        server = PrometheusServer(tmp_path / "prometheus", target)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_prometheus_scrape(scenario: Scenario, prometheus_for: Any) -> None:
    started = time.monotonic()
    stream = scenario.create_stream(2)
    tracking_id = scenario.create_tracker()
    capture = scenario.capture("scraped", seed=601, sessions=150)
    worker = scenario.worker(stream=stream, application=f"app-{stream}", tracking_id=tracking_id, name="scraped")
    prometheus = prometheus_for(worker.url.removeprefix("http://"))
    wait_until(prometheus.ready, timeout=60, what=lambda: f"prometheus to be ready\n{prometheus.tail()}")

    scenario.produce(capture, stream)
    received = scenario.wait_delivered(tracking_id, capture.expected, alive=[worker])
    assert set(received) == capture.expected
    assert not duplicates(received)

    # Prometheus sees what the emulator got: the sum over the worker's shard processes.
    last: list[float | None] = [None]

    def scraped_all() -> bool:
        worker.check_alive()
        last[0] = prometheus.scalar("sum(stream_worker_events_delivered_total)")
        return last[0] == len(capture.expected)

    wait_until(
        scraped_all,
        timeout=30,
        what=lambda: f"sum(stream_worker_events_delivered_total) == {len(capture.expected)} (last {last[0]})",
    )
    up = prometheus.query('up{job="stream-worker"}')
    assert [float(r["value"][1]) for r in up] == [1.0]
    assert prometheus.scalar("stream_worker_daemon_up") == 1.0
    assert prometheus.scalar("sum(stream_worker_records_total)") == capture.records

    # promtool lints the exposition (exit 0: no problems; it prints them otherwise).
    text = worker.metrics_text()
    assert text
    check = subprocess.run(
        [_binary(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    print(f"promtool check metrics: exit {check.returncode}\n{check.stdout}{check.stderr}")
    assert check.returncode == 0, check.stdout + check.stderr
    print(f"{len(capture.expected)} events; prometheus read {last[0]:.0f}; total {time.monotonic() - started:.1f}s")
