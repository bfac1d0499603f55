"""The daemon's side of the MultiLang protocol, to drive ``stream-worker process`` without Java.

Used by the integration tests and the benchmark: it speaks exactly what the MultiLangDaemon
speaks (one JSON message per line on the child's stdin/stdout) and answers checkpoint requests,
optionally with an error, the way the daemon does.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any


@dataclass(frozen=True, slots=True)
class DriverRecord:
    data: bytes
    sequence_number: str
    partition_key: str = "pk"
    sub_sequence_number: int = 0
    arrival_millis: int | None = None

    def to_message(self) -> dict[str, Any]:
        return {
            "action": "record",
            "data": base64.b64encode(self.data).decode("ascii"),
            "partitionKey": self.partition_key,
            "sequenceNumber": self.sequence_number,
            "subSequenceNumber": self.sub_sequence_number,
            "approximateArrivalTimestamp": self.arrival_millis
            if self.arrival_millis is not None
            else int(time.time() * 1000),
        }


@dataclass
class Checkpoint:
    sequence_number: str | None
    sub_sequence_number: int | None
    during: str
    error: str | None


class ProtocolError(RuntimeError):
    """The child said something the daemon would not accept, or died."""


#: Decides the answer to a checkpoint request: None for success, or an exception name.
CheckpointPolicy = Callable[[Checkpoint], str | None]


@dataclass
class MultiLangDriver:
    """Runs a record processor child and talks to it as the MultiLangDaemon would."""

    command: Sequence[str]
    env: Mapping[str, str] | None = None
    policy: CheckpointPolicy = field(default=lambda c: None)
    timeout: float = 60.0
    checkpoints: list[Checkpoint] = field(default_factory=list)
    stderr: IO[bytes] | int | None = None

    def __post_init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MultiLangDriver:
        self._proc = subprocess.Popen(
            list(self.command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=dict(self.env) if self.env is not None else None,
        )
        return self

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise ProtocolError("driver not started")
        return self._proc

    def _send(self, message: dict[str, Any]) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            stdin.flush()
        except BrokenPipeError as exc:
            raise ProtocolError(f"child exited with {self.process.poll()}") from exc

    def _read(self) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        result: list[bytes] = []
        while True:
            reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
            reader.start()
            reader.join(self.timeout)
            if reader.is_alive():
                raise ProtocolError(f"no answer from the child within {self.timeout}s")
            line = result.pop()
            if not line:
                raise ProtocolError(f"child closed stdout (exit status {self.process.wait(5)})")
            if line.strip():
                parsed: dict[str, Any] = json.loads(line)
                return parsed

    def _exchange(self, message: dict[str, Any]) -> None:
        """Send an action, answer checkpoints until the child reports the action done."""
        action = message["action"]
        self._send(message)
        while True:
            reply = self._read()
            if reply.get("action") == "status":
                if reply.get("responseFor") != action:
                    raise ProtocolError(f"status for {reply.get('responseFor')} while waiting for {action}")
                return
            if reply.get("action") == "checkpoint":
                request = Checkpoint(reply.get("sequenceNumber"), reply.get("subSequenceNumber"), action, None)
                request.error = self.policy(request)
                self.checkpoints.append(request)
                answer: dict[str, Any] = {
                    "action": "checkpoint",
                    "sequenceNumber": request.sequence_number,
                    "subSequenceNumber": request.sub_sequence_number,
                }
                if request.error is not None:
                    answer["error"] = request.error
                self._send(answer)
                continue
            raise ProtocolError(f"unexpected message {reply}")

    def initialize(self, shard_id: str, sequence_number: str = "TRIM_HORIZON") -> None:
        self._exchange(
            {
                "action": "initialize",
                "shardId": shard_id,
                "sequenceNumber": sequence_number,
                "subSequenceNumber": 0,
            }
        )

    def process_records(self, records: Sequence[DriverRecord], millis_behind_latest: int = 0) -> None:
        self._exchange(
            {
                "action": "processRecords",
                "records": [r.to_message() for r in records],
                "millisBehindLatest": millis_behind_latest,
            }
        )

    def shard_ended(self) -> None:
        self._exchange({"action": "shardEnded"})

    def shutdown_requested(self) -> None:
        self._exchange({"action": "shutdownRequested"})

    def lease_lost(self) -> None:
        self._exchange({"action": "leaseLost"})

    def close(self, timeout: float = 15.0) -> int:
        """Close the child's stdin (the daemon's way of ending it) and wait for it."""
        proc = self.process
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(5)

    def __enter__(self) -> MultiLangDriver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.close()
