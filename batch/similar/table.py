"""The similar-games table: one item per game, plus one marker item naming the model that owns the table.

A game's item (the key attribute is the table's own hash key: ``gameId`` when the loader creates the
table, whatever name an existing table uses)::

    {"gameId": "g-1", "similar": ["g-2", "g-3"], "scores": [0.8, 0.5],      # scores only when given
     "modelVersion": "2024-06-01T12:00:00.000000Z arn:...:solution/sims/1a2b", "modelSource": "arn:...",
     "modelCreatedAt": "2024-06-01T12:00:00+00:00", "updatedAt": "2024-06-02T03:04:05.678+00:00"}

The marker item (key :data:`MARKER_ID`) holds the newest model that ever started loading, written only
by a conditional PutItem, so it can never go back to an older model. See :mod:`batch.similar.loader`
for how it keeps older models from replacing newer rows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from batch.errors import ConfigurationError
from batch.similar.errors import LoadFailedError
from batch.similar.model_version import ModelVersion
from batch.similar.output import SimilarGames

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: The key of the marker item; never a game id (the loader refuses a game of this id).
MARKER_ID: Final = "#model-version"
#: The hash key of a table the loader creates.
DEFAULT_KEY: Final = "gameId"
#: BatchWriteItem takes at most 25 puts; BatchGetItem at most 100 keys.
WRITE_BATCH: Final = 25
READ_BATCH: Final = 100

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class Marker:
    """The model that owns the table, and when its loader last said it was alive."""

    model_version: str
    heartbeat_at: float


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of :meth:`SimilarGamesTable.claim`: ``owned`` unless a newer model holds the marker."""

    owned: bool
    previous: Marker | None
    current: Marker | None


class SimilarGamesTable:
    """Typed access to the table for one model version. Thread-safe (boto3 clients are)."""

    def __init__(self, client: DynamoDBClient, name: str, model: ModelVersion) -> None:
        self._client = client
        self.name = name
        self.model = model
        self.key = DEFAULT_KEY

    # ------------------------------------------------------------------------------------- the table

    def ensure(self, *, create: bool, timeout: float = 120.0) -> bool:
        """Learn the table's hash key; create the table (on-demand) if it is missing and ``create``.

        Returns True when it was created. Raises ConfigurationError when it is missing and not to be created.
        """
        try:
            table = self._client.describe_table(TableName=self.name)["Table"]
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise LoadFailedError(f"cannot describe table {self.name}: {exc}") from exc
            if not create:
                raise ConfigurationError(
                    f"table {self.name} does not exist (BATCH_SIMILAR_CREATE_TABLE is false: create it first)"
                ) from None
            self._create(timeout)
            return True
        except BotoCoreError as exc:
            raise LoadFailedError(f"cannot reach DynamoDB for table {self.name}: {exc}") from exc
        hash_keys = [part["AttributeName"] for part in table["KeySchema"] if part["KeyType"] == "HASH"]
        if len(table["KeySchema"]) != 1 or not hash_keys:
            raise ConfigurationError(f"table {self.name} must have a hash key only (the game id), not a range key")
        self.key = hash_keys[0]
        return False

    def _create(self, timeout: float) -> None:
        try:
            self._client.create_table(
                TableName=self.name,
                KeySchema=[{"AttributeName": DEFAULT_KEY, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": DEFAULT_KEY, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if _code(exc) != "ResourceInUseException":  # created by a loader running beside us
                raise LoadFailedError(f"cannot create table {self.name}: {exc}") from exc
        deadline = time.monotonic() + timeout
        delay = 0.05
        while self._client.describe_table(TableName=self.name)["Table"]["TableStatus"] != "ACTIVE":
            if time.monotonic() >= deadline:
                raise LoadFailedError(f"table {self.name} did not become ACTIVE within {timeout:g}s")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        self.key = DEFAULT_KEY

    # ------------------------------------------------------------------------------------ the marker

    def _marker_key(self) -> Item:
        return {self.key: {"S": MARKER_ID}}

    @staticmethod
    def _marker(item: Mapping[str, Any] | None) -> Marker | None:
        if not item or "modelVersion" not in item:
            return None
        beat = item.get("heartbeatAt", {}).get("N", "0")
        return Marker(item["modelVersion"]["S"], float(beat))

    def read_marker(self) -> Marker | None:
        item = self._client.get_item(TableName=self.name, Key=self._marker_key(), ConsistentRead=True).get("Item")
        return self._marker(item)

    def claim(self) -> Claim:
        """Make this model the table's owner unless a newer one is; atomic (a conditional PutItem)."""
        item: Item = {
            **self._marker_key(),
            "modelVersion": {"S": self.model.key},
            "modelSource": {"S": self.model.source},
            "modelCreatedAt": {"S": self.model.created_iso},
            "heartbeatAt": {"N": repr(time.time())},
            "updatedAt": {"S": now_iso()},
        }
        try:
            answer = self._client.put_item(
                TableName=self.name,
                Item=item,
                ConditionExpression="attribute_not_exists(modelVersion) OR modelVersion <= :mine",
                ExpressionAttributeValues={":mine": {"S": self.model.key}},
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise LoadFailedError(f"cannot write the model marker of {self.name}: {exc}") from exc
            current = self.read_marker()
            return Claim(owned=False, previous=current, current=current)
        return Claim(owned=True, previous=self._marker(answer.get("Attributes")), current=self._marker(item))

    def heartbeat(self) -> bool:
        """Say this model's loader is alive; False when a newer model took the marker."""
        try:
            self._client.update_item(
                TableName=self.name,
                Key=self._marker_key(),
                UpdateExpression="SET heartbeatAt = :now",
                ConditionExpression="modelVersion = :mine",
                ExpressionAttributeValues={":now": {"N": repr(time.time())}, ":mine": {"S": self.model.key}},
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -------------------------------------------------------------------------------------- the rows

    def read_versions(self, game_ids: Sequence[str]) -> tuple[str | None, dict[str, str]]:
        """The marker's model version and each existing row's, in consistent reads (<= 99 ids at a time).

        Unprocessed keys are read again at once (reads are cheap and rarely throttled); raises
        LoadFailedError if DynamoDB keeps refusing.
        """
        if len(game_ids) >= READ_BATCH:
            raise ValueError(f"at most {READ_BATCH - 1} ids per read, got {len(game_ids)}")
        keys: list[Item] = [self._marker_key(), *({self.key: {"S": game_id}} for game_id in game_ids)]
        request: dict[str, Any] = {
            self.name: {
                "Keys": keys,
                "ConsistentRead": True,
                "ProjectionExpression": "#k, modelVersion",
                "ExpressionAttributeNames": {"#k": self.key},
            }
        }
        marker: str | None = None
        versions: dict[str, str] = {}
        for attempt in range(1, 11):
            answer = self._client.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(self.name, []):
                if "modelVersion" not in item:
                    continue
                key = item[self.key]["S"]
                if key == MARKER_ID:
                    marker = item["modelVersion"]["S"]
                else:
                    versions[key] = item["modelVersion"]["S"]
            unprocessed = answer.get("UnprocessedKeys", {}).get(self.name)
            if not unprocessed:
                return marker, versions
            request = {self.name: unprocessed}
            time.sleep(min(0.05 * 2**attempt, 2.0))
        raise LoadFailedError(f"BatchGetItem on {self.name} left keys unprocessed after 10 attempts")

    def item(self, answer: SimilarGames, updated_at: str) -> Item:
        item: Item = {
            self.key: {"S": answer.game_id},
            "similar": {"L": [{"S": game} for game in answer.similar]},
            "modelVersion": {"S": self.model.key},
            "modelSource": {"S": self.model.source},
            "modelCreatedAt": {"S": self.model.created_iso},
            "updatedAt": {"S": updated_at},
        }
        if answer.scores is not None:
            item["scores"] = {"L": [{"N": repr(score)} for score in answer.scores]}
        return item

    def write(self, answers: Sequence[SimilarGames]) -> list[SimilarGames]:
        """One BatchWriteItem of up to 25 puts; returns the answers DynamoDB left unprocessed."""
        if not 1 <= len(answers) <= WRITE_BATCH:
            raise ValueError(f"1..{WRITE_BATCH} items per BatchWriteItem, got {len(answers)}")
        updated_at = now_iso()
        by_id = {answer.game_id: answer for answer in answers}
        answer = self._client.batch_write_item(
            RequestItems={self.name: [{"PutRequest": {"Item": self.item(a, updated_at)}} for a in answers]}
        )
        left = answer.get("UnprocessedItems", {}).get(self.name, [])
        return [by_id[request["PutRequest"]["Item"][self.key]["S"]] for request in left if "PutRequest" in request]
