"""Personalize dataset schemas (Avro records as JSON), derived from the fields of the queries file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from batch.queries import DatasetField

NAMESPACE: Final = "com.amazonaws.personalize.schema"
SCHEMA_VERSION: Final = "1.0"

#: The fields every interactions dataset of ours has, before the metadata.
INTERACTION_BASE_FIELDS: Final = (
    DatasetField(name="USER_ID"),
    DatasetField(name="ITEM_ID"),
    DatasetField(name="TIMESTAMP", type="long"),
    DatasetField(name="EVENT_TYPE"),
    DatasetField(name="EVENT_VALUE", type="float", nullable=True),
)


def avro_field(spec: DatasetField) -> dict[str, Any]:
    """One schema field: ``{"name", "type"}``, a ``["null", type]`` union when nullable, and
    ``"categorical": true`` for categorical strings."""
    field: dict[str, Any] = {"name": spec.name, "type": ["null", spec.type] if spec.nullable else spec.type}
    if spec.categorical:
        field["categorical"] = True
    return field


def avro_schema(name: str, fields: Sequence[DatasetField]) -> dict[str, Any]:
    """A schema in the form CreateSchema takes (serialize it with ``json.dumps``)."""
    return {
        "type": "record",
        "name": name,
        "namespace": NAMESPACE,
        "fields": [avro_field(spec) for spec in fields],
        "version": SCHEMA_VERSION,
    }


def interactions_schema(metadata: Sequence[DatasetField]) -> dict[str, Any]:
    return avro_schema("Interactions", (*INTERACTION_BASE_FIELDS, *metadata))


def items_schema(fields: Sequence[DatasetField]) -> dict[str, Any]:
    return avro_schema("Items", fields)


def users_schema(fields: Sequence[DatasetField]) -> dict[str, Any]:
    return avro_schema("Users", fields)
