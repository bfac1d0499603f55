"""The batch pipeline into the lobby, every step a console script on the local stack:
``pam db seed`` -> ``batch datasets`` -> ``batch personalize apply`` -> ``batch similar run`` (SIMS batch
inference in the emulator, loaded into DynamoDB) -> ``pam serve``. The lobby PAM answers must be made of
what those steps produced: the similar games the loader wrote for the player's last played game, and the
campaigns that apply created, with nothing unavailable and no game twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.integration.lobby_stack import DATASETS_BUCKET, LobbyStack, running_lobby_stack


@pytest.fixture(scope="module")
def built(
    devstack_env: Mapping[str, str], aws_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LobbyStack]:
    work = tmp_path_factory.mktemp("batch-to-lobby")
    with running_lobby_stack(devstack_env, aws_client, work, similar="batch", name="batch-to-lobby") as stack:
        yield stack


def _model_rows(stack: LobbyStack) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    paginator = stack.dynamodb.get_paginator("scan")
    for page in paginator.paginate(TableName=stack.similar_table, ConsistentRead=True):
        for item in page["Items"]:
            rows[item["gameId"]["S"]] = item
    return rows


def _player_country(stack: LobbyStack, player_id: str) -> str:
    with sqlite3.connect(stack.work / "platform.db") as db:
        row = db.execute("SELECT country FROM players WHERE id = ?", (player_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_the_loader_wrote_one_row_per_game_of_one_model(built: LobbyStack, aws_client: Any) -> None:
    items = aws_client("s3").get_object(Bucket=DATASETS_BUCKET, Key="batch-to-lobby-datasets/items.csv")
    lines = items["Body"].read().decode().splitlines()
    item_ids = {line.split(",", 1)[0] for line in lines[1:]}
    rows = _model_rows(built)
    games = {game_id for game_id in rows if not game_id.startswith("#")}
    assert games == item_ids, "one similar-games row per game of the Items dataset"
    assert set(built.catalog) <= games
    versions = {rows[game_id]["modelVersion"]["S"] for game_id in games}
    assert len(versions) == 1 and "solution/" in versions.pop(), "every row from the one SIMS solution version"
    assert all(rows[game_id]["similar"]["L"] for game_id in games)


def test_the_lobby_is_made_of_what_the_batch_produced(built: LobbyStack) -> None:
    player = built.player_id
    lobby = built.healthy_lobby(player, built.token(player))
    sections = {section["key"]: section for section in lobby["sections"]}
    assert list(sections) == ["because_you_played", "for_you", "trending", "popular"]

    last = lobby["lastPlayedGameId"]
    assert last in built.catalog
    row = _model_rows(built)[last]
    loaded = [value["S"] for value in row["similar"]["L"]]
    shown = [game["gameId"] for game in sections["because_you_played"]["games"]]
    assert sections["because_you_played"]["source"] == "similar-games"
    # The section follows the loaded order: its games are the loaded list with what the player may not see
    # (and the last played game itself) left out, then topped up from popular when short.
    from_model = [game for game in shown if game in loaded]
    assert from_model == sorted(from_model, key=loaded.index)
    assert from_model, "the loaded similar games reach the lobby"
    assert shown[: len(from_model)] == from_model, "the model's games come before any top-up"

    for key in ("for_you", "trending", "popular"):
        assert sections[key]["source"].startswith("personalize-"), sections[key]
        assert sections[key]["recommendationId"], f"{key} comes from a campaign and carries its recommendationId"

    every = [game["gameId"] for section in lobby["sections"] for game in section["games"]]
    assert len(every) == len(set(every)), "a game appears in one section only"
    country = _player_country(built, player)
    for game_id in every:
        entry = built.catalog[game_id]
        assert entry.get("enabled", True), f"{game_id} is disabled in the catalog"
        jurisdictions = entry.get("jurisdictions")
        if jurisdictions:
            assert country in jurisdictions, f"{game_id} is not licensed in {country}"
