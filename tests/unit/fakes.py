"""Fakes for unit tests of one step: a scripted PutEvents client, a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError


def client_error(code: str, status: int = 400, message: str = "boom") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutEvents",
    )


class ScriptedClient:
    """Answers put_events by calling ``behaviour(request, call_number)``; records accepted events."""

    def __init__(self, behaviour: Callable[[dict[str, Any], int], None] | None = None) -> None:
        self.behaviour = behaviour
        self.calls: list[dict[str, Any]] = []
        self.accepted: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def put_events(self, **request: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append(request)
            number = len(self.calls)
        if self.behaviour is not None:
            self.behaviour(request, number)
        with self._lock:
            for event in request["eventList"]:
                self.accepted.append({**event, "sessionId": request["sessionId"], "userId": request.get("userId")})
        return {}

    @property
    def accepted_ids(self) -> list[str]:
        with self._lock:
            return [e["eventId"] for e in self.accepted]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
