"""The event-type mapping: configuration shared by batch and stream (``default_mapping.yaml``)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clickstream.limits import MAX_EVENT_TYPE_LENGTH, PROPERTY_KEY_PATTERN, RESERVED_PROPERTY_KEYS

DEFAULT_MAPPING_PATH = Path(__file__).with_name("default_mapping.yaml")

#: Raw fields that may be copied into an event's ``properties``.
PropertyField = Literal["platform", "country", "currency", "stake", "win", "duration_ms", "position", "lobby_section"]
#: Raw fields that may become an event's ``eventValue``.
ValueField = Literal["stake", "win", "duration_ms", "position"]


class MappingError(ValueError):
    """The mapping file is missing, unreadable or invalid; the message names the file and the problem."""


class Interaction(BaseModel):
    """How one raw event type becomes a Personalize interaction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: str = Field(min_length=1, max_length=MAX_EVENT_TYPE_LENGTH)
    #: Repeated events of this Personalize event type for the same (session, game) collapse into one.
    collapse: bool = False
    value: ValueField | None = None
    properties: tuple[PropertyField, ...] = ()

    @model_validator(mode="after")
    def _property_keys_are_legal(self) -> Interaction:
        from pydantic.alias_generators import to_camel

        for field in self.properties:
            key = to_camel(field)
            if key in RESERVED_PROPERTY_KEYS or not PROPERTY_KEY_PATTERN.match(key):
                raise ValueError(f"property {field!r} cannot be sent as {key!r}")
        return self


class EventMapping(BaseModel):
    """Raw type -> interaction; raw types that are known not to be interactions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    interactions: dict[str, Interaction]
    non_interactions: frozenset[str] = frozenset()
    #: Raw types that end a session: the session's pending events can be sent at once.
    session_end: frozenset[str] = frozenset()

    @model_validator(mode="after")
    def _disjoint(self) -> EventMapping:
        both = self.non_interactions & self.interactions.keys()
        if both:
            raise ValueError(f"types listed both as interactions and non-interactions: {sorted(both)}")
        if not self.interactions:
            raise ValueError("the mapping declares no interactions")
        kinds: dict[str, bool] = {}
        for raw_type, rule in self.interactions.items():
            seen = kinds.setdefault(rule.event_type, rule.collapse)
            if seen != rule.collapse:
                raise ValueError(
                    f"event type {rule.event_type!r} is collapsed for some raw types but not for "
                    f"{raw_type!r}; collapse is per Personalize event type"
                )
        return self

    @classmethod
    def load(cls, path: Path | str | None = None) -> EventMapping:
        """Read and validate a mapping file (the shipped default when ``path`` is None)."""
        file = Path(path) if path is not None else DEFAULT_MAPPING_PATH
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise MappingError(f"cannot read event mapping {file}: {exc}") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise MappingError(f"invalid event mapping {file}: {exc}") from exc

    @classmethod
    @cache
    def default(cls) -> EventMapping:
        """The shipped default mapping (cached)."""
        return cls.load(None)
