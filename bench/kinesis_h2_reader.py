"""A plain GetRecords reader over HTTP/2 (h2c with prior knowledge), the protocol KCL itself uses.

kinesis-mock serves HTTP/2 at about half the speed of HTTP/1.1, and KCL's Java SDK forces HTTP/2, so
the HTTP/1.1 reader of ``e2e_pipeline.plain_read`` is a rate KCL can never reach on this stand-in. This
reader makes the same calls (one thread per shard: GetShardIterator TRIM_HORIZON, then GetRecords with
a limit until the shard has given what was put into it) over HTTP/2: the stand-in's own limit for a
client speaking KCL's protocol.

Each call is one ``curl --http2-prior-knowledge`` (nghttp2), SigV4-signed with botocore. Python's
HTTP/2 clients stall on kinesis-mock 0.6.2 as soon as a response outgrows the initial 64 KiB
flow-control window (seen with httpx and with a client on the ``h2`` library), while curl, like KCL's
Netty client, reads multi-megabyte GetRecords answers from it. Starting curl costs a few milliseconds
per call, against hundreds of milliseconds for a GetRecords of thousands of records, so the figure is the
stand-in's HTTP/2 rate or slightly under it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from e2e_support import ReadTarget, iterator_start, run_started_together

TARGET_PREFIX = "Kinesis_20131202."


@dataclass
class H2ReadResult:
    records: int
    seconds: float
    calls: int
    http_version: str = "HTTP/2"

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("nan")


class CurlH2Kinesis:
    """Just enough of the Kinesis JSON protocol over h2c for a reader."""

    def __init__(self, endpoint: str, region: str, access_key: str, secret_key: str) -> None:
        curl = shutil.which("curl")
        if curl is None:
            raise RuntimeError("curl is not installed: the HTTP/2 reader needs it")
        self._curl = curl
        self._endpoint = endpoint.rstrip("/") + "/"
        self._signer = SigV4Auth(Credentials(access_key, secret_key), "kinesis", region)

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(body).encode()
        request = AWSRequest(
            method="POST",
            url=self._endpoint,
            data=payload,
            headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET_PREFIX + operation},
        )
        self._signer.add_auth(request)
        argv = [self._curl, "--silent", "--show-error", "--http2-prior-knowledge", "--max-time", "120"]
        for name, value in request.headers.items():
            if name.lower() != "host":
                argv += ["-H", f"{name}: {value}"]
        argv += ["--data-binary", "@-", "--write-out", "\n%{http_code} %{http_version}", self._endpoint]
        done = subprocess.run(argv, input=payload, capture_output=True, check=False, timeout=150)
        if done.returncode != 0:
            raise RuntimeError(f"{operation}: curl exited {done.returncode}: {done.stderr.decode(errors='replace')}")
        text, _, trailer = done.stdout.rpartition(b"\n")
        status, _, version = trailer.decode().partition(" ")
        if status != "200" or version != "2":
            raise RuntimeError(f"{operation}: HTTP {status} over HTTP/{version}: {text[:300]!r}")
        result: dict[str, Any] = json.loads(text)
        return result


def plain_read_h2(
    target: ReadTarget,
    *,
    limit: int = 10_000,
    timeout: float = 300,
    after: Mapping[str, str] | None = None,
) -> H2ReadResult:
    """One thread per shard, as ``plain_read`` but over HTTP/2; raises if a shard fails or times out."""
    stream, expected = target.stream, target.expected
    shards = sorted(expected)
    client = CurlH2Kinesis(target.endpoint, target.region, target.access_key, target.secret_key)
    client.call("DescribeStreamSummary", {"StreamName": stream})
    barrier = threading.Barrier(len(shards) + 1)
    lock = threading.Lock()
    totals = {"records": 0, "calls": 0}
    errors: list[BaseException] = []

    def run(shard: str) -> None:
        barrier.wait()
        began = time.monotonic()
        try:
            iterator = client.call(
                "GetShardIterator", {"StreamName": stream, "ShardId": shard, **iterator_start(after, shard)}
            )["ShardIterator"]
            got = 0
            while got < expected[shard]:
                if time.monotonic() - began > timeout:
                    raise TimeoutError(f"{shard}: {got} of {expected[shard]} records after {timeout:g} s")
                page = client.call("GetRecords", {"ShardIterator": iterator, "Limit": limit})
                iterator = page["NextShardIterator"]
                got += len(page["Records"])
                with lock:
                    totals["calls"] += 1
                    totals["records"] += len(page["Records"])
                if not page["Records"]:
                    time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)

    elapsed = run_started_together(run, shards, barrier)
    if errors:
        raise RuntimeError(f"GetRecords over HTTP/2 failed: {errors[0]}")
    return H2ReadResult(totals["records"], elapsed, totals["calls"])
