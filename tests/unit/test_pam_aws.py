"""The hand-rolled SigV4 signer signs exactly as botocore does; the catalog store keeps the last good copy;
settings read the Personalize outputs file with explicit settings winning."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pydantic import ValidationError

from pam.api.aws.sigv4 import FrozenCredentials, SigV4Signer
from pam.api.catalog import CatalogStore, Fetched, FileCatalogSource, parse_catalog
from pam.api.metrics import LobbyMetrics
from pam.api.wiring import build_services
from pam.settings import PamSettings, SettingsError, personalize_arns

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CAMPAIGN = "arn:aws:personalize:us-east-1:000000000000:campaign/"


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize(
    ("service", "url", "path", "headers"),
    [
        ("dynamodb", "http://127.0.0.1:4566/", "/", {"x-amz-target": "DynamoDB_20120810.GetItem"}),
        ("personalize", "https://personalize-runtime.eu-west-1.amazonaws.com/recommendations", "/recommendations", {}),
    ],
)
def test_signature_equals_botocores(
    token: str | None, service: str, url: str, path: str, headers: dict[str, str]
) -> None:
    body = b'{"campaignArn":"arn:x","userId":"p-1","numResults":25}'
    content = {"content-type": "application/json", **headers}
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(content))
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        SigV4Auth(Credentials("AKID", "SECRET", token), service, "eu-west-1").add_auth(request)
    host = url.split("/")[2]
    ours = SigV4Signer(service, "eu-west-1").sign(
        FrozenCredentials("AKID", "SECRET", token), host=host, path=path, headers=content, body=body, now=NOW
    )
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"]


def test_catalog_store_keeps_the_last_good_copy(tmp_path: Path) -> None:
    path = tmp_path / "games.json"
    path.write_text(json.dumps({"games": [{"game_id": "g1", "title": "One", "provider": "P", "category": "slots"}]}))
    metrics = LobbyMetrics()
    store = CatalogStore(FileCatalogSource(path), metrics)
    assert store.refresh_blocking() == "updated"
    assert store.refresh_blocking() == "not_modified"
    path.write_text("{not json")
    assert store.refresh_blocking() == "error"
    assert store.catalog is not None
    assert list(store.catalog.games) == ["g1"]
    assert store.catalog.games["g1"].api == {"gameId": "g1", "name": "One", "provider": "P", "categories": ["slots"]}
    path.unlink()
    assert store.refresh_blocking() == "error"
    assert store.catalog.games["g1"].name == "One"
    outcomes = {
        s.labels["outcome"]: s.value
        for s in next(iter(metrics.catalog_refreshes.collect())).samples
        if s.name.endswith("_total")
    }
    assert outcomes == {"updated": 1.0, "not_modified": 1.0, "error": 2.0}


def write_catalog(path: Path, games: int, *, disabled: int = 0) -> None:
    entries = [
        {"game_id": f"g{n}", "title": f"Game {n}", "provider": "P", "category": "slots", "enabled": n >= disabled}
        for n in range(games)
    ]
    path.write_text(json.dumps({"version": 1, "games": entries}))


def refreshes(metrics: LobbyMetrics) -> dict[str, float]:
    samples = next(iter(metrics.catalog_refreshes.collect())).samples
    return {s.labels["outcome"]: s.value for s in samples if s.name.endswith("_total")}


@pytest.mark.parametrize(("games", "disabled"), [(0, 0), (5, 5)])
def test_a_catalog_without_a_game_to_show_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, games: int, disabled: int
) -> None:
    path = tmp_path / "games.json"
    write_catalog(path, 10)
    metrics = LobbyMetrics()
    store = CatalogStore(FileCatalogSource(path), metrics)
    assert store.refresh_blocking() == "updated"
    write_catalog(path, games, disabled=disabled)  # `batch datasets` on an empty platform database
    with caplog.at_level(logging.WARNING, logger="pam.api"):
        assert store.refresh_blocking() == "error"
    assert store.catalog is not None
    assert len(store.catalog.games) == 10
    assert store.last_error is not None and "no enabled game" in store.last_error
    assert "catalog refresh failed" in caplog.text
    assert refreshes(metrics) == {"updated": 1.0, "error": 1.0}
    assert next(iter(metrics.catalog_games.collect())).samples[0].value == 10
    write_catalog(path, 9)  # the next good run is taken
    assert store.refresh_blocking() == "updated"
    assert store.last_error is None


def test_no_first_catalog_from_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "games.json"
    write_catalog(path, 0)
    store = CatalogStore(FileCatalogSource(path), LobbyMetrics())
    assert store.refresh_blocking() == "error"
    assert store.catalog is None  # not ready, rather than ready with empty lobbies


@pytest.mark.parametrize(
    ("max_shrink", "taken", "refused"),
    [(0.5, 50, 49), (0.9, 10, 9), (1.0, 1, 0), (0.25, 75, 74)],
)
def test_a_catalog_that_lost_too_many_games_is_refused(
    tmp_path: Path, max_shrink: float, taken: int, refused: int
) -> None:
    path = tmp_path / "games.json"
    write_catalog(path, 100)
    store = CatalogStore(FileCatalogSource(path), LobbyMetrics(), max_shrink=max_shrink)
    assert store.refresh_blocking() == "updated"
    write_catalog(path, 100, disabled=100 - refused)
    assert store.refresh_blocking() == "error"
    assert store.catalog is not None and len(store.catalog.games) == 100
    assert store.last_error is not None
    if refused:
        assert f"{refused} enabled games" in store.last_error
    write_catalog(path, taken)
    assert store.refresh_blocking() == "updated"
    assert len(store.catalog.games) == taken


class EverySource:
    """A source that sends the catalog on every fetch, whatever the tag (as if it ignored If-None-Match),
    and records the tags it was asked with."""

    def __init__(self, path: Path) -> None:
        self._file = FileCatalogSource(path)
        self.asked: list[str | None] = []

    def fetch(self, tag: str | None) -> Fetched:
        self.asked.append(tag)
        return self._file.fetch(None)


@pytest.mark.parametrize("honours_tag", [True, False])
def test_a_refused_catalog_is_parsed_and_warned_about_once_per_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, honours_tag: bool
) -> None:
    path = tmp_path / "games.json"
    write_catalog(path, 10)
    metrics = LobbyMetrics()
    source = FileCatalogSource(path) if honours_tag else EverySource(path)
    store = CatalogStore(source, metrics)
    assert store.refresh_blocking() == "updated"
    write_catalog(path, 0)
    with mock.patch("pam.api.catalog.parse_catalog", wraps=parse_catalog) as parse:
        with caplog.at_level(logging.WARNING, logger="pam.api"):
            assert store.refresh_blocking() == "error"
            refused = store.last_error
            assert refused is not None and "no enabled game" in refused
            assert parse.call_count == 1
            assert store.refresh_blocking() == "not_modified"  # the same refused catalog: not parsed again
            assert store.refresh_blocking() == "not_modified"
        assert parse.call_count == 1
        assert caplog.text.count("catalog refresh failed") == 1
        assert store.last_error == refused  # still refused: /readyz and the admin still say why
        assert store.catalog is not None and len(store.catalog.games) == 10
        assert refreshes(metrics) == {"updated": 1.0, "error": 1.0, "not_modified": 2.0}
        write_catalog(path, 1, disabled=1)  # a new version, refused too: parsed, counted and warned once more
        os.utime(path, ns=(1, 1))  # a new tag even on a coarse clock (the file's tag is its mtime and size)
        with caplog.at_level(logging.WARNING, logger="pam.api"):
            assert store.refresh_blocking() == "error"
            assert store.refresh_blocking() == "not_modified"
        assert parse.call_count == 2
        assert caplog.text.count("catalog refresh failed") == 2
        write_catalog(path, 9)  # the next good one is taken
        assert store.refresh_blocking() == "updated"
        assert parse.call_count == 3
    assert store.last_error is None
    assert len(store.catalog.games) == 9
    if isinstance(source, EverySource):
        assert source.asked[-1] is not None  # asked with the refused tag, then taken from the data


def test_max_shrink_is_a_setting_within_bounds() -> None:
    assert PamSettings().catalog_max_shrink == 0.5
    assert PamSettings(catalog_max_shrink=0.8).catalog_max_shrink == 0.8
    for wrong in (0, -0.1, 1.5):
        with pytest.raises(ValidationError, match="catalog_max_shrink"):
            PamSettings(catalog_max_shrink=wrong)
    with pytest.raises(ValueError, match="max_shrink"):
        CatalogStore(FileCatalogSource(Path("games.json")), LobbyMetrics(), max_shrink=0)


def test_the_served_catalog_keeps_to_the_max_shrink_setting(tmp_path: Path) -> None:
    path = tmp_path / "games.json"
    write_catalog(path, 10)
    services = build_services(
        PamSettings(
            jwt_secret="s" * 32,
            database_url=f"sqlite:///{tmp_path / 'platform.db'}",
            catalog_url=str(path),
            catalog_max_shrink=0.8,
        )
    )
    try:
        assert services.catalog.refresh_blocking() == "updated"
        write_catalog(path, 3)  # 70% fewer: refused by default, taken with 0.8
        assert services.catalog.refresh_blocking() == "updated"
        assert services.catalog.catalog is not None and len(services.catalog.catalog.games) == 3
        write_catalog(path, 0)
        assert services.catalog.refresh_blocking() == "error"
        assert len(services.catalog.catalog.games) == 3
    finally:
        for close in services.closers:
            close()


def test_outputs_file_fills_what_the_settings_do_not_give(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps(
            {
                "campaigns": {
                    "popularity": CAMPAIGN + "pop",
                    "trending": CAMPAIGN + "trend",
                    "for_you": CAMPAIGN + "fy",
                    "sims": CAMPAIGN + "sims",
                },
                "filters": {"unavailable": "arn:aws:personalize:us-east-1:000000000000:filter/unavailable"},
            }
        )
    )
    arns = personalize_arns(PamSettings(outputs_file=outputs, trending_campaign_arn=CAMPAIGN + "explicit"))
    assert arns.popular == CAMPAIGN + "pop"
    assert arns.trending == CAMPAIGN + "explicit"
    assert arns.for_you == CAMPAIGN + "fy"
    assert arns.unavailable_filter is not None and arns.unavailable_filter.endswith("filter/unavailable")
    outputs.write_text(json.dumps({"campaigns": {"popularity": "not-an-arn"}}))
    with pytest.raises(SettingsError, match="PAM_OUTPUTS_FILE"):
        personalize_arns(PamSettings(outputs_file=outputs))


@pytest.mark.parametrize("arn", [CAMPAIGN + "pop\n", CAMPAIGN + "pop\nx", " " + CAMPAIGN + "pop"])
def test_an_arn_with_anything_around_it_is_not_an_arn(arn: str) -> None:
    with pytest.raises(ValidationError, match="popular_campaign_arn"):
        PamSettings(popular_campaign_arn=arn)
    assert PamSettings(popular_campaign_arn=CAMPAIGN + "pop").popular_campaign_arn == CAMPAIGN + "pop"
