"""The Personalize APIs' request and response shapes, read from botocore's service models.

- :func:`validate` checks a decoded request against its operation's input shape the way the service does
  (required members, types, lengths, ranges, enums, patterns) and raises one ``InvalidInputError``
  naming every problem, in the service's words ("Value 'x' at 'name' failed to satisfy constraint: ...").
- :func:`project` keeps only the members an output shape has, so answers never carry anything the SDKs
  do not know.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

from devstack.personalize.errors import InvalidInputError

CONTROL_SERVICE: Final = "personalize"
RUNTIME_SERVICE: Final = "personalize-runtime"
MAX_REPORTED: Final = 10


@functools.cache
def service_model(name: str) -> ServiceModel:
    """botocore's model of service ``name`` (loaded once)."""
    return botocore.session.get_session().get_service_model(name)


def operation_model(service: str, operation: str) -> OperationModel | None:
    """The model of ``operation`` of ``service``, or ``None`` if the service has no such operation."""
    model = service_model(service)
    if operation not in model.operation_names:
        return None
    return model.operation_model(operation)


@functools.cache
def _pattern(text: str) -> re.Pattern[str] | None:
    translated = text.replace(r"\p{ASCII}", r"[\x00-\x7F]")
    if r"\p{" in translated:
        return None
    try:
        return re.compile(translated, re.DOTALL)
    except re.error:
        return None


def _show(value: object) -> str:
    if value is None:
        return "null"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check(shape: Shape, value: object, where: str, problems: list[str]) -> None:
    def fail(constraint: str) -> None:
        problems.append(f"Value {_show(value)} at '{where}' failed to satisfy constraint: Member must {constraint}")

    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            fail("be an object")
            return
        assert isinstance(shape, StructureShape)
        for name in shape.required_members:
            if value.get(name) is None:
                problems.append(
                    f"Value null at '{_join(where, name)}' failed to satisfy constraint: Member must not be null"
                )
        for name, member in shape.members.items():
            if value.get(name) is not None:
                _check(member, value[name], _join(where, name), problems)
        return
    if kind == "list":
        if not isinstance(value, list):
            fail("be a list")
            return
        _check_size(len(value), meta, fail)
        assert isinstance(shape, ListShape)
        for index, entry in enumerate(value):
            _check(shape.member, entry, f"{where}.{index + 1}.member", problems)
        return
    if kind == "map":
        if not isinstance(value, dict):
            fail("be a map")
            return
        _check_size(len(value), meta, fail)
        assert isinstance(shape, MapShape)
        for key, entry in value.items():
            _check(shape.key, key, f"{where}.key", problems)
            _check(shape.value, entry, f"{where}.{key}", problems)
        return
    if kind == "string":
        if not isinstance(value, str):
            fail("be a string")
            return
        if "min" in meta and len(value) < meta["min"]:
            fail(f"have length greater than or equal to {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            fail(f"have length less than or equal to {meta['max']}")
        enum = meta.get("enum")
        if enum and value not in enum:
            fail(f"satisfy enum value set: [{', '.join(enum)}]")
        pattern = _pattern(meta["pattern"]) if "pattern" in meta else None
        if pattern is not None and pattern.fullmatch(value) is None:
            fail(f"satisfy regular expression pattern: {meta['pattern']}")
        return
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            fail("be an integer")
            return
        _check_range(value, meta, fail)
        return
    if kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail("be a number")
            return
        _check_range(value, meta, fail)
        return
    if kind == "boolean" and not isinstance(value, bool):
        fail("be a boolean")


def _check_size(size: int, meta: Mapping[str, Any], fail: Any) -> None:
    if "min" in meta and size < meta["min"]:
        fail(f"have length greater than or equal to {meta['min']}")
    if "max" in meta and size > meta["max"]:
        fail(f"have length less than or equal to {meta['max']}")


def _check_range(value: float, meta: Mapping[str, Any], fail: Any) -> None:
    if "min" in meta and value < meta["min"]:
        fail(f"be greater than or equal to {meta['min']}")
    if "max" in meta and value > meta["max"]:
        fail(f"be less than or equal to {meta['max']}")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def validate(operation: OperationModel, body: Mapping[str, Any]) -> None:
    """Check ``body`` against the input shape of ``operation``; raise ``InvalidInputError`` on problems."""
    shape = operation.input_shape
    if shape is None:
        return
    problems: list[str] = []
    _check(shape, dict(body), "", problems)
    if problems:
        count = len(problems)
        noun = "error" if count == 1 else "errors"
        shown = "; ".join(problems[:MAX_REPORTED])
        raise InvalidInputError(f"{count} validation {noun} detected: {shown}")


def project(shape: Shape | None, value: Any) -> Any:
    """``value`` with only the members ``shape`` knows (recursively) and without ``None`` values."""
    if shape is None or value is None:
        return value
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        assert isinstance(shape, StructureShape)
        members = shape.members
        return {
            name: project(members[name], entry)
            for name, entry in value.items()
            if name in members and entry is not None
        }
    if kind == "list" and isinstance(value, list):
        assert isinstance(shape, ListShape)
        return [project(shape.member, entry) for entry in value]
    if kind == "map" and isinstance(value, dict):
        assert isinstance(shape, MapShape)
        return {key: project(shape.value, entry) for key, entry in value.items() if entry is not None}
    return value
