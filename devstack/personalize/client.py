"""A stdlib-only client for the emulator's admin API, and a way to run the emulator as a subprocess.

The control plane, runtime and events APIs are for the AWS SDKs (``personalize``,
``personalize-runtime``, ``personalize-events`` with ``endpoint_url=emulator.url``); this client covers
what only the emulator has: inspection, faults, resets, and the control plane's pace.

    with run_emulator(trackers=["tracker-1"]) as emulator:
        boto3.client("personalize-events", endpoint_url=emulator.url, ...)
        emulator.create_tracker("tracker-2", quota_per_second=5)
        emulator.set_faults([error_fault(0.5, status=503)], seed=7)
        assert len(emulator.events(tracking_id="tracker-1")) == ...

:func:`run_emulator` starts ``python -m devstack.personalize --port 0`` and waits (polling, with a
deadline) until ``/_emulator/health`` answers; it stops the process with SIGTERM on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

#: The folder holding the ``devstack`` package: put on PYTHONPATH of the subprocess.
_IMPORT_ROOT: Final = Path(__file__).resolve().parents[2]


class EmulatorError(RuntimeError):
    """An admin call failed (``status`` and answer attached) or the emulator did not start."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def error_fault(
    probability: float = 1.0,
    *,
    status: int | None = None,
    code: str | None = None,
    operation: str | None = None,
    count: int | None = None,
    seconds: float | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """A rule answering ``code``/``status`` (default 500 InternalFailure) with ``probability``."""
    rule: dict[str, Any] = {"kind": "error", "probability": probability}
    _put_optional(rule, status=status, code=code, operation=operation, count=count, seconds=seconds)
    _put_optional(rule, message=message)
    return rule


def latency_fault(
    fixed_ms: float,
    jitter_ms: float = 0.0,
    *,
    operation: str | None = None,
    count: int | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """A rule delaying answers by ``fixed_ms`` plus a uniform ``0..jitter_ms``."""
    rule: dict[str, Any] = {"kind": "latency", "fixedMs": fixed_ms, "jitterMs": jitter_ms}
    _put_optional(rule, operation=operation, count=count, seconds=seconds)
    return rule


def outage_fault(
    seconds: float,
    *,
    status: int | None = None,
    code: str | None = None,
    operation: str | None = None,
    start_in_seconds: float | None = None,
) -> dict[str, Any]:
    """A rule answering every call with ``code``/``status`` (default 503 ServiceUnavailable) for a while."""
    rule: dict[str, Any] = {"kind": "outage", "seconds": seconds}
    _put_optional(rule, status=status, code=code, operation=operation, startInSeconds=start_in_seconds)
    return rule


def _put_optional(target: dict[str, Any], **values: Any) -> None:
    for key, value in values.items():
        if value is not None:
            target[key] = value


class EmulatorClient:
    """The admin API of an emulator at ``url`` (e.g. ``http://127.0.0.1:4580``)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    # ---------------------------------------------------------------------------------------- http

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Call ``method path`` of the admin API; return the decoded JSON answer or raise EmulatorError."""
        url = self.url + path
        if query:
            pairs = {key: str(value) for key, value in query.items() if value is not None}
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        data = json.dumps(body).encode("utf-8") if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (http only, by design)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as response:  # noqa: S310
                payload = response.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            raise EmulatorError(f"{method} {path} answered {exc.code}: {text}", exc.code, text) from None
        except (urllib.error.URLError, OSError) as exc:
            raise EmulatorError(f"{method} {path} failed: {exc}") from exc
        return json.loads(payload) if payload else None

    # -------------------------------------------------------------------------------------- status

    def health(self, timeout: float | None = None) -> dict[str, Any]:
        """``GET /_emulator/health``."""
        result: dict[str, Any] = self.request("GET", "/_emulator/health", timeout=timeout)
        return result

    def env(self) -> dict[str, str]:
        """Environment variables pointing the AWS SDKs' Personalize clients at this emulator."""
        return {
            "AWS_ENDPOINT_URL_PERSONALIZE_EVENTS": self.url,
            "AWS_ENDPOINT_URL_PERSONALIZE_RUNTIME": self.url,
            "AWS_ENDPOINT_URL_PERSONALIZE": self.url,
        }

    # ------------------------------------------------------------------------------------ trackers

    def create_tracker(
        self,
        tracking_id: str | None = None,
        *,
        quota_per_second: float | Literal["default"] | None = "default",
        burst: float | None = None,
        name: str | None = None,
        dataset_group_arn: str | None = None,
    ) -> dict[str, Any]:
        """Create (or replace) a tracker; return it. Quota: "default", a rate, or ``None``/0 = unlimited.

        The tracker's dataset group gets INTERACTIONS, ITEMS and USERS datasets, so PutItems/PutUsers
        can write to ``arn:aws:personalize:REGION:ACCOUNT:dataset/<group name>/ITEMS`` (and ``USERS``).
        """
        body: dict[str, Any] = {}
        _put_optional(body, trackingId=tracking_id, burst=burst, name=name, datasetGroupArn=dataset_group_arn)
        if quota_per_second != "default":
            body["quotaPerSecond"] = quota_per_second
        result: dict[str, Any] = self.request("POST", "/_emulator/trackers", body)
        return result

    def trackers(self) -> list[dict[str, Any]]:
        """Every tracker."""
        result: list[dict[str, Any]] = self.request("GET", "/_emulator/trackers")["trackers"]
        return result

    def delete_tracker(self, tracking_id: str) -> None:
        """Delete a tracker (EmulatorError 404 if unknown)."""
        self.request("DELETE", "/_emulator/trackers/" + urllib.parse.quote(tracking_id, safe=""))

    def datasets(self) -> list[dict[str, Any]]:
        """Every dataset PutItems/PutUsers may write to."""
        result: list[dict[str, Any]] = self.request("GET", "/_emulator/datasets")["datasets"]
        return result

    def create_dataset(
        self, dataset_arn: str, *, dataset_type: str | None = None, dataset_group_arn: str | None = None
    ) -> dict[str, Any]:
        """Register a dataset (type defaults to the ARN's last segment: ITEMS, USERS, ...)."""
        body: dict[str, Any] = {"datasetArn": dataset_arn}
        _put_optional(body, datasetType=dataset_type, datasetGroupArn=dataset_group_arn)
        result: dict[str, Any] = self.request("POST", "/_emulator/datasets", body)
        return result

    # ------------------------------------------------------------------------------------- records

    def _records(
        self, kind: str, key_param: str, key: str | None, fields: Sequence[str] | None, **query: Any
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {key_param: key, "format": "compact", **query}
        if fields:
            params["fields"] = ",".join(fields)
        answer = self.request("GET", f"/_emulator/{kind}", query=params)
        names = answer["fields"]
        return [dict(zip(names, row, strict=True)) for row in answer["rows"]]

    def events(
        self,
        tracking_id: str | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        after: int | None = None,
        limit: int | None = None,
        fields: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Accepted events, oldest first, every occurrence (duplicates included).

        Each has seq, receivedAt, trackingId, userId, sessionId, eventId, eventType, eventValue, itemId,
        sentAt, recommendationId, impression, properties (the JSON text sent), metricAttribution; or only
        ``fields``. ``since``/``until`` bound receivedAt; ``after`` is a seq cursor.
        """
        return self._records(
            "events", "trackingId", tracking_id, fields, since=since, until=until, after=after, limit=limit
        )

    def event_ids(self, tracking_id: str | None = None) -> list[str | None]:
        """The eventId of every accepted event (``None`` where none was sent), in receive order."""
        answer = self.request(
            "GET",
            "/_emulator/events",
            query={"trackingId": tracking_id, "format": "compact", "fields": "eventId"},
        )
        return [row[0] for row in answer["rows"]]

    def items(self, dataset_arn: str | None = None) -> list[dict[str, Any]]:
        """Accepted items: seq, receivedAt, datasetArn, itemId, properties."""
        return self._records("items", "datasetArn", dataset_arn, None)

    def users(self, dataset_arn: str | None = None) -> list[dict[str, Any]]:
        """Accepted users: seq, receivedAt, datasetArn, userId, properties."""
        return self._records("users", "datasetArn", dataset_arn, None)

    def clear_events(self) -> None:
        """Forget every accepted event, item and user."""
        self.request("DELETE", "/_emulator/events")

    def stats(self) -> dict[str, Any]:
        """``GET /_emulator/stats``: calls by operation and outcome, eventsAccepted, distinctEventIds..."""
        result: dict[str, Any] = self.request("GET", "/_emulator/stats")
        return result

    def wait_for_events(
        self, count: int, *, tracking_id: str | None = None, timeout: float = 30.0, interval: float = 0.05
    ) -> int:
        """Poll until at least ``count`` events are accepted (for ``tracking_id``); return the number.

        Raises TimeoutError naming the last count when ``timeout`` passes first.
        """
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.stats()
            seen = (
                snapshot["eventsAccepted"] if tracking_id is None else snapshot["eventsByTracker"].get(tracking_id, 0)
            )
            if seen >= count:
                return int(seen)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{seen} of {count} events arrived within {timeout:g}s")
            time.sleep(interval)

    # -------------------------------------------------------------------------------------- faults

    def set_faults(
        self, rules: Iterable[Mapping[str, Any]], *, seed: int | None = None, replace: bool = True
    ) -> list[dict[str, Any]]:
        """Install fault rules (see :func:`error_fault`, :func:`latency_fault`, :func:`outage_fault`).

        ``replace`` drops the current rules first; ``seed`` restarts the random draws. Returns all rules.
        """
        body: dict[str, Any] = {"faults": [dict(rule) for rule in rules], "replace": replace}
        if seed is not None:
            body["seed"] = seed
        result: list[dict[str, Any]] = self.request("POST", "/_emulator/faults", body)["faults"]
        return result

    def faults(self) -> list[dict[str, Any]]:
        """The current fault rules (with ``active``, ``fired``, ``remainingSeconds``)."""
        result: list[dict[str, Any]] = self.request("GET", "/_emulator/faults")["faults"]
        return result

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self.request("DELETE", "/_emulator/faults")

    def reset(self, *, trackers: bool = True) -> None:
        """Clear records, stats and faults; with ``trackers``, back to the start-up trackers only (and no
        control-plane resources)."""
        self.request("POST", "/_emulator/reset", {"trackers": trackers})

    # ------------------------------------------------------------------------------- control plane

    def resources(self, kind: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Every control-plane resource by kind (``schema``, ``dataset-group``, ``campaign``, ...)."""
        result: dict[str, list[dict[str, Any]]] = self.request("GET", "/_emulator/resources", query={"kind": kind})[
            "resources"
        ]
        return result

    def control_settings(self) -> dict[str, float]:
        """``stepSeconds``, ``autoTrainingDelaySeconds``, ``autoTrainingDaySeconds``."""
        result: dict[str, float] = self.request("GET", "/_emulator/settings")
        return result

    def set_control_settings(
        self,
        *,
        step_seconds: float | None = None,
        auto_training_delay_seconds: float | None = None,
        auto_training_day_seconds: float | None = None,
    ) -> dict[str, float]:
        """Change the control plane's pace; ``step_seconds=0`` makes status changes instantaneous."""
        body: dict[str, Any] = {}
        _put_optional(
            body,
            stepSeconds=step_seconds,
            autoTrainingDelaySeconds=auto_training_delay_seconds,
            autoTrainingDaySeconds=auto_training_day_seconds,
        )
        result: dict[str, float] = self.request("POST", "/_emulator/settings", body)
        return result

    def auto_train(self, solution_arn: str) -> str:
        """Run a solution's automatic training now; return the new solution version's ARN."""
        result: dict[str, str] = self.request("POST", "/_emulator/auto-training", {"solutionArn": solution_arn})
        return result["solutionVersionArn"]


class EmulatorProcess(EmulatorClient):
    """An emulator running as a subprocess (see :func:`run_emulator`)."""

    def __init__(
        self,
        url: str,
        port: int,
        process: subprocess.Popen[bytes],
        log_path: Path,
        scratch_dir: Path | None = None,
    ) -> None:
        super().__init__(url)
        self.port = port
        self.process = process
        self.log_path = log_path
        self._scratch_dir = scratch_dir

    def logs(self) -> str:
        """What the emulator wrote to stderr so far (JSON lines)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the emulator and wait (SIGKILL after ``timeout``); return its exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return int(self.process.returncode)

    def close(self) -> int:
        """:meth:`stop`, then delete the temporary files (the default log among them)."""
        status = self.stop()
        if self._scratch_dir is not None:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
        return status


def _tracker_arg(spec: str | tuple[str, float | None]) -> str:
    if isinstance(spec, str):
        return spec
    tracking_id, quota = spec
    return f"{tracking_id}:{0 if quota is None else quota:g}"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_emulator(
    *,
    trackers: Iterable[str | tuple[str, float | None]] = (),
    default_quota: float | None = None,
    data_dir: Path | str | None = None,
    seed: int | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "info",
    log_path: Path | str | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 30.0,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    s3_endpoint_url: str | None = None,
    step_seconds: float | None = None,
) -> EmulatorProcess:
    """Start the emulator as a subprocess and wait until it answers; the caller must ``close()`` it.

    ``trackers``: ids, or (id, quota) with ``None`` = unlimited. ``default_quota``: None keeps the
    emulator's default (1000/s); 0 = unlimited. Logs go to ``log_path`` (default: a temporary file).
    ``s3_endpoint_url``: where import and batch jobs find S3; ``step_seconds``: the control plane's status
    step (0: instantaneous).
    Raises EmulatorError (with the log's tail) if it exits or does not answer in ``startup_timeout``.
    """
    workdir = Path(tempfile.mkdtemp(prefix="personalize-emulator-"))
    port_file = workdir / "port"
    log_file = Path(log_path) if log_path is not None else workdir / "emulator.log"
    command = [python, "-m", "devstack.personalize", "--host", host, "--port", str(port)]
    command += ["--port-file", str(port_file), "--log-level", log_level]
    for spec in trackers:
        command += ["--tracker", _tracker_arg(spec)]
    if default_quota is not None:
        command += ["--default-quota", f"{default_quota:g}"]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    if seed is not None:
        command += ["--seed", str(seed)]
    if s3_endpoint_url is not None:
        command += ["--s3-endpoint-url", s3_endpoint_url]
    if step_seconds is not None:
        command += ["--step-seconds", f"{step_seconds:g}"]
    command += list(extra_args)
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(_IMPORT_ROOT), child_env.get("PYTHONPATH", "")) if part
    )
    with log_file.open("ab") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=child_env)
    url_host = f"[{host}]" if ":" in host else host
    try:
        chosen = _wait_until_ready(process, port_file, url_host, startup_timeout, log_file)
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return EmulatorProcess(f"http://{url_host}:{chosen}", chosen, process, log_file, workdir)


def _wait_until_ready(
    process: subprocess.Popen[bytes], port_file: Path, url_host: str, timeout: float, log_file: Path
) -> int:
    deadline = time.monotonic() + timeout
    interval = 0.01
    port: int | None = None
    while True:
        if process.poll() is not None:
            raise EmulatorError(
                f"emulator exited with status {process.returncode} before it was ready:\n{_tail(log_file)}"
            )
        if port is None:
            with contextlib.suppress(OSError, ValueError):
                port = int(port_file.read_text(encoding="utf-8").strip())
        if port is not None:
            with contextlib.suppress(EmulatorError):
                EmulatorClient(f"http://{url_host}:{port}").health(timeout=1.0)
                return port
        if time.monotonic() >= deadline:
            raise EmulatorError(f"emulator did not answer within {timeout:g}s:\n{_tail(log_file)}")
        time.sleep(interval)
        interval = min(interval * 2, 0.1)


@contextlib.contextmanager
def run_emulator(
    *,
    trackers: Iterable[str | tuple[str, float | None]] = (),
    default_quota: float | None = None,
    data_dir: Path | str | None = None,
    seed: int | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "info",
    log_path: Path | str | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 30.0,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    s3_endpoint_url: str | None = None,
    step_seconds: float | None = None,
) -> Iterator[EmulatorProcess]:
    """Run the emulator as a subprocess for the ``with`` block (arguments as :func:`start_emulator`)."""
    emulator = start_emulator(
        trackers=trackers,
        default_quota=default_quota,
        data_dir=data_dir,
        seed=seed,
        host=host,
        port=port,
        log_level=log_level,
        log_path=log_path,
        extra_args=extra_args,
        startup_timeout=startup_timeout,
        python=python,
        env=env,
        s3_endpoint_url=s3_endpoint_url,
        step_seconds=step_seconds,
    )
    try:
        yield emulator
    finally:
        emulator.close()
