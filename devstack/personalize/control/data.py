"""The data a dataset group holds: imported and streamed interactions, items and users.

Imported rows come from dataset import jobs (a FULL import replaces the dataset's rows, INCREMENTAL adds
to them). Streamed rows come from PutEvents (interactions, through the group's event tracker) and
PutItems / PutUsers (records). Training takes a snapshot; filters read the live item fields and the
requesting user's interactions.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from devstack.personalize.control.importer import ImportedRows, convert
from devstack.personalize.control.schemas import DatasetSchema
from devstack.personalize.filters import FieldValue
from devstack.personalize.recipes import Interaction

logger = logging.getLogger("devstack.personalize.control")

_CAMEL_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def field_name_of_property(key: str) -> str:
    """A PutItems/PutUsers property key (camelCase) as a schema field name: ``creationTimestamp`` ->
    ``CREATION_TIMESTAMP``."""
    return _CAMEL_BOUNDARY.sub("_", key).upper()


@dataclass(slots=True)
class GroupData:
    """Rows of one dataset group (see the module)."""

    imported: list[Interaction] = field(default_factory=list)
    streamed: list[Interaction] = field(default_factory=list)
    items: dict[str, dict[str, FieldValue]] = field(default_factory=dict)
    users: dict[str, dict[str, FieldValue]] = field(default_factory=dict)
    schemas: dict[str, DatasetSchema] = field(default_factory=dict)
    _by_user: dict[str, dict[str, list[tuple[str, float | None]]]] | None = None

    # ----------------------------------------------------------------------------------- imports

    def apply_import(self, dataset_type: str, rows: ImportedRows, mode: str) -> None:
        """Store what an import job read (``mode`` FULL replaces, INCREMENTAL adds)."""
        full = mode != "INCREMENTAL"
        if dataset_type == "INTERACTIONS":
            if full:
                self.imported = list(rows.interactions)
            else:
                self.imported.extend(rows.interactions)
            self._by_user = None
            return
        target = self.items if dataset_type == "ITEMS" else self.users
        if full:
            target.clear()
        target.update(rows.records)

    def drop_dataset(self, dataset_type: str) -> None:
        """Forget the rows of a deleted dataset."""
        self.schemas.pop(dataset_type, None)
        if dataset_type == "INTERACTIONS":
            self.imported = []
            self.streamed = []
            self._by_user = None
        elif dataset_type == "ITEMS":
            self.items.clear()
        elif dataset_type == "USERS":
            self.users.clear()

    # ------------------------------------------------------------------------------------ streams

    def add_streamed(self, interaction: Interaction) -> None:
        """Record an interaction that arrived through PutEvents."""
        self.streamed.append(interaction)
        if self._by_user is not None:
            self._by_user.setdefault(interaction.user_id, {}).setdefault(interaction.item_id, []).append(
                (interaction.event_type, interaction.event_value)
            )

    def put_records(self, dataset_type: str, records: Iterable[tuple[str, str | None]]) -> None:
        """Merge PutItems/PutUsers records (properties: JSON text with camelCase keys) into the group."""
        target = self.items if dataset_type == "ITEMS" else self.users
        schema = self.schemas.get(dataset_type)
        for record_id, properties in records:
            fields = target.setdefault(record_id, {})
            if not properties:
                continue
            try:
                decoded = json.loads(properties)
            except ValueError:
                continue
            for key, value in decoded.items():
                name = field_name_of_property(key)
                spec = schema.field(name) if schema is not None else None
                if value is None:
                    fields.pop(name, None)
                    continue
                if spec is not None:
                    try:
                        converted = convert(spec, str(value).lower() if isinstance(value, bool) else str(value))
                    except ValueError:
                        logger.debug("property ignored", extra={"recordId": record_id, "field": name})
                        continue
                    if converted is not None:
                        fields[name] = converted
                elif isinstance(value, str | int | float | bool):
                    fields[name] = float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    # ---------------------------------------------------------------------------------- queries

    def interactions(self) -> list[Interaction]:
        """Every interaction, imported then streamed (a new list)."""
        return [*self.imported, *self.streamed]

    def item_fields(self, item_id: str) -> Mapping[str, FieldValue] | None:
        """The item's fields (ITEMS dataset and PutItems), or ``None`` if unknown."""
        return self.items.get(item_id)

    def user_interactions(self, user_id: str | None) -> dict[str, list[tuple[str, float | None]]]:
        """The user's interactions by item: [(event type, event value), ...]."""
        if user_id is None:
            return {}
        if self._by_user is None:
            index: dict[str, dict[str, list[tuple[str, float | None]]]] = {}
            for interaction in (*self.imported, *self.streamed):
                index.setdefault(interaction.user_id, {}).setdefault(interaction.item_id, []).append(
                    (interaction.event_type, interaction.event_value)
                )
            self._by_user = index
        return self._by_user.get(user_id, {})
