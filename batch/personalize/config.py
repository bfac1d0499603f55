"""The Personalize config: the resources ``batch personalize apply`` makes exist, as YAML.

Names identify resources: apply finds each by its name (a dataset by its group and type), so renaming
one in the config makes a new resource, and the old one stays until deleted by hand. The shipped
default (``batch/personalize/default.yaml``) fits what ``batch datasets`` writes; BATCH_PERSONALIZE_CONFIG
or ``--config`` names another file.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from batch.errors import ConfigurationError

DEFAULT_CONFIG: Final = "default.yaml"
RECIPE_ARN_PREFIX: Final = "arn:aws:personalize:::recipe/"
#: Recipes whose solutions may train with ``trainingMode`` UPDATE (on top of an ACTIVE FULL version).
UPDATABLE_RECIPES: Final = frozenset({"aws-user-personalization", "aws-hrnn-coldstart"})
DatasetType = Literal["INTERACTIONS", "ITEMS", "USERS"]
DATASET_TYPES: Final[tuple[DatasetType, ...]] = ("INTERACTIONS", "ITEMS", "USERS")
_NAME: Final = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,62}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


def _resource_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a Personalize name (1-63 of a-z A-Z 0-9 - _, starting alphanumeric)")
    return value


class DatasetGroupConfig(_Model):
    name: str

    _name = field_validator("name")(_resource_name)


class SchemaConfig(_Model):
    """A schema: the Avro record ``batch datasets`` wrote beside the CSVs (``file``, under the dataset
    prefix), or the record itself (``definition``). Schemas cannot change: give a changed one a new name."""

    name: str
    file: str | None = None
    definition: dict[str, Any] | None = None

    _name = field_validator("name")(_resource_name)

    @model_validator(mode="after")
    def _one_source(self) -> SchemaConfig:
        if (self.file is None) == (self.definition is None):
            raise ValueError("give exactly one of 'file' (under the dataset prefix) or 'definition'")
        return self


class ImportConfig(_Model):
    """The import job of a dataset: ``file`` (or folder, ending in ``/``) under the dataset prefix."""

    file: str
    #: Job names are ``<jobNamePrefix>-<UTC time>``, unique per run.
    job_name_prefix: str
    import_mode: Literal["FULL", "INCREMENTAL"] = "FULL"

    @field_validator("job_name_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if len(value) > 46:
            raise ValueError("at most 46 characters (the job name adds a 17-character time)")
        return _resource_name(value)


class DatasetConfig(_Model):
    name: str
    schema_: SchemaConfig = Field(alias="schema")
    import_: ImportConfig = Field(alias="import")

    _name = field_validator("name")(_resource_name)


class SolutionConfig(_Model):
    """A solution: ``recipe`` by name (``aws-sims``) or ARN. ``performAutoTraining`` is ours to set:
    false by default, because ``batch personalize train`` decides when to retrain."""

    name: str
    recipe: str
    event_type: str | None = None
    perform_auto_training: bool = False
    solution_config: dict[str, Any] = Field(default_factory=dict)

    _name = field_validator("name")(_resource_name)

    @property
    def recipe_arn(self) -> str:
        return self.recipe if self.recipe.startswith("arn:") else RECIPE_ARN_PREFIX + self.recipe

    @property
    def recipe_name(self) -> str:
        return self.recipe_arn.rsplit("/", 1)[-1]

    @property
    def allows_update(self) -> bool:
        """Whether its versions may train with ``trainingMode`` UPDATE."""
        return self.recipe_name in UPDATABLE_RECIPES


class CampaignConfig(_Model):
    name: str
    #: The key of the solution (under ``solutions``) whose version the campaign serves.
    solution: str
    min_provisioned_tps: int = Field(1, ge=1, le=10_000, alias="minProvisionedTPS")

    _name = field_validator("name")(_resource_name)


class FilterConfig(_Model):
    name: str
    expression: str = Field(min_length=1, max_length=2500)

    _name = field_validator("name")(_resource_name)


class EventTrackerConfig(_Model):
    name: str

    _name = field_validator("name")(_resource_name)


class PersonalizeConfig(_Model):
    """Everything ``batch personalize apply`` makes exist. Keys of ``solutions``, ``campaigns`` and
    ``filters`` are ours (the outputs use them); names are Personalize's."""

    version: Literal[1] = 1
    dataset_group: DatasetGroupConfig
    datasets: dict[DatasetType, DatasetConfig]
    event_tracker: EventTrackerConfig
    filters: dict[str, FilterConfig] = Field(default_factory=dict)
    solutions: dict[str, SolutionConfig]
    campaigns: dict[str, CampaignConfig]

    @model_validator(mode="after")
    def _references(self) -> PersonalizeConfig:
        if "INTERACTIONS" not in self.datasets:
            raise ValueError("datasets: an INTERACTIONS dataset is required")
        for key, campaign in self.campaigns.items():
            if campaign.solution not in self.solutions:
                raise ValueError(f"campaigns.{key}.solution: no solution {campaign.solution!r} in 'solutions'")
        for what, names in (
            ("solutions", [s.name for s in self.solutions.values()]),
            ("campaigns", [c.name for c in self.campaigns.values()]),
            ("filters", [f.name for f in self.filters.values()]),
            ("schemas", [d.schema_.name for d in self.datasets.values()]),
        ):
            if len(set(names)) != len(names):
                raise ValueError(f"{what}: two share a name")
        return self

    def campaigns_of(self, solution_key: str) -> dict[str, CampaignConfig]:
        """The campaigns serving versions of the solution ``solution_key``."""
        return {key: c for key, c in self.campaigns.items() if c.solution == solution_key}

    @classmethod
    def load(cls, path: Path | None) -> PersonalizeConfig:
        """The config at ``path`` (None: the shipped default); :class:`ConfigurationError` naming the file
        and each wrong key."""
        if path is None:
            text = resources.files("batch.personalize").joinpath(DEFAULT_CONFIG).read_text(encoding="utf-8")
            where = f"batch/personalize/{DEFAULT_CONFIG}"
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigurationError(f"cannot read the Personalize config {path}: {exc.strerror}") from None
            where = str(path)
        return cls.parse_text(text, where)

    @classmethod
    def parse_text(cls, text: str, where: str = "the Personalize config") -> PersonalizeConfig:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{where} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigurationError(f"{where}: expected a mapping at the top")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}" for error in exc.errors()
            )
            raise ConfigurationError(f"{where}: {problems}") from None
