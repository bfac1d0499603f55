"""Throughput of the similar-games loader into DynamoDB (moto server), against one PutItem per item.

What runs: moto server (``python -m devstack.moto_server``) as a separate process on a free port, and
this process, which generates ``--items`` answers (each game with ``--similar`` similar games and their
scores, the item shape ``batch similar`` writes) and loads them twice into fresh on-demand tables:

- the loader, :class:`batch.similar.loader.SimilarGamesLoader`: one consistent BatchGetItem (marker +
  25 rows) and one BatchWriteItem per 25 items, ``--concurrency`` requests in flight;
- the baseline: one PutItem per item, one after the other, as a loader written the obvious way does.
  It writes the first ``--baseline-items`` of the same answers (default 5,000: its rate does not
  depend on the count, and all 20,000 would take minutes).

Printed: items/s of each, the ratio, requests per item, and the machine's load average (the machine
may be shared). Exits 0 whatever the figures.

    .venv/bin/python bench/dynamodb_loader.py                       # 20,000 items, ~1-2 minutes on 2 cores
    .venv/bin/python bench/dynamodb_loader.py --items 5000 --concurrency 8
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from batch.similar.loader import LoaderOptions, SimilarGamesLoader
from batch.similar.model_version import ModelVersion
from batch.similar.output import OutputReport, SimilarGames
from batch.similar.table import SimilarGamesTable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from devstack.moto_server import run_moto_server as moto_server

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REGION = "us-east-1"


def client(url: str, concurrency: int) -> DynamoDBClient:
    config = Config(
        retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=max(10, concurrency + 2), read_timeout=60
    )
    dynamodb: DynamoDBClient = boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )
    return dynamodb


def answers(count: int, similar: int) -> Iterator[SimilarGames]:
    for n in range(count):
        games = tuple(f"game-{(n + step * 7919) % count:06d}" for step in range(1, similar + 1))
        scores = tuple(round(1.0 / (rank + 1), 6) for rank in range(similar))
        yield SimilarGames(f"game-{n:06d}", games, scores)


def baseline(dynamodb: DynamoDBClient, table: SimilarGamesTable, count: int, similar: int) -> float:
    """One PutItem per item, in order; returns the seconds it took."""
    started = time.monotonic()
    updated_at = datetime.now(UTC).isoformat()
    for answer in answers(count, similar):
        dynamodb.put_item(TableName=table.name, Item=table.item(answer, updated_at))
    return time.monotonic() - started


def count_items(dynamodb: DynamoDBClient, name: str) -> int:
    total = 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=name, Select="COUNT"):
        total += page["Count"]
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=20_000, help="answers to load (default 20000)")
    parser.add_argument("--baseline-items", type=int, default=5_000, help="items the baseline writes (default 5000)")
    parser.add_argument("--similar", type=int, default=25, help="similar games per item (default 25)")
    parser.add_argument("--concurrency", type=int, default=4, help="loader requests in flight (default 4)")
    args = parser.parse_args()
    model = ModelVersion(datetime.now(UTC), "bench-sims")
    with (
        tempfile.TemporaryDirectory(prefix="bench-dynamodb-") as folder,
        moto_server(Path(folder) / "moto.log", timeout=30) as url,
    ):
        dynamodb = client(url, args.concurrency)
        load_before = os.getloadavg()

        table = SimilarGamesTable(dynamodb, "similar-loader", model)
        loader = SimilarGamesLoader(table, LoaderOptions(concurrency=args.concurrency))

        def source(report: OutputReport) -> Iterator[SimilarGames]:
            return answers(args.items, args.similar)

        summary = loader.load(source)
        loaded = count_items(dynamodb, table.name) - 1  # the marker item

        plain = SimilarGamesTable(dynamodb, "similar-baseline", model)
        plain.ensure(create=True)
        baseline_items = min(args.baseline_items, args.items)
        baseline_seconds = baseline(dynamodb, plain, baseline_items, args.similar)
        load_after = os.getloadavg()
    loader_rate = summary.written / summary.seconds
    baseline_rate = baseline_items / baseline_seconds
    requests = summary.write_requests + summary.read_requests
    print(f"items:              {args.items:,} ({args.similar} similar games and scores each)")
    print(
        f"loader:             {summary.written:,} items in {summary.seconds:.1f} s = {loader_rate:,.0f} items/s"
        f"  ({summary.write_requests:,} BatchWriteItem + {summary.read_requests:,} BatchGetItem,"
        f" {requests / max(summary.written, 1):.3f} requests/item, concurrency {args.concurrency},"
        f" {summary.unprocessed_retries} unprocessed retries); {loaded:,} items in the table"
    )
    print(
        f"baseline (PutItem): {baseline_items:,} items in {baseline_seconds:.1f} s = {baseline_rate:,.0f} items/s"
        "  (1 request/item, sequential)"
    )
    print(f"ratio:              {loader_rate / baseline_rate:.1f}x")
    print(f"load average:       {load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
