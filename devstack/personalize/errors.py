"""AWS-style service errors raised by the emulator's operations.

An :class:`ApiError` carries the error code the SDK will see (``ClientError.response["Error"]["Code"]``),
the HTTP status, a message, and the outcome under which the call is counted in the stats.
"""

from __future__ import annotations

from typing import Final

#: Outcomes under which calls are counted (``GET /_emulator/stats``).
OUTCOME_OK: Final = "ok"
OUTCOME_INVALID: Final = "invalid"
OUTCOME_THROTTLED: Final = "throttled"
OUTCOME_FAULT: Final = "fault"
OUTCOME_NOT_FOUND: Final = "not_found"
OUTCOME_ERROR: Final = "error"
OUTCOMES: Final = (
    OUTCOME_OK,
    OUTCOME_INVALID,
    OUTCOME_THROTTLED,
    OUTCOME_FAULT,
    OUTCOME_NOT_FOUND,
    OUTCOME_ERROR,
)


class ApiError(Exception):
    """An error answer: ``code`` (e.g. ``InvalidInputException``), HTTP ``status``, ``message``."""

    def __init__(self, code: str, message: str, status: int = 400, outcome: str = OUTCOME_ERROR) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.outcome = outcome

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, status={self.status})"


class InvalidInputError(ApiError):
    """``InvalidInputException``, HTTP 400: the request breaks a limit; nothing of it was accepted."""

    def __init__(self, message: str) -> None:
        super().__init__("InvalidInputException", message, 400, OUTCOME_INVALID)


class SerializationError(ApiError):
    """``SerializationException``, HTTP 400: the body is not a JSON object."""

    def __init__(self, message: str) -> None:
        super().__init__("SerializationException", message, 400, OUTCOME_INVALID)


class ResourceNotFoundError(ApiError):
    """``ResourceNotFoundException``, HTTP 404: unknown tracker or dataset."""

    def __init__(self, message: str) -> None:
        super().__init__("ResourceNotFoundException", message, 404, OUTCOME_NOT_FOUND)


class ThrottlingError(ApiError):
    """``ThrottlingException``, HTTP 400 (as the real service answers): the tracker's quota is spent."""

    def __init__(self, message: str = "Rate exceeded") -> None:
        super().__init__("ThrottlingException", message, 400, OUTCOME_THROTTLED)


class InjectedFaultError(ApiError):
    """An error answered on purpose by the fault injector (any code and status)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(code, message, status, OUTCOME_FAULT)


class InternalFailureError(ApiError):
    """``InternalFailure``, HTTP 500: a bug in the emulator (logged with its traceback)."""

    def __init__(self, message: str = "Internal failure in the Personalize emulator") -> None:
        super().__init__("InternalFailure", message, 500, OUTCOME_ERROR)


class ResourceAlreadyExistsError(ApiError):
    """``ResourceAlreadyExistsException``, HTTP 400: a resource with that name (ARN) exists."""

    def __init__(self, message: str) -> None:
        super().__init__("ResourceAlreadyExistsException", message, 400, OUTCOME_INVALID)


class ResourceInUseError(ApiError):
    """``ResourceInUseException``, HTTP 400: the resource is busy or still used by another."""

    def __init__(self, message: str) -> None:
        super().__init__("ResourceInUseException", message, 400, OUTCOME_INVALID)


class InvalidNextTokenError(ApiError):
    """``InvalidNextTokenException``, HTTP 400: a List call's ``nextToken`` is not one we gave out."""

    def __init__(self, message: str = "The nextToken is not valid") -> None:
        super().__init__("InvalidNextTokenException", message, 400, OUTCOME_INVALID)


class UnsupportedOperationError(ApiError):
    """``UnknownOperationException``, HTTP 400: an operation of the real API the emulator does not serve."""

    def __init__(self, operation: str) -> None:
        super().__init__(
            "UnknownOperationException",
            f"The Personalize emulator does not implement {operation}",
            400,
            OUTCOME_INVALID,
        )
