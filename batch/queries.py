"""The dataset queries: which SQL reads items, users and interactions, and how columns become fields.

Configuration, not code (``default_queries.yaml`` fits the PAM schema; ``BATCH_QUERIES_FILE`` points at
an operator's own), so the batch reads any database SQLAlchemy can reach. The Personalize schemas are
derived from the fields declared here (:mod:`batch.schemas`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from batch.errors import ConfigurationError

DEFAULT_QUERIES_PATH: Final = Path(__file__).with_name("default_queries.yaml")

FieldType = Literal["string", "int", "long", "float", "double", "boolean"]
_FIELD_NAME: Final = re.compile(r"[A-Z][A-Z0-9_]*")
#: Interactions fields the batch fills itself; metadata may not use these names.
INTERACTION_FIELDS: Final = ("USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE")
_RESERVED_INTERACTION_NAMES: Final = frozenset({*INTERACTION_FIELDS, "IMPRESSION", "RECOMMENDATION_ID"})


class DatasetField(BaseModel):
    """One field of a dataset (a CSV column and a schema field), read from one query column."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The schema field name, upper snake case (``CREATION_TIMESTAMP``).
    name: str
    #: The query column it is read from; default: the name in lower case (for interactions metadata:
    #: the camelCase key of the normalized event's ``properties``, ``LOBBY_SECTION`` -> ``lobbySection``).
    column: str | None = None
    type: FieldType = "string"
    #: A string of several values joined by ``|`` (the column may hold a list or a JSON array).
    categorical: bool = False
    nullable: bool = False

    @field_validator("name")
    @classmethod
    def _upper_snake(cls, value: str) -> str:
        if not _FIELD_NAME.fullmatch(value):
            raise ValueError(f"field name {value!r} must be upper snake case, e.g. CREATION_TIMESTAMP")
        return value

    @model_validator(mode="after")
    def _categorical_strings(self) -> DatasetField:
        if self.categorical and self.type != "string":
            raise ValueError(f"{self.name}: only string fields can be categorical")
        return self

    @property
    def source_column(self) -> str:
        return self.column if self.column is not None else self.name.lower()

    @property
    def property_key(self) -> str:
        """The ``properties`` key of a normalized event that fills this field (interactions metadata)."""
        return self.column if self.column is not None else to_camel(self.name.lower())


class RecordQuery(BaseModel):
    """The items or users dataset: one row per record; the first field is the id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sql: str = Field(min_length=1)
    fields: tuple[DatasetField, ...] = Field(min_length=2)

    @model_validator(mode="after")
    def _unique_names(self) -> RecordQuery:
        names = [f.name for f in self.fields]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"fields named more than once: {repeated}")
        return self

    def require_id(self, id_field: str) -> None:
        first = self.fields[0]
        if first.name != id_field or first.type != "string" or first.nullable or first.categorical:
            raise ValueError(f"the first field must be {id_field}, a non-null, non-categorical string")


class InteractionSource(BaseModel):
    """One query whose rows become raw clickstream events of ``event_type``.

    Columns are named after raw event fields (``session_id``, ``player_id``, ``game_id``,
    ``timestamp``, ``stake``, ``platform``...); a column ``event_type`` overrides the default type.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    event_type: str = Field(min_length=1)
    sql: str = Field(min_length=1)


class InteractionsQuery(BaseModel):
    """The interactions dataset: rows of every source, normalized as the stream normalizes events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: tuple[InteractionSource, ...] = Field(min_length=1)
    #: Optional fields filled from the normalized event's ``properties`` (always nullable).
    metadata: tuple[DatasetField, ...] = ()

    @field_validator("metadata")
    @classmethod
    def _metadata_names(cls, value: tuple[DatasetField, ...]) -> tuple[DatasetField, ...]:
        names = [f.name for f in value]
        clash = sorted(set(names) & _RESERVED_INTERACTION_NAMES)
        if clash:
            raise ValueError(f"metadata fields may not be named {clash}")
        if len(set(names)) != len(names):
            raise ValueError("a metadata field is named more than once")
        return tuple(f.model_copy(update={"nullable": True}) for f in value)

    @model_validator(mode="after")
    def _unique_sources(self) -> InteractionsQuery:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError("interaction sources must have distinct names")
        return self


class CatalogQuery(BaseModel):
    """``games.json``, the catalog the lobby shows: every column of every row, as JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sql: str = Field(min_length=1)
    #: Columns holding several values (a list, a JSON array or ``|``-joined text): JSON lists.
    lists: tuple[str, ...] = ()


class DatasetQueries(BaseModel):
    """The whole queries file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    items: RecordQuery
    users: RecordQuery
    interactions: InteractionsQuery
    catalog: CatalogQuery

    @model_validator(mode="after")
    def _ids(self) -> DatasetQueries:
        self.items.require_id("ITEM_ID")
        self.users.require_id("USER_ID")
        return self

    @classmethod
    def load(cls, path: Path | str | None = None) -> DatasetQueries:
        """Read and validate a queries file (the shipped default when ``path`` is None).

        Raises :class:`ConfigurationError` naming the file and the problem.
        """
        file = Path(path) if path is not None else DEFAULT_QUERIES_PATH
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"cannot read the queries file {file}: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or '(file)'}: {error['msg']}" for error in exc.errors()
            )
            raise ConfigurationError(f"invalid queries file {file}: {problems}") from None
