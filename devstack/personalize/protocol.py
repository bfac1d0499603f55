"""Wire protocols and the pipeline every emulated AWS operation goes through.

:func:`dispatch` reads the body, applies injected faults (latency, then outage/error), decodes the JSON
object, runs the operation's handler and renders the answer in the operation's protocol:

- ``rest-json`` (personalize-events, personalize-runtime): errors carry the header
  ``x-amzn-ErrorType: <Code>:<namespace>`` and the body ``{"message": ...}``.
- ``json-1.1`` (the personalize control plane, ``X-Amz-Target``): errors carry the body
  ``{"__type": "<Code>", "message": ...}``.

botocore reads either form into ``ClientError.response["Error"]["Code"] == <Code>``. Every call is
counted in the stats under its outcome.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

from starlette.requests import Request
from starlette.responses import Response

from devstack.personalize.context import Emulator
from devstack.personalize.errors import OUTCOME_OK, ApiError, InternalFailureError, SerializationError

logger = logging.getLogger("devstack.personalize.protocol")

ProtocolName = Literal["rest-json", "json-1.1"]
#: An operation: takes the decoded body, returns the result (or an awaitable of it) or raises ApiError.
Handler = Callable[[dict[str, Any]], dict[str, Any] | Awaitable[dict[str, Any] | None] | None]

ERROR_NAMESPACE: Final = "http://internal.amazon.com/coral/com.amazonaws.personalize/"
REST_JSON_CONTENT_TYPE: Final = "application/json"
JSON_11_CONTENT_TYPE: Final = "application/x-amz-json-1.1"
_EMPTY_OBJECT: Final = b"{}"


def _encode(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def error_response(error: ApiError, request_id: str, protocol: ProtocolName = "rest-json") -> Response:
    """Render ``error`` the way the real service does for ``protocol``."""
    headers = {"x-amzn-RequestId": request_id, "x-amzn-ErrorType": f"{error.code}:{ERROR_NAMESPACE}"}
    if protocol == "json-1.1":
        body = _encode({"__type": error.code, "message": error.message})
        return Response(body, error.status, headers, JSON_11_CONTENT_TYPE)
    return Response(_encode({"message": error.message}), error.status, headers, REST_JSON_CONTENT_TYPE)


def success_response(result: dict[str, Any] | None, request_id: str, protocol: ProtocolName = "rest-json") -> Response:
    """Render a successful result (``None``: an operation without output)."""
    body = _EMPTY_OBJECT if not result else _encode(result)
    content_type = JSON_11_CONTENT_TYPE if protocol == "json-1.1" else REST_JSON_CONTENT_TYPE
    return Response(body, 200, {"x-amzn-RequestId": request_id}, content_type)


def decode_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object (empty body: ``{}``), or ``SerializationError``."""
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        raise SerializationError(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise SerializationError("Request body must be a JSON object")
    return decoded


async def dispatch(
    emulator: Emulator,
    operation: str,
    request: Request,
    handler: Handler,
    protocol: ProtocolName = "rest-json",
) -> Response:
    """Run one call of ``operation`` through faults, decoding, ``handler`` and rendering; count it."""
    request_id = str(uuid.uuid4())
    count = emulator.store.stats.count
    raw = await request.body()
    decision = emulator.faults.decide(operation)
    if decision.delay > 0:
        await asyncio.sleep(decision.delay)
    if decision.error is not None:
        count(operation, decision.error.outcome)
        return error_response(decision.error, request_id, protocol)
    try:
        result = handler(decode_body(raw))
        if inspect.isawaitable(result):
            result = await result
    except ApiError as error:
        count(operation, error.outcome)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "call rejected",
                extra={"operation": operation, "code": error.code, "reason": error.message},
            )
        return error_response(error, request_id, protocol)
    except Exception:
        logger.exception("operation failed", extra={"operation": operation, "requestId": request_id})
        failure = InternalFailureError()
        count(operation, failure.outcome)
        return error_response(failure, request_id, protocol)
    count(operation, OUTCOME_OK)
    return success_response(result, request_id, protocol)


def unknown_operation(request: Request) -> Response:
    """The answer to a path/target no emulated operation serves (404 ``UnknownOperationException``)."""
    error = ApiError(
        "UnknownOperationException",
        f"The Personalize emulator has no operation for {request.method} {request.url.path}",
        404,
    )
    protocol: ProtocolName = "json-1.1" if "x-amz-target" in request.headers else "rest-json"
    return error_response(error, str(uuid.uuid4()), protocol)
