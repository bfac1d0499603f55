"""The edge: one LocalStack-style HTTP/1.1 endpoint in front of kinesis-mock, moto and the emulator.

Each request goes, unchanged (method, target, headers including ``Host`` as the client sent it, body), to
the upstream that serves the service it is signed for (see :mod:`devstack.routing`); the response comes
back streamed, with its status and headers. Upstream connections are kept alive and reused.

Besides proxying, the edge answers ``GET /_localstack/health`` (always 200, LocalStack's shape) and
``GET /_devstack/health`` (same body plus the upstreams, 503 while one of them does not answer).

Run it as ``python -m devstack.edge --config edge.json --port 4566 [--port-file F]``; the launcher writes
the config (upstream URLs and routes), see :class:`EdgeConfig`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import h11

from devstack.log import configure_logging
from devstack.routing import DEFAULT_ROUTES, RouteTable, detect_service

log = logging.getLogger("devstack.edge")

HEALTH_PATHS: Final = ("/_localstack/health", "/_devstack/health")
#: Request bodies up to this size with a known length are read whole first, so a request sent on a
#: kept-alive upstream connection that the upstream had meanwhile closed can be sent again.
BUFFER_LIMIT: Final = 8 * 1024 * 1024
READ_SIZE: Final = 256 * 1024
MAX_IDLE_PER_UPSTREAM: Final = 128
CONNECT_TIMEOUT: Final = 5.0
PROBE_TIMEOUT: Final = 2.0
_HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate", b"proxy-authorization"}
    | {b"te", b"trailer", b"upgrade", b"expect"}
)
VERSION: Final = "0.1.0"


@dataclass(frozen=True)
class Upstream:
    """A server behind the edge: where it listens and which path answers when it is up."""

    name: str
    url: str
    health_path: str = "/"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)


@dataclass(frozen=True)
class EdgeConfig:
    """What the edge forwards where. ``health_services`` names, per reported service, its upstream."""

    upstreams: Mapping[str, Upstream]
    routes: RouteTable = DEFAULT_ROUTES
    health_services: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        wanted = {*self.routes.routes.values(), self.routes.default, *self.health_services.values()}
        missing = sorted(name for name in wanted if name not in self.upstreams)
        if missing:
            raise ValueError(f"edge config names upstreams it does not define: {', '.join(missing)}")
        for upstream in self.upstreams.values():
            if urlsplit(upstream.url).scheme != "http":
                raise ValueError(f"upstream {upstream.name}: only http:// URLs are supported: {upstream.url}")

    def to_json(self) -> dict[str, Any]:
        return {
            "upstreams": {name: {"url": up.url, "health_path": up.health_path} for name, up in self.upstreams.items()},
            "routes": dict(self.routes.routes),
            "default": self.routes.default,
            "health_services": dict(self.health_services),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EdgeConfig:
        upstreams = {
            name: Upstream(name=name, url=str(spec["url"]), health_path=str(spec.get("health_path", "/")))
            for name, spec in dict(data["upstreams"]).items()
        }
        routes = RouteTable(routes=dict(data.get("routes", {})), default=str(data.get("default", "moto")))
        return cls(upstreams=upstreams, routes=routes, health_services=dict(data.get("health_services", {})))


class UpstreamUnavailableError(ConnectionError):
    """The upstream refused or dropped the connection before answering."""


class _Peer:
    """One side of a proxied exchange: an h11 state machine over an asyncio stream."""

    __slots__ = ("_out", "conn", "reader", "writer")

    def __init__(
        self,
        role: type[h11.CLIENT] | type[h11.SERVER],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(role, max_incomplete_event_size=64 * 1024)
        self._out: list[bytes] = []

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.reader.read(READ_SIZE))
                continue
            return event

    def send(self, event: Any) -> None:
        """Queue ``event``'s bytes; :meth:`flush` writes them (one write, one syscall, per flush)."""
        data = self.conn.send(event)
        if data:
            self._out.append(data)

    async def flush(self) -> None:
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()
        await self.writer.drain()

    async def read_body(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise ConnectionError("peer went away mid-message")

    async def drain_body(self) -> None:
        if self.conn.their_state is h11.SEND_BODY:
            await self.read_body()

    async def send_json(self, status: int, payload: Mapping[str, Any], *, head: bool = False) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        headers = [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(data)).encode())]
        self.send(h11.Response(status_code=status, headers=headers))
        if not head:
            self.send(h11.Data(data=data))
        self.send(h11.EndOfMessage())
        await self.flush()

    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _Pool:
    """Kept-alive connections to one upstream."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._idle: list[_Peer] = []

    async def acquire(self, *, fresh: bool = False) -> tuple[_Peer, bool]:
        """A connection and whether it was reused (a reused one may turn out to be closed meanwhile).

        ``fresh`` opens a new one: for a streamed request body, which could not be sent again.
        """
        while self._idle and not fresh:
            candidate = self._idle.pop()
            if candidate.usable():
                return candidate, True
            candidate.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream.host, self.upstream.port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamUnavailableError(f"{self.upstream.name} at {self.upstream.url}: {exc}") from exc
        return _Peer(h11.CLIENT, reader, writer), False

    def release(self, peer: _Peer) -> None:
        conn = peer.conn
        if (
            conn.our_state is h11.DONE
            and conn.their_state is h11.DONE
            and peer.usable()
            and len(self._idle) < MAX_IDLE_PER_UPSTREAM
        ):
            conn.start_next_cycle()
            self._idle.append(peer)
        else:
            peer.close()

    def close(self) -> None:
        for peer in self._idle:
            peer.close()
        self._idle.clear()


def _forwarded_headers(headers: Sequence[tuple[bytes, bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(raw, value) for raw, lower, value in headers if lower not in _HOP_BY_HOP]


def _raw_items(message: h11.Request | h11.Response) -> list[tuple[bytes, bytes, bytes]]:
    """(name as sent, lower-case name, value) for each header of ``message``."""
    return [(raw, raw.lower(), value) for raw, value in message.headers.raw_items()]


class Edge:
    """The proxy: ``start()`` binds, ``serve_until(event)`` serves until the event is set."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self._pools = {name: _Pool(up) for name, up in config.upstreams.items()}
        self._server: asyncio.Server | None = None
        self._started = time.time()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("edge is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve_connection, host, port, limit=READ_SIZE)

    async def serve_until(self, stop: asyncio.Event) -> None:
        assert self._server is not None
        async with self._server:
            await stop.wait()
        for pool in self._pools.values():
            pool.close()

    # -- one client connection -------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Peer(h11.SERVER, reader, writer)
        try:
            while True:
                event = await client.next_event()
                if not isinstance(event, h11.Request):
                    break
                await self._handle(client, event)
                if client.conn.our_state is h11.DONE and client.conn.their_state is h11.DONE:
                    client.conn.start_next_cycle()
                else:
                    break
        except h11.RemoteProtocolError as exc:
            if client.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with contextlib.suppress(Exception):
                    await client.send_json(exc.error_status_hint, {"message": str(exc)})
        except (ConnectionError, asyncio.IncompleteReadError, h11.LocalProtocolError):
            pass
        except Exception:
            log.exception("edge connection failed")
        finally:
            client.close()

    async def _handle(self, client: _Peer, request: h11.Request) -> None:
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        headers = _raw_items(request)
        lower = {name.decode("latin-1"): value.decode("latin-1") for _, name, value in headers}

        if path in HEALTH_PATHS and request.method in (b"GET", b"HEAD"):
            await client.drain_body()
            status, report = await self._health(devstack=path == "/_devstack/health")
            await client.send_json(status, report, head=request.method == b"HEAD")
            return

        name = self.config.routes.upstream_for(detect_service(path, query, lower))
        pool = self._pools[name]

        if client.conn.client_is_waiting_for_100_continue:
            client.send(h11.InformationalResponse(status_code=100, headers=[]))
            await client.flush()

        length = lower.get("content-length")
        body: bytes | None = None
        if "transfer-encoding" not in lower and (length is None or int(length) <= BUFFER_LIMIT):
            body = await client.read_body()

        forwarded = _forwarded_headers(headers)
        if "host" not in lower:
            forwarded.append((b"Host", f"{pool.upstream.host}:{pool.upstream.port}".encode()))
        upstream_request = h11.Request(method=request.method, target=request.target, headers=forwarded)

        for attempt in (1, 2):
            try:
                upstream, reused = await pool.acquire(fresh=body is None)
            except UpstreamUnavailableError as exc:
                await client.drain_body()
                await self._unavailable(client, name, exc)
                return
            try:
                answered = await self._exchange(client, upstream, upstream_request, body)
            except BaseException:
                upstream.close()  # mid-response failure (or cancellation): the connection is unusable
                raise
            if answered:
                pool.release(upstream)
                return
            upstream.close()
            if not (reused and body is not None and attempt == 1):
                await self._unavailable(client, name, UpstreamUnavailableError("connection dropped"))
                return
            log.debug("retrying on a fresh upstream connection", extra={"upstream": name})

    async def _exchange(self, client: _Peer, upstream: _Peer, request: h11.Request, body: bytes | None) -> bool:
        """Send ``request`` and relay the response. False if the upstream failed before answering."""
        answered = False
        try:
            upstream.send(request)
            if body is not None:
                if body:
                    upstream.send(h11.Data(data=body))
                upstream.send(h11.EndOfMessage())
            else:
                while True:
                    event = await client.next_event()
                    if not isinstance(event, h11.Data | h11.EndOfMessage):
                        raise ConnectionError("client went away mid-request")
                    upstream.send(event)
                    await upstream.flush()
                    if isinstance(event, h11.EndOfMessage):
                        break
            await upstream.flush()
            while True:
                event = await upstream.next_event()
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    answered = True
                    headers = _forwarded_headers(_raw_items(event))
                    client.send(h11.Response(status_code=event.status_code, headers=headers, reason=event.reason))
                elif isinstance(event, h11.Data):
                    client.send(event)
                    await client.flush()
                elif isinstance(event, h11.EndOfMessage):
                    client.send(h11.EndOfMessage())
                    await client.flush()
                    return True
                else:  # ConnectionClosed before the end of the response
                    raise ConnectionError("upstream closed the connection")
        except (ConnectionError, OSError, asyncio.IncompleteReadError, h11.RemoteProtocolError) as exc:
            if answered:
                raise ConnectionError(f"upstream failed mid-response: {exc}") from exc
            return False

    # -- local answers -----------------------------------------------------------------------------------

    async def _unavailable(self, client: _Peer, name: str, exc: Exception) -> None:
        log.warning("upstream unavailable", extra={"upstream": name, "error": str(exc)})
        if client.conn.our_state is not h11.SEND_RESPONSE:
            raise ConnectionError("cannot answer: response already started")
        payload = {"__type": "ServiceUnavailableException", "message": f"devstack edge: {exc}"}
        await client.send_json(502, payload)

    async def _health(self, *, devstack: bool) -> tuple[int, dict[str, Any]]:
        names = list(self.config.upstreams)
        results = await asyncio.gather(*(probe(self.config.upstreams[name]) for name in names))
        up = dict(zip(names, results, strict=True))
        services = {svc: "running" if up[name] else "error" for svc, name in self.config.health_services.items()}
        body: dict[str, Any] = {"services": services, "edition": "devstack", "version": VERSION}
        if not devstack:
            return 200, body
        body["upstreams"] = {
            name: {"url": self.config.upstreams[name].url, "status": "running" if ok else "error"}
            for name, ok in up.items()
        }
        body["uptime_seconds"] = round(time.time() - self._started, 3)
        return (200 if all(up.values()) else 503), body


async def probe(upstream: Upstream, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when ``GET health_path`` on the upstream answers with a status below 500."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
            host = f"{upstream.host}:{upstream.port}"
            writer.write(f"GET {upstream.health_path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            status_line = await reader.readline()
        parts = status_line.split()
        return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and int(parts[1]) < 500
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()


def _write_port_file(path: Path, port: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n", encoding="utf-8")
    tmp.replace(path)


async def run(config: EdgeConfig, host: str, port: int, port_file: Path | None) -> None:
    edge = Edge(config)
    await edge.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if port_file is not None:
        _write_port_file(port_file, edge.port)
    log.info(
        "edge listening",
        extra={"host": host, "port": edge.port, "upstreams": {n: u.url for n, u in config.upstreams.items()}},
    )
    await edge.serve_until(stop)
    log.info("edge stopped")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack-edge", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", type=Path, required=True, help="edge config JSON (upstreams, routes)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566, help="0 picks a free port (see --port-file)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--state-dir", type=Path, help="the devstack state dir this edge belongs to")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        config = EdgeConfig.from_json(json.loads(args.config.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("bad edge config", extra={"config": str(args.config), "error": str(exc)})
        return 2
    try:
        asyncio.run(run(config, args.host, args.port, args.port_file))
    except OSError as exc:
        log.error("edge cannot listen", extra={"host": args.host, "port": args.port, "error": str(exc)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
