"""HTTP/1.1 keep-alive connections to one endpoint, on asyncio, parsed with httptools.

A caller that gives up on a request (a timeout cancels it) loses the connection with it: the answer
may still arrive, so that connection is closed, never reused. At most ``max_connections`` are open or
being opened at once; a request waits for one to be free.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass, field
from typing import Final, cast
from urllib.parse import urlsplit

import httptools

DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class HttpError(Exception):
    """The connection failed or the answer was not HTTP (retryable)."""


@dataclass(slots=True)
class HttpAnswer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class _Connection(asyncio.Protocol):
    """One connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._waiter: asyncio.Future[HttpAnswer] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._answer = HttpAnswer(0)
        self._chunks: list[bytes] = []
        self._header_name = b""

    # --- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"malformed HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HttpError(f"connection lost: {exc}" if exc else "connection closed by the server"))

    # --- httptools callbacks -----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._answer.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        self._answer.status = parser.get_status_code()
        self._answer.body = b"".join(self._chunks)
        if not parser.should_keep_alive():
            self.closed = True
        self._parser = None
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(self._answer)

    # --- use ---------------------------------------------------------------------------------------

    def _fail(self, error: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        self._parser = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def send(self, request: bytes) -> asyncio.Future[HttpAnswer]:
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self._answer = HttpAnswer(0)
        self._chunks = []
        self._parser = httptools.HttpResponseParser(self)
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpEndpoint:
    """Keep-alive connections to the endpoint at ``url`` (http or https)."""

    def __init__(self, url: str, *, max_connections: int = 128, connect_timeout: float = 1.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint URL: {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORTS[parts.scheme]
        default_port = parts.port is None or parts.port == DEFAULT_PORTS[parts.scheme]
        #: The Host header (and the signed host).
        self.authority = self.host if default_port else f"{self.host}:{self.port}"
        #: Path prefix of the endpoint URL, without a trailing slash.
        self.base_path = parts.path.rstrip("/")
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._connect_timeout = connect_timeout
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(max_connections)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection, self.host, self.port, ssl=self._ssl, server_hostname=self.host if self._ssl else None
                )
        except (OSError, TimeoutError) as exc:
            raise HttpError(f"cannot connect: {exc or type(exc).__name__}") from None
        return connection

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> HttpAnswer:
        """POST ``body``; the answer (any status). :class:`HttpError` when the connection fails."""
        head = [f"POST {path} HTTP/1.1\r\n"]
        head.extend(f"{name}: {value}\r\n" for name, value in headers.items())
        head.append(f"content-length: {len(body)}\r\n\r\n")
        request = "".join(head).encode("latin-1") + body
        async with self._slots:
            reused = True
            connection: _Connection | None = None
            while self._idle:
                candidate = self._idle.pop()
                if not candidate.closed:
                    connection = candidate
                    break
            if connection is None:
                reused = False
                connection = await self._connect()
            done = False
            try:
                try:
                    answer = await connection.send(request)
                except HttpError:
                    if not reused:
                        raise
                    # A kept-alive connection the server closed meanwhile: once more on a new one.
                    connection.close()
                    connection = await self._connect()
                    answer = await connection.send(request)
                done = True
                return answer
            finally:
                if done and not connection.closed:
                    self._idle.append(connection)
                else:
                    connection.close()

    def close(self) -> None:
        """Close the idle connections."""
        while self._idle:
            self._idle.pop().close()
