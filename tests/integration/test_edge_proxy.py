"""The edge as a proxy, in-process, against a fake upstream that echoes what it received."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import h11
import pytest

from devstack.edge import Edge, EdgeConfig, Upstream
from devstack.processes import free_port
from devstack.routing import RouteTable

SIGNED_KINESIS = (
    "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/kinesis/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=abc"
)


class _Loop:
    """An event loop in a thread, so the tests can talk to the servers with blocking clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, close_after: bool) -> None:
    """Answer each request with a JSON description of it; ``close_after`` drops the connection after
    each response without saying so (as an upstream whose keep-alive timed out would)."""
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                continue
            if not isinstance(event, h11.Request):
                break
            body = b""
            while True:
                part = conn.next_event()
                if part is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(part, h11.Data):
                    body += part.data
                elif isinstance(part, h11.EndOfMessage):
                    break
            payload = json.dumps(
                {
                    "method": event.method.decode(),
                    "target": event.target.decode(),
                    "headers": [[k.decode(), v.decode()] for k, v in event.headers.raw_items()],
                    "body_len": len(body),
                    "body_sha": hashlib.sha256(body).hexdigest(),
                }
            ).encode()
            headers = [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))),
                ("X-Up", "1"),
            ]
            writer.write(conn.send(h11.Response(status_code=201, headers=headers)))
            if event.method != b"HEAD":
                writer.write(conn.send(h11.Data(data=payload)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            if close_after:
                break
            conn.start_next_cycle()
    finally:
        writer.close()


@contextlib.contextmanager
def _stack(*, close_after: bool = False, down: bool = False) -> Iterator[int]:
    """An echo upstream (or, with ``down``, a port nobody listens on) behind an edge; yields the edge port."""
    loop = _Loop()
    stop = asyncio.Event()
    try:

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _echo(reader, writer, close_after=close_after)

        if down:
            up_port = free_port()
            upstream_server = None
        else:
            upstream_server = loop.run(asyncio.start_server(echo, "127.0.0.1", 0))
            up_port = upstream_server.sockets[0].getsockname()[1]
        config = EdgeConfig(
            upstreams={"echo": Upstream("echo", f"http://127.0.0.1:{up_port}", "/health")},
            routes=RouteTable(routes={}, default="echo"),
            health_services={"kinesis": "echo"},
        )
        edge = Edge(config)
        loop.run(edge.start("127.0.0.1", 0))
        serving = asyncio.run_coroutine_threadsafe(edge.serve_until(stop), loop.loop)
        yield edge.port
        loop.loop.call_soon_threadsafe(stop.set)
        serving.result(10)
        if upstream_server is not None:
            upstream_server.close()
    finally:
        loop.close()


def _request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_request_goes_through_unchanged_and_response_comes_back() -> None:
    body = b'{"StreamName":"clickstream"}'
    headers = {
        "Authorization": SIGNED_KINESIS,
        "X-Amz-Target": "Kinesis_20131202.DescribeStream",
        "Host": "x:1",
    }
    with _stack() as port:
        status, response_headers, raw = _request(port, "POST", "/a/b?c=d&e=%2F", body, headers)
    assert status == 201
    assert response_headers["X-Up"] == "1"
    seen = json.loads(raw)
    assert seen["method"] == "POST"
    assert seen["target"] == "/a/b?c=d&e=%2F"
    sent = {k.lower(): v for k, v in seen["headers"]}
    assert sent["host"] == "x:1"  # Host as the client sent it: signatures still hold downstream
    assert sent["authorization"] == SIGNED_KINESIS
    assert sent["x-amz-target"] == "Kinesis_20131202.DescribeStream"
    assert seen["body_len"] == len(body)
    assert seen["body_sha"] == hashlib.sha256(body).hexdigest()


def test_chunked_request_body_is_streamed() -> None:
    chunks = [b"x" * 70_000, b"y" * 5, b"z" * 100_000]
    with _stack() as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("PUT", "/bucket/key", body=iter(chunks), encode_chunked=True)
        response = conn.getresponse()
        seen = json.loads(response.read())
        conn.close()
    assert response.status == 201
    assert seen["body_len"] == sum(map(len, chunks))
    assert seen["body_sha"] == hashlib.sha256(b"".join(chunks)).hexdigest()


def test_head_and_keep_alive_on_one_connection() -> None:
    with _stack() as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for method in ("HEAD", "GET", "HEAD", "GET"):
            conn.request(method, "/x")
            response = conn.getresponse()
            data = response.read()
            assert response.status == 201
            assert (data == b"") == (method == "HEAD")
        conn.close()


def test_expect_100_continue() -> None:
    body = b"payload" * 1000
    with _stack() as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"PUT /bucket/key HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 100")
        sock.sendall(body)
        reply = b""
        while b"body_sha" not in reply:
            reply += sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 201")


def test_upstream_that_drops_idle_connections_is_retried() -> None:
    with _stack(close_after=True) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(5):
            conn.request("POST", f"/n/{i}", body=b"{}")
            response = conn.getresponse()
            assert response.status == 201, response.read()
            assert json.loads(response.read())["target"] == f"/n/{i}"
        conn.close()


def test_upstream_down_is_a_502_and_health_says_so() -> None:
    with _stack(down=True) as port:
        status, _, raw = _request(port, "POST", "/", b"{}", {"Authorization": SIGNED_KINESIS})
        assert status == 502
        assert json.loads(raw)["__type"] == "ServiceUnavailableException"
        status, _, raw = _request(port, "GET", "/_localstack/health")
        assert status == 200
        assert json.loads(raw)["services"] == {"kinesis": "error"}
        status, _, raw = _request(port, "GET", "/_devstack/health")
        assert status == 503
        assert json.loads(raw)["upstreams"]["echo"]["status"] == "error"


def test_health_when_up() -> None:
    with _stack() as port:
        status, _, raw = _request(port, "GET", "/_localstack/health")
        assert status == 200
        assert json.loads(raw)["services"] == {"kinesis": "running"}
        status, _, _ = _request(port, "GET", "/_devstack/health")
        assert status == 200


@pytest.mark.parametrize("garbage", [b"NOT HTTP\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"])
def test_malformed_requests_get_a_4xx(garbage: bytes) -> None:
    with _stack() as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(garbage)
        assert sock.recv(1024).startswith(b"HTTP/1.1 400")
