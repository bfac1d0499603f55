"""The Personalize config: the shipped default is valid and complete; mistakes name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from batch.errors import ConfigurationError
from batch.personalize.config import PersonalizeConfig

DEFAULT = Path(__file__).resolve().parents[2] / "batch" / "personalize" / "default.yaml"


def test_the_default_fits_the_datasets_and_the_outputs_pam_reads() -> None:
    config = PersonalizeConfig.load(None)
    assert config == PersonalizeConfig.load(DEFAULT)
    assert set(config.datasets) == {"INTERACTIONS", "ITEMS", "USERS"}
    assert {d.schema_.file for d in config.datasets.values()} == {
        "interactions.schema.json",
        "items.schema.json",
        "users.schema.json",
    }
    assert {d.import_.file for d in config.datasets.values()} == {"interactions.csv", "items.csv", "users.csv"}
    assert {s.recipe_name for s in config.solutions.values()} == {
        "aws-sims",
        "aws-popularity-count",
        "aws-trending-now",
        "aws-user-personalization-v2",
    }
    assert all(s.perform_auto_training is False for s in config.solutions.values())
    assert set(config.campaigns) == {"sims", "popularity", "trending", "for_you"}
    assert config.filters["unavailable"].expression == 'EXCLUDE ItemID WHERE Items.AVAILABLE IN ("false")'
    assert not any(s.allows_update for s in config.solutions.values())


def raw() -> dict[str, object]:
    loaded = yaml.safe_load(DEFAULT.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["campaigns"]["sims"].update(solution="nope"), "campaigns.sims.solution: no solution 'nope'"),
        (lambda c: c["datasetGroup"].update(name="bad name!"), "datasetGroup.name"),
        (lambda c: c["solutions"]["sims"].update(performAutoTraining="maybe"), "solutions.sims.performAutoTraining"),
        (lambda c: c["datasets"]["ITEMS"]["schema"].pop("file"), "give exactly one of 'file'"),
        (lambda c: c.pop("eventTracker"), "eventTracker"),
        (lambda c: c.update(extra=1), "extra"),
        (lambda c: c["datasets"].pop("INTERACTIONS"), "an INTERACTIONS dataset is required"),
        (lambda c: c["campaigns"]["sims"].update(minProvisionedTPS=0), "minProvisionedTPS"),
    ],
)
def test_mistakes_are_configuration_errors_naming_the_key(change: object, message: str, tmp_path: Path) -> None:
    config = raw()
    change(config)  # type: ignore[operator]
    path = tmp_path / "personalize.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigurationError) as raised:
        PersonalizeConfig.load(path)
    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_unreadable_or_not_yaml() -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        PersonalizeConfig.load(Path("/nonexistent/personalize.yaml"))
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        PersonalizeConfig.parse_text("a: [")
    with pytest.raises(ConfigurationError, match="a mapping at the top"):
        PersonalizeConfig.parse_text("- 1")
