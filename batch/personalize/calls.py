"""The Personalize calls apply and train make, with the service's errors turned into the batch's.

Lookups are by name through the List operations (paged with ``nextToken``); a Describe gives the
status. A create that loses a race (``ResourceAlreadyExistsException``, ``ResourceInUseException``) is
the caller's to resolve by looking again; every other error becomes a :class:`PersonalizeError` (exit 3)
or, for ``InvalidInputException``, a :class:`ConfigurationError` (exit 2) naming the resource.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from batch.errors import ConfigurationError
from batch.personalize.errors import PersonalizeError
from batch.personalize.waiter import Observed

if TYPE_CHECKING:
    pass

ALREADY_EXISTS: Final = "ResourceAlreadyExistsException"
IN_USE: Final = "ResourceInUseException"
NOT_FOUND: Final = "ResourceNotFoundException"
LIMIT_EXCEEDED: Final = "LimitExceededException"
INVALID_INPUT: Final = "InvalidInputException"
IN_FLIGHT: Final = frozenset({"CREATE PENDING", "CREATE IN_PROGRESS"})


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", "")) or str(error)


class RaceLostError(Exception):
    """A create call found the resource there after all (already exists, or a version in progress)."""


@contextmanager
def service_call(what: str) -> Iterator[None]:
    """Translate errors of the calls inside: ``what`` names the action in messages."""
    try:
        yield
    except ClientError as error:
        code = error_code(error)
        message = error_message(error)
        if code in (ALREADY_EXISTS, IN_USE):
            raise RaceLostError(message) from error
        if code == INVALID_INPUT:
            raise ConfigurationError(f"{what}: Personalize refused the request: {message}") from None
        if code == LIMIT_EXCEEDED:
            raise PersonalizeError(
                f"{what}: a Personalize limit was reached: {message} (delete resources you no longer use, or "
                "ask AWS for a higher quota)"
            ) from None
        if code in ("AccessDeniedException", "UnrecognizedClientException", "ExpiredTokenException"):
            raise ConfigurationError(f"{what}: not allowed ({code}): {message}") from None
        raise PersonalizeError(f"{what}: {code or 'error'}: {message}") from None
    except BotoCoreError as error:
        raise PersonalizeError(f"{what}: {error}") from None


def listed(call: Callable[..., Any], member: str, what: str, **arguments: Any) -> list[dict[str, Any]]:
    """Every entry of a List operation (all pages)."""
    entries: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page_arguments = dict(arguments, nextToken=token) if token else dict(arguments)
        try:
            with service_call(what):
                page = call(**page_arguments)
        except RaceLostError as lost:  # a List call never races; report it as it came
            raise PersonalizeError(f"{what}: {lost}") from None
        entries.extend(page.get(member, []))
        token = page.get("nextToken")
        if not token:
            return entries


def observed(entry: dict[str, Any] | None) -> Observed:
    """The status (and failureReason) of a Describe object; a missing one reads as ``GONE``."""
    if entry is None:
        return Observed("DELETE GONE", "the resource no longer exists")
    return Observed(str(entry.get("status", "")), entry.get("failureReason"))


def describer(call: Callable[[], dict[str, Any] | None], what: str) -> Callable[[], Observed]:
    """A ``describe`` for :class:`~batch.personalize.waiter.Pending`: ``call`` returns the Describe object."""

    def describe() -> Observed:
        try:
            with service_call(what):
                return observed(call())
        except RaceLostError as lost:
            raise PersonalizeError(f"{what}: {lost}") from None
        except PersonalizeError as error:
            if NOT_FOUND in str(error):
                return observed(None)
            raise

    return describe


def newest(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The entry created last (``creationDateTime``)."""
    if not entries:
        return None
    return max(entries, key=lambda entry: timestamp(entry.get("creationDateTime")))


def timestamp(value: Any) -> float:
    """Epoch seconds of a time the service returned (a datetime, or a number); 0 for None."""
    if value is None:
        return 0.0
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)
