"""The local stack as one object: start it, use its environment, stop it. Used by the CLI and the tests.

    with DevStack(DevStackSettings(state_dir=tmp, edge_port=0)) as stack:
        boto3.client("kinesis", endpoint_url=stack.edge_url, ...)

``start()`` launches kinesis-mock, moto server and the Personalize emulator on free loopback ports, waits
until each answers, puts the edge in front of them, creates the demo's stream, buckets, table and
tracker through the edge, and records everything in ``<state_dir>/state.json`` and ``env.sh``. A second
``start()`` on a state dir whose stack is up and healthy only attaches to it. ``stop()`` stops, by pid,
the processes that state file names (and only those that still are what we started).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from devstack import envfile, services
from devstack.edge import EdgeConfig, Upstream
from devstack.processes import (
    ProcessRecord,
    Spawned,
    WaitTimeoutError,
    free_port,
    port_is_free,
    spawn,
    stop_all,
    tail,
    wait_until,
)
from devstack.provision import ProvisioningError, Resources, Target, provision
from devstack.routing import RouteTable
from devstack.settings import DevStackSettings

log = logging.getLogger("devstack.stack")

STATE_VERSION: Final = 1
_PORT_ATTEMPTS: Final = 3
#: Services reported by the edge's health endpoint, and which upstream serves each in our own stack.
_OWN_HEALTH_SERVICES: Final = {
    "kinesis": services.KINESIS,
    "dynamodb": services.MOTO,
    "dynamodbstreams": services.MOTO,
    "s3": services.MOTO,
    "sts": services.MOTO,
    "iam": services.MOTO,
}


class DevStackError(RuntimeError):
    """The stack could not do what was asked; ``exit_code`` is what the CLI returns for it."""

    exit_code = 1


class ConfigurationError(DevStackError):
    """Something about the machine or the settings stops the stack from starting at all."""

    exit_code = 2


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    port: int | None
    url: str | None
    running: bool
    answers: bool


class DevStack:
    """kinesis-mock + moto + the Personalize emulator behind one edge. See the module doc."""

    def __init__(self, settings: DevStackSettings | None = None) -> None:
        self.settings = settings or DevStackSettings()
        self.state_dir = self.settings.state_dir.expanduser().resolve()
        self.attached = False
        self._spawned: dict[str, Spawned] = {}
        self._state: dict[str, Any] | None = None

    # -- paths and recorded state --------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def env_path(self) -> Path:
        return self.state_dir / "env.sh"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def load_state(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise DevStackError(f"unreadable state file {self.state_path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise DevStackError(f"{self.state_path} is not a devstack state file of version {STATE_VERSION}")
        return data

    def _require_state(self) -> dict[str, Any]:
        state = self._state or self.load_state()
        if state is None:
            raise DevStackError(f"no stack is running from {self.state_dir} (no state.json)")
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        self._state = state
        tmp = self.state_path.with_name("state.json.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        tmp.replace(self.state_path)

    @staticmethod
    def records(state: dict[str, Any]) -> list[ProcessRecord]:
        return [ProcessRecord.from_json(data) for data in state.get("processes", {}).values()]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One ``up``/``down`` at a time per state dir."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / "lock").open("a+") as handle:

            def acquired() -> bool:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            wait_until(acquired, timeout=self.settings.startup_timeout * 3, what=f"the lock on {self.state_dir}")
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- the public API --------------------------------------------------------------------------------

    @property
    def edge_url(self) -> str:
        return str(self._require_state()["edge_url"])

    @property
    def edge_port(self) -> int:
        return int(self._require_state()["ports"]["edge"])

    def env(self) -> dict[str, str]:
        """The environment a client of this stack needs (what ``env.sh`` exports)."""
        return {str(k): str(v) for k, v in self._require_state()["env"].items()}

    def start(self) -> DevStack:
        """Start the stack, or attach to the one already up and healthy in this state dir."""
        with self._locked():
            existing = self.load_state()
            if existing is not None:
                if existing.get("ready") and self._healthy(existing):
                    self._state = existing
                    self.attached = True
                    log.info("already up", extra={"state_dir": str(self.state_dir), "edge": existing["edge_url"]})
                    return self
                log.info("stale state: cleaning up what is left", extra={"state_dir": str(self.state_dir)})
                self._stop_recorded(existing)
                self._forget()
            try:
                self._start_fresh()
            except BaseException:
                log.error("start failed: stopping what was started", extra={"state_dir": str(self.state_dir)})
                with contextlib.suppress(Exception):
                    self._stop_recorded(self._state or {"processes": {}})
                self._forget()
                raise
        return self

    def stop(self) -> list[str]:
        """Stop every process of this state dir's stack (recorded pids only). Returns the names stopped."""
        with self._locked():
            state = self._state or self.load_state()
            stopped = self._stop_recorded(state) if state else []
            self._forget()
        return stopped

    def status(self) -> list[ServiceStatus]:
        """Each recorded process (and an ``aws_upstream``): pid, port, alive, answers its health path."""
        state = self._state or self.load_state()
        return [] if state is None else self.status_of(state)

    @classmethod
    def status_of(cls, state: dict[str, Any]) -> list[ServiceStatus]:
        host = str(state["host"])
        health = state.get("health_paths", services.HEALTH_PATHS)
        result: list[ServiceStatus] = []
        for record in cls.records(state):
            port = state["ports"].get(record.name)
            running = record.is_ours()
            ok = running and port is not None and services.answers(host, int(port), health[record.name])
            url = f"http://{host}:{port}" if port is not None else None
            result.append(ServiceStatus(record.name, record.pid, port, url, running, ok))
        upstream = state.get("aws_upstream")
        if upstream:
            up = Upstream(services.AWS_UPSTREAM, upstream, services.HEALTH_PATHS[services.AWS_UPSTREAM])
            ok = services.answers(up.host, up.port, up.health_path)
            result.append(ServiceStatus(services.AWS_UPSTREAM, None, up.port, upstream, ok, ok))
        return result

    def is_healthy(self) -> bool:
        state = self._state or self.load_state()
        return state is not None and bool(state.get("ready")) and self._healthy(state)

    def first_exited(self) -> str | None:
        """The name of a process of ours that has exited, if any (for a foreground ``up``)."""
        state = self._require_state()
        for record in self.records(state):
            spawned = self._spawned.get(record.name)
            if spawned is not None and spawned.popen.poll() is not None:
                return record.name
            if not record.is_ours():
                return record.name
        return None

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.attached:
            self.stop()

    # -- internals -------------------------------------------------------------------------------------

    def _healthy(self, state: dict[str, Any]) -> bool:
        return all(s.answers for s in self.status_of(state))

    def _forget(self) -> None:
        self._state = None
        self._spawned.clear()
        for path in (self.state_path, self.env_path):
            path.unlink(missing_ok=True)

    def _stop_recorded(self, state: dict[str, Any]) -> list[str]:
        processes: list[tuple[ProcessRecord, subprocess.Popen[bytes] | None]] = []
        for record in reversed(self.records(state)):  # the edge first: no request reaches a dying upstream
            spawned = self._spawned.get(record.name)
            popen = spawned.popen if spawned is not None and spawned.record.pid == record.pid else None
            processes.append((record, popen))
        return stop_all(processes, timeout=self.settings.stop_timeout)

    def _record(self, state: dict[str, Any], spawned: Spawned, ports: dict[str, int]) -> None:
        self._spawned[spawned.record.name] = spawned
        state["processes"][spawned.record.name] = spawned.record.to_json()
        state["ports"].update(ports)
        self._save_state(state)

    def _spawn(self, launch: services.Launch) -> Spawned:
        if launch.port_file is not None:
            launch.port_file.unlink(missing_ok=True)
        return spawn(
            launch.name,
            launch.argv,
            cwd=launch.cwd,
            env=launch.env,
            log_path=self.logs_dir / f"{launch.name}.log",
            markers=launch.markers,
        )

    def _wait_ready(self, launch: services.Launch, spawned: Spawned) -> int:
        """Wait until the process answers on its health path; return its port."""
        host = self.settings.host
        timeout = self.settings.startup_timeout

        def exited() -> str | None:
            code = spawned.popen.poll()
            if code is None:
                return None
            log_file = Path(spawned.record.log)
            return f"{launch.name} exited with code {code}; log {log_file}:\n{tail(log_file)}"

        if launch.port is not None:
            port = launch.port
        else:
            assert launch.port_file is not None
            port_file = launch.port_file
            port = wait_until(
                lambda: services.read_port_file(port_file),
                timeout=timeout,
                what=f"{launch.name} to write its port to {port_file}",
                abort=exited,
            )
        wait_until(
            lambda: services.answers(host, port, launch.health_path),
            timeout=timeout,
            what=f"{launch.name} to answer on http://{host}:{port}{launch.health_path}",
            abort=exited,
        )
        log.info("answers", extra={"service": launch.name, "port": port, "pid": spawned.record.pid})
        return port

    def _start_with_retries(
        self,
        state: dict[str, Any],
        make: Callable[[], services.Launch],
        first: tuple[services.Launch, Spawned],
    ) -> int:
        """Wait for an already spawned process; if it died (say a port was taken meanwhile), try anew."""
        launch, spawned = first
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                return self._wait_ready(launch, spawned)
            except WaitTimeoutError as exc:
                if spawned.popen.poll() is None or attempt == _PORT_ATTEMPTS:
                    raise DevStackError(str(exc)) from exc
                log.warning("exited while starting: trying again", extra={"service": launch.name, "error": str(exc)})
                launch = make()
                spawned = self._spawn(launch)
                self._record(state, spawned, {launch.name: launch.port or 0, **launch.extra_ports})
        raise AssertionError("unreachable")

    def _start_fresh(self) -> None:
        settings = self.settings
        host = settings.host
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if settings.edge_port and not port_is_free(host, settings.edge_port):
            raise ConfigurationError(
                f"edge port {host}:{settings.edge_port} is taken (another devstack or LocalStack?): "
                "stop it, or choose another port with --edge-port / DEVSTACK_EDGE_PORT"
            )
        if not shutil.which(settings.node) and settings.aws_upstream is None:
            raise ConfigurationError(f"Node.js executable {settings.node!r} not found (DEVSTACK_NODE)")

        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "state_dir": str(self.state_dir),
            "host": host,
            "region": settings.region,
            "aws_upstream": settings.aws_upstream,
            "ready": False,
            "ports": {},
            "health_paths": dict(services.HEALTH_PATHS),
            "processes": {},
        }
        self._save_state(state)

        makers: dict[str, Callable[[], services.Launch]] = {}
        # The emulator reads datasets from and writes batch output to S3: moto's, or the upstream's.
        moto_port = free_port(host)
        s3_endpoint = settings.aws_upstream or f"http://{host}:{moto_port}"
        if settings.aws_upstream is None:
            try:
                services.require_kinesis_local(settings)
            except services.KinesisLocalMissingError as exc:
                raise ConfigurationError(str(exc)) from exc
            makers[services.KINESIS] = lambda: services.kinesis_mock(
                settings, self.state_dir, free_port(host), free_port(host)
            )
            makers[services.MOTO] = lambda: services.moto_server(settings, self.state_dir, moto_port)
        if settings.personalize:
            makers[services.PERSONALIZE] = lambda: services.personalize_emulator(
                settings, self.state_dir, s3_endpoint_url=s3_endpoint
            )

        # Launch everything at once, then wait for each: start-up time is the slowest one's, not the sum.
        launched: dict[str, tuple[services.Launch, Spawned]] = {}
        for name, make in makers.items():
            launch = make()
            spawned = self._spawn(launch)
            launched[name] = (launch, spawned)
            self._record(state, spawned, {name: launch.port or 0, **launch.extra_ports})
        ports: dict[str, int] = {}
        for name, first in launched.items():
            ports[name] = self._start_with_retries(state, makers[name], first)
            state["ports"][name] = ports[name]
        self._save_state(state)

        edge_config = self._edge_config(ports)
        config_path = self.state_dir / "edge.json"
        config_path.write_text(json.dumps(edge_config.to_json(), indent=2) + "\n", encoding="utf-8")
        edge_launch = services.edge(settings, self.state_dir, config_path, settings.edge_port)
        edge_spawned = self._spawn(edge_launch)
        self._record(state, edge_spawned, {})
        try:
            edge_port = self._wait_ready(edge_launch, edge_spawned)
        except WaitTimeoutError as exc:
            raise DevStackError(str(exc)) from exc
        edge_url = f"http://{host}:{edge_port}"
        state["ports"][services.EDGE] = edge_port
        state["edge_url"] = edge_url
        self._save_state(state)

        target = Target(edge_url, settings.region, settings.access_key_id, settings.secret_access_key)
        resources = Resources(
            stream_name=settings.stream_name,
            shards=settings.shards,
            buckets=(settings.datasets_bucket, settings.dead_letter_bucket),
            table_name=settings.similar_games_table,
            tracking_id=settings.tracking_id if settings.personalize else None,
        )
        try:
            provision(target, resources, timeout=settings.startup_timeout)
        except ProvisioningError as exc:
            raise DevStackError(str(exc)) from exc

        if settings.aws_upstream is None:
            kcl_kinesis = f"http://{host}:{ports[services.KINESIS]}"
            kcl_dynamodb = f"http://{host}:{ports[services.MOTO]}"
        else:
            kcl_kinesis = kcl_dynamodb = settings.aws_upstream
        env = envfile.stack_env(
            edge_url=edge_url,
            region=settings.region,
            access_key_id=settings.access_key_id,
            secret_access_key=settings.secret_access_key,
            kcl_kinesis_endpoint=kcl_kinesis,
            kcl_dynamodb_endpoint=kcl_dynamodb,
            stream_name=settings.stream_name,
            tracking_id=settings.tracking_id,
            application_name=settings.application_name,
            dead_letter_url=f"s3://{settings.dead_letter_bucket}/{settings.dead_letter_prefix}",
        )
        state["env"] = env
        state["ready"] = True
        envfile.write(self.env_path, env)
        self._save_state(state)
        log.info("up", extra={"edge": edge_url, "ports": state["ports"], "state_dir": str(self.state_dir)})

    def _edge_config(self, ports: dict[str, int]) -> EdgeConfig:
        host = self.settings.host
        upstreams: dict[str, Upstream] = {}
        routes: dict[str, str] = {}
        health: dict[str, str] = {}
        if self.settings.aws_upstream is None:
            for name in (services.KINESIS, services.MOTO):
                upstreams[name] = Upstream(name, f"http://{host}:{ports[name]}", services.HEALTH_PATHS[name])
            routes["kinesis"] = services.KINESIS
            default = services.MOTO
            health.update(_OWN_HEALTH_SERVICES)
        else:
            name = services.AWS_UPSTREAM
            upstreams[name] = Upstream(name, self.settings.aws_upstream, services.HEALTH_PATHS[name])
            default = name
            health.update(dict.fromkeys(_OWN_HEALTH_SERVICES, name))
        if self.settings.personalize:
            name = services.PERSONALIZE
            upstreams[name] = Upstream(name, f"http://{host}:{ports[name]}", services.HEALTH_PATHS[name])
            routes["personalize"] = name
            health["personalize"] = name
        return EdgeConfig(
            upstreams=upstreams, routes=RouteTable(routes=routes, default=default), health_services=health
        )


def describe(statuses: list[ServiceStatus]) -> str:
    """A small table for ``devstack status``."""
    lines = [f"{'SERVICE':<12} {'PID':>8} {'PORT':>6}  {'STATE':<12} URL"]
    for s in statuses:
        state = "answers" if s.answers else ("running" if s.running else "down")
        pid = str(s.pid) if s.pid is not None else "-"
        port = str(s.port) if s.port is not None else "-"
        lines.append(f"{s.name:<12} {pid:>8} {port:>6}  {state:<12} {s.url or '-'}")
    return "\n".join(lines)
