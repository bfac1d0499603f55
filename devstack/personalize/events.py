"""The personalize-events API (rest-json): PutEvents, PutItems, PutUsers.

- ``POST /events`` PutEvents: validate every limit, then the tracker must exist
  (``ResourceNotFoundException``), then the tracker's quota must allow the call (``ThrottlingException``).
  The batch is accepted or rejected as a whole.
- ``POST /items`` PutItems / ``POST /users`` PutUsers: validate, then the dataset must exist and be of
  type ITEMS / USERS.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.personalize.context import Emulator
from devstack.personalize.protocol import dispatch
from devstack.personalize.validation import validate_put_events, validate_put_items, validate_put_users


class EventsApi:
    """Handlers of the events API over one :class:`Emulator` (sync: they never wait)."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def put_events(self, body: dict[str, Any]) -> None:
        """PutEvents: record the events or raise the service's error."""
        request = validate_put_events(body)
        store = self.emulator.store
        store.require_tracker(request.tracking_id)
        store.admit(request.tracking_id)
        store.accept_events(request)

    def put_items(self, body: dict[str, Any]) -> None:
        """PutItems: record the items or raise the service's error."""
        request = validate_put_items(body)
        store = self.emulator.store
        store.require_dataset(request.dataset_arn, "ITEMS")
        store.accept_records(store.items, request)

    def put_users(self, body: dict[str, Any]) -> None:
        """PutUsers: record the users or raise the service's error."""
        request = validate_put_users(body)
        store = self.emulator.store
        store.require_dataset(request.dataset_arn, "USERS")
        store.accept_records(store.users, request)


def routes(emulator: Emulator) -> list[Route]:
    """The events API's routes."""
    api = EventsApi(emulator)

    async def put_events(request: Request) -> Response:
        return await dispatch(emulator, "PutEvents", request, api.put_events)

    async def put_items(request: Request) -> Response:
        return await dispatch(emulator, "PutItems", request, api.put_items)

    async def put_users(request: Request) -> Response:
        return await dispatch(emulator, "PutUsers", request, api.put_users)

    return [
        Route("/events", put_events, methods=["POST"]),
        Route("/items", put_items, methods=["POST"]),
        Route("/users", put_users, methods=["POST"]),
    ]
