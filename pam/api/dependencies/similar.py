"""Similar games from DynamoDB: one GetItem on the table ``batch similar`` fills.

A row: the partition key (``gameId`` by default) = the game, ``similar`` = the similar game ids in order
(a list of strings), ``modelVersion`` and ``updatedAt``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Final

from pam.api.aws.client import AwsJsonClient

DYNAMODB_CONTENT_TYPE: Final = "application/x-amz-json-1.0"
GET_ITEM: Final = "DynamoDB_20120810.GetItem"


@dataclass(frozen=True, slots=True)
class SimilarGames:
    game_id: str
    similar: tuple[str, ...]
    model_version: str | None = None


_S = operator.itemgetter("S")


def _strings(attribute: Any) -> tuple[str, ...]:
    if not isinstance(attribute, dict):
        return ()
    if "L" in attribute and isinstance(attribute["L"], list):
        entries = attribute["L"]
        try:  # the common shape, in one C-level pass
            strings = tuple(map(_S, entries))
        except (KeyError, TypeError):
            pass
        else:
            if not strings or set(map(type, strings)) == {str}:
                return strings
        return tuple(entry["S"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("S"), str))
    if "SS" in attribute and isinstance(attribute["SS"], list):
        return tuple(str(value) for value in attribute["SS"])
    if "S" in attribute:  # a |-joined string
        return tuple(part for part in str(attribute["S"]).split("|") if part)
    return ()


class SimilarGamesTable:
    """Reads one game's similar games (eventually consistent: cheaper, and a lag is harmless)."""

    def __init__(self, client: AwsJsonClient, table: str, key: str = "gameId") -> None:
        self._client = client
        self._table = table
        self._key = key

    async def get(self, game_id: str) -> SimilarGames | None:
        """The game's row, or None when the table has none."""
        answer = await self._client.call(
            "/", {"TableName": self._table, "Key": {self._key: {"S": game_id}}}, target=GET_ITEM
        )
        item = answer.get("Item")
        if not isinstance(item, dict):
            return None
        version = item.get("modelVersion")
        return SimilarGames(
            game_id=game_id,
            similar=_strings(item.get("similar")),
            model_version=str(version.get("S") or version.get("N")) if isinstance(version, dict) else None,
        )
