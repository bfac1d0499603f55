"""The similar-games loader against an in-memory DynamoDB: batches of 25, unprocessed items retried with
backoff (bounded), parallel writes, and the never-older rule (claim, read-before-write, repair)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from batch.errors import ConfigurationError
from batch.similar.backoff import Backoff
from batch.similar.errors import LoadFailedError
from batch.similar.loader import LoaderOptions, SimilarGamesLoader
from batch.similar.model_version import ModelVersion
from batch.similar.output import OutputReport, SimilarGames
from batch.similar.table import MARKER_ID, SimilarGamesTable

OLD = ModelVersion(datetime(2024, 6, 1, tzinfo=UTC), "sims-v1")
NEW = ModelVersion(datetime(2024, 7, 1, tzinfo=UTC), "sims-v2")
TABLE = "similar-games"


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "Op")


class FakeDynamoDB:
    """The DynamoDB calls the loader makes, on a dict; ``unprocessed(call, items)`` picks items to leave."""

    def __init__(self, key: str | None = "gameId") -> None:
        self.key = key
        self.rows: dict[str, dict[str, Any]] = {}
        self.write_calls: list[list[str]] = []
        self.get_calls = 0
        self.unprocessed: Callable[[int, list[dict[str, Any]]], list[dict[str, Any]]] = lambda call, items: []
        self.before_write: Callable[[int], None] = lambda call: None
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate: threading.Barrier | None = None

    def describe_table(self, TableName: str) -> dict[str, Any]:
        if self.key is None:
            raise _error("ResourceNotFoundException")
        return {"Table": {"KeySchema": [{"AttributeName": self.key, "KeyType": "HASH"}], "TableStatus": "ACTIVE"}}

    def create_table(self, **request: Any) -> dict[str, Any]:
        assert request["BillingMode"] == "PAY_PER_REQUEST"
        self.key = request["KeySchema"][0]["AttributeName"]
        return {}

    def put_item(self, TableName: str, Item: dict[str, Any], **kw: Any) -> dict[str, Any]:
        key = Item[self.key or ""]["S"]
        with self.lock:
            old = self.rows.get(key)
            mine = kw["ExpressionAttributeValues"][":mine"]["S"]
            if old is not None and old["modelVersion"]["S"] > mine:
                raise _error("ConditionalCheckFailedException")
            self.rows[key] = Item
        return {"Attributes": old} if old else {}

    def get_item(self, TableName: str, Key: dict[str, Any], **kw: Any) -> dict[str, Any]:
        row = self.rows.get(Key[self.key or ""]["S"])
        return {"Item": row} if row else {}

    def update_item(self, TableName: str, Key: dict[str, Any], **kw: Any) -> dict[str, Any]:
        with self.lock:
            row = self.rows.get(Key[self.key or ""]["S"])
            if row is None or row["modelVersion"] != kw["ExpressionAttributeValues"][":mine"]:
                raise _error("ConditionalCheckFailedException")
            row["heartbeatAt"] = kw["ExpressionAttributeValues"][":now"]
        return {}

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        request = RequestItems[TABLE]
        assert request["ConsistentRead"] is True
        assert len(request["Keys"]) <= 100
        self.get_calls += 1
        found = [self.rows[k[self.key or ""]["S"]] for k in request["Keys"] if k[self.key or ""]["S"] in self.rows]
        return {"Responses": {TABLE: found}, "UnprocessedKeys": {}}

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        requests = RequestItems[TABLE]
        assert 1 <= len(requests) <= 25
        items = [request["PutRequest"]["Item"] for request in requests]
        ids = [item[self.key or ""]["S"] for item in items]
        assert len(set(ids)) == len(ids), "BatchWriteItem refuses a key twice"
        with self.lock:
            call = len(self.write_calls)
            self.write_calls.append(ids)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                self.gate.wait(timeout=5)
            self.before_write(call)
            left = self.unprocessed(call, items)
            with self.lock:
                for item in items:
                    if item not in left:
                        self.rows[item[self.key or ""]["S"]] = item
            return {"UnprocessedItems": {TABLE: [{"PutRequest": {"Item": item}} for item in left]} if left else {}}
        finally:
            with self.lock:
                self.in_flight -= 1

    def version_of(self, game_id: str) -> str:
        return str(self.rows[game_id]["modelVersion"]["S"])


def answers(count: int, prefix: str = "g") -> list[SimilarGames]:
    return [SimilarGames(f"{prefix}-{n:05d}", (f"{prefix}-{(n + 1) % count:05d}",), (0.5,)) for n in range(count)]


def source(items: list[SimilarGames]) -> Callable[[OutputReport], Iterator[SimilarGames]]:
    def read(report: OutputReport) -> Iterator[SimilarGames]:
        yield from items

    return read


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def loader(fake: FakeDynamoDB, model: ModelVersion, sleeps: Sleeps | None = None, **options: Any) -> SimilarGamesLoader:
    table = SimilarGamesTable(fake, TABLE, model)  # type: ignore[arg-type]
    options.setdefault("backoff", Backoff(base=0.1, cap=1.0, rng=random.Random(7)))
    return SimilarGamesLoader(table, LoaderOptions(**options), sleep=sleeps or Sleeps())


def test_writes_in_batches_of_25_with_the_item_shape() -> None:
    fake = FakeDynamoDB()
    summary = loader(fake, NEW, concurrency=3).load(source(answers(101)))
    assert sorted(len(call) for call in fake.write_calls) == [1, 25, 25, 25, 25]
    assert (summary.answers, summary.written, summary.write_requests, summary.skipped_older) == (101, 101, 5, 0)
    row = fake.rows["g-00007"]
    assert row["gameId"] == {"S": "g-00007"}
    assert row["similar"] == {"L": [{"S": "g-00008"}]}
    assert row["scores"] == {"L": [{"N": "0.5"}]}
    assert row["modelVersion"] == {"S": NEW.key}
    assert row["modelSource"] == {"S": "sims-v2"}
    assert datetime.fromisoformat(row["updatedAt"]["S"]).tzinfo is not None
    assert fake.rows[MARKER_ID]["modelVersion"] == {"S": NEW.key}


def test_table_created_when_missing_and_refused_when_not_allowed() -> None:
    fake = FakeDynamoDB(key=None)
    summary = loader(fake, NEW).load(source(answers(3)))
    assert summary.created_table and fake.key == "gameId" and summary.written == 3
    with pytest.raises(ConfigurationError, match="BATCH_SIMILAR_CREATE_TABLE"):
        loader(FakeDynamoDB(key=None), NEW).load(source(answers(3)), create_table=False)


def test_uses_the_hash_key_of_an_existing_table() -> None:
    fake = FakeDynamoDB(key="game_id")
    loader(fake, NEW).load(source(answers(2)))
    assert fake.rows["g-00001"]["game_id"] == {"S": "g-00001"}


def test_duplicate_games_in_a_batch_are_written_once() -> None:
    fake = FakeDynamoDB()
    items = [*answers(3), SimilarGames("g-00001", ("g-x",))]
    summary = loader(fake, NEW).load(source(items))
    assert summary.duplicates == 1
    assert fake.rows["g-00001"]["similar"] == {"L": [{"S": "g-x"}]}


def test_unprocessed_items_are_retried_with_backoff_and_jitter() -> None:
    fake = FakeDynamoDB()
    # The first two calls for each batch leave all but the first 5 items unprocessed.
    fake.unprocessed = lambda call, items: items[5:] if call < 2 else []
    sleeps = Sleeps()
    summary = loader(fake, NEW, sleeps, concurrency=1).load(source(answers(25)))
    assert summary.written == 25
    assert [len(call) for call in fake.write_calls] == [25, 20, 15]
    assert (summary.unprocessed_retries, summary.retried_items, summary.write_requests) == (2, 35, 3)
    assert len(sleeps.calls) == 2
    assert 0 <= sleeps.calls[0] <= 0.1 and 0 <= sleeps.calls[1] <= 0.2
    assert sleeps.calls[0] != sleeps.calls[1]  # jittered


def test_unprocessed_items_fail_clearly_after_the_last_attempt() -> None:
    fake = FakeDynamoDB()
    fake.unprocessed = lambda call, items: items[-1:]
    sleeps = Sleeps()
    with pytest.raises(LoadFailedError, match=r"1 items stayed unprocessed by DynamoDB after 4 BatchWriteItem"):
        loader(fake, NEW, sleeps, concurrency=1, max_attempts=4).load(source(answers(25)))
    assert len(fake.write_calls) == 4
    assert len(sleeps.calls) == 3


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(1))
    assert all(0 <= backoff.delay(1) <= 1.0 for _ in range(100))
    assert max(backoff.delay(4) for _ in range(200)) > 4.0
    assert all(backoff.delay(30) <= 8.0 for _ in range(100))
    assert Backoff(base=1.0, cap=2.0, floor=0.5).delay(1) >= 0.5


def test_requests_run_in_parallel() -> None:
    fake = FakeDynamoDB()
    fake.gate = threading.Barrier(3)
    summary = loader(fake, NEW, concurrency=3).load(source(answers(75)))
    assert summary.written == 75
    assert fake.max_in_flight == 3


def test_older_model_never_replaces_newer_rows() -> None:
    fake = FakeDynamoDB()
    loader(fake, NEW).load(source(answers(30)))
    summary = loader(fake, OLD).load(source(answers(40)))
    assert summary.written == 0 and summary.skipped_older == 40
    assert summary.superseded_by == NEW.key
    assert all(fake.version_of(f"g-{n:05d}") == NEW.key for n in range(30))
    assert "g-00035" not in fake.rows  # nothing of the older model at all once a newer one owns the table
    assert fake.version_of(MARKER_ID) == NEW.key


def test_newer_model_replaces_older_rows_and_same_model_reloads() -> None:
    fake = FakeDynamoDB()
    loader(fake, OLD).load(source(answers(30)))
    summary = loader(fake, NEW, race_window=0).load(source(answers(10)))
    assert summary.written == 10
    assert fake.version_of("g-00005") == NEW.key and fake.version_of("g-00020") == OLD.key
    again = loader(fake, NEW, race_window=0).load(source(answers(10)))
    assert again.written == 10 and again.skipped_older == 0


def test_rows_newer_than_the_marker_are_skipped() -> None:
    """Rows of a newer model whose marker is missing (e.g. deleted by hand) still win."""
    fake = FakeDynamoDB()
    loader(fake, NEW).load(source(answers(5)))
    del fake.rows[MARKER_ID]
    summary = loader(fake, OLD).load(source(answers(8)))
    assert (summary.written, summary.skipped_older) == (3, 5)
    assert fake.version_of("g-00004") == NEW.key and fake.version_of("g-00007") == OLD.key


def test_newer_claim_during_an_older_load_stops_it() -> None:
    fake = FakeDynamoDB()

    def newer_arrives(call: int) -> None:
        if call == 1:  # while the older load writes its second batch, a newer model claims the table
            fake.before_write = lambda call: None
            loader(fake, NEW, race_window=0).load(source(answers(200)))

    fake.before_write = newer_arrives
    summary = loader(fake, OLD, concurrency=1).load(source(answers(200)))
    assert summary.superseded_by == NEW.key
    # Batch 0 written before the claim, batch 1 was in flight (its write lands: the window), the rest skipped.
    assert summary.written == 50 and summary.skipped_older == 150
    assert sum(fake.version_of(f"g-{n:05d}") == OLD.key for n in range(200)) == 25  # batch 1 clobbered


def test_repair_pass_restores_rows_an_in_flight_older_write_replaced() -> None:
    """The race's window, closed: the newer load waits for the fence, then rewrites rows left older."""
    fake = FakeDynamoDB()
    older_done = threading.Event()
    newer_summary: list[Any] = []

    class Fence:
        def __call__(self, seconds: float) -> None:
            assert seconds > 0
            assert older_done.wait(timeout=10)

    def newer_load() -> None:
        table = SimilarGamesTable(fake, TABLE, NEW)  # type: ignore[arg-type]
        newer = SimilarGamesLoader(table, LoaderOptions(fence=30.0), sleep=Fence())
        newer_summary.append(newer.load(source(answers(50))))

    started: list[threading.Thread] = []

    def newer_arrives(call: int) -> None:
        if call == 1 and not started:
            thread = threading.Thread(target=newer_load)
            started.append(thread)
            thread.start()
            # Let the newer load claim and write everything, then this older write lands on top.
            deadline = 100
            while len(fake.write_calls) < 4 and deadline:
                deadline -= 1
                threading.Event().wait(0.02)

    fake.before_write = newer_arrives
    older = loader(fake, OLD, concurrency=1).load(source(answers(50)))
    assert sum(fake.version_of(f"g-{n:05d}") == OLD.key for n in range(50)) == 25  # clobbered, for now
    older_done.set()
    started[0].join(timeout=10)
    summary = newer_summary[0]
    assert summary.repair_pass and summary.repaired == 25
    assert all(fake.version_of(f"g-{n:05d}") == NEW.key for n in range(50))
    assert older.written == 50
