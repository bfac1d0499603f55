"""Dataset schemas: the Avro record JSON that CreateSchema takes, and what each dataset type requires.

A schema is ``{"type": "record", "name": ..., "namespace": ..., "fields": [...], "version": "1.0"}``;
each field has a ``name`` and a ``type`` (``string``, ``int``, ``long``, ``float``, ``double``,
``boolean``, or a union with ``"null"`` for an optional field), and string fields may be
``"categorical": true`` (values joined by ``|``) or ``"textual": true``.

Required fields: INTERACTIONS ``USER_ID`` (string), ``ITEM_ID`` (string), ``TIMESTAMP`` (long);
ITEMS ``ITEM_ID`` and at least one metadata field; USERS ``USER_ID`` and at least one metadata field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

PRIMITIVE_TYPES: Final = frozenset({"string", "int", "long", "float", "double", "boolean"})
SUPPORTED_DATASET_TYPES: Final = ("INTERACTIONS", "ITEMS", "USERS")
ID_FIELDS: Final[Mapping[str, str]] = {"INTERACTIONS": "", "ITEMS": "ITEM_ID", "USERS": "USER_ID"}
_REQUIRED: Final[Mapping[str, Mapping[str, frozenset[str]]]] = {
    "INTERACTIONS": {
        "USER_ID": frozenset({"string"}),
        "ITEM_ID": frozenset({"string"}),
        "TIMESTAMP": frozenset({"long", "int"}),
    },
    "ITEMS": {"ITEM_ID": frozenset({"string"})},
    "USERS": {"USER_ID": frozenset({"string"})},
}
_FIELD_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SchemaError(ValueError):
    """A schema the service would refuse (``InvalidInputException``)."""


@dataclass(frozen=True, slots=True)
class SchemaField:
    """One field of a dataset schema."""

    name: str
    type: str
    nullable: bool = False
    categorical: bool = False
    textual: bool = False


@dataclass(frozen=True, slots=True)
class DatasetSchema:
    """A parsed schema; field names are matched case-insensitively (stored upper-case)."""

    name: str
    fields: tuple[SchemaField, ...]

    def field(self, name: str) -> SchemaField | None:
        """The field called ``name`` (any case), or ``None``."""
        wanted = name.upper()
        return next((candidate for candidate in self.fields if candidate.name == wanted), None)

    @property
    def names(self) -> list[str]:
        """Field names, in schema order."""
        return [candidate.name for candidate in self.fields]


def _field_type(raw: object, where: str) -> tuple[str, bool]:
    if isinstance(raw, str):
        if raw not in PRIMITIVE_TYPES:
            raise SchemaError(f"{where}: type {raw!r} is not one of {sorted(PRIMITIVE_TYPES)}")
        return raw, False
    if isinstance(raw, list):
        kinds = [entry for entry in raw if entry != "null"]
        if len(kinds) != 1 or len(raw) - len(kinds) > 1 or not isinstance(kinds[0], str):
            raise SchemaError(f'{where}: a union type must be ["null", <one primitive type>], got {raw!r}')
        kind, _ = _field_type(kinds[0], where)
        return kind, len(raw) != len(kinds)
    if isinstance(raw, dict) and isinstance(raw.get("type"), str):
        return _field_type(raw["type"], where)
    raise SchemaError(f"{where}: unsupported type {raw!r}")


def parse_schema(text: str) -> DatasetSchema:
    """Parse a CreateSchema ``schema`` string; raise :class:`SchemaError` naming the problem."""
    try:
        document: Any = json.loads(text)
    except ValueError as exc:
        raise SchemaError(f"schema is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("type") != "record":
        raise SchemaError('schema must be an Avro record: {"type": "record", "name": ..., "fields": [...]}')
    name = document.get("name")
    if not isinstance(name, str) or not name:
        raise SchemaError("schema record must have a name")
    raw_fields = document.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        raise SchemaError("schema record must have a non-empty list of fields")
    fields: list[SchemaField] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_fields):
        where = f"fields[{index}]"
        if not isinstance(raw, dict):
            raise SchemaError(f"{where} must be an object with name and type")
        field_name = raw.get("name")
        if not isinstance(field_name, str) or _FIELD_NAME.fullmatch(field_name) is None:
            raise SchemaError(f"{where}: invalid field name {field_name!r}")
        upper = field_name.upper()
        if upper in seen:
            raise SchemaError(f"{where}: duplicate field {field_name!r}")
        seen.add(upper)
        kind, nullable = _field_type(raw.get("type"), f"{where} ({field_name})")
        categorical = raw.get("categorical") is True
        textual = raw.get("textual") is True
        if (categorical or textual) and kind != "string":
            raise SchemaError(f"{where} ({field_name}): only string fields can be categorical or textual")
        fields.append(SchemaField(upper, kind, nullable, categorical, textual))
    return DatasetSchema(name=name, fields=tuple(fields))


def check_dataset_type(schema: DatasetSchema, dataset_type: str) -> None:
    """Raise :class:`SchemaError` unless ``schema`` suits a dataset of ``dataset_type``."""
    required = _REQUIRED.get(dataset_type)
    if required is None:
        raise SchemaError(
            f"dataset type {dataset_type} is not supported by the emulator; use one of {list(SUPPORTED_DATASET_TYPES)}"
        )
    for name, kinds in required.items():
        found = schema.field(name)
        if found is None:
            raise SchemaError(f"a {dataset_type} schema must have the field {name}")
        if found.type not in kinds or found.nullable:
            raise SchemaError(
                f"field {name} of a {dataset_type} schema must be a non-null {' or '.join(sorted(kinds))}"
            )
    if dataset_type in ("ITEMS", "USERS") and len(schema.fields) < 2:
        raise SchemaError(
            f"a {dataset_type} schema needs at least one metadata field besides {ID_FIELDS[dataset_type]}"
        )
