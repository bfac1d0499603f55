"""``pam serve`` over real HTTP against the devstack: the Personalize emulator (campaigns trained here with
boto3), moto's S3 (the catalog) and DynamoDB (similar games, behind a delaying proxy), and a platform
database in SQLite. Latency and failures come from the emulator's fault controls and the proxy; every
wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from sqlalchemy import insert

from devstack.personalize.client import EmulatorClient, error_fault, latency_fault
from devstack.stack import DevStack
from pam.api.models import LobbyResponse
from pam.db.engine import create_platform_engine
from pam.db.migrate import upgrade
from pam.db.models import Game, GameSession, Player
from tests.integration.support import free_port, wait_for
from tests.integration.test_personalize_control_plane import (
    INTERACTIONS_SCHEMA,
    ITEMS_SCHEMA,
    USERS_SCHEMA,
    interactions_csv,
    items_csv,
    users_csv,
    wait_status,
)

SECRET = "pam-api-integration-tests-secret-0123456789"
BUCKET = "pam-it-data"
CATALOG_KEY = "datasets/games.json"
TABLE = "pam-it-similar-games"
ROLE = "arn:aws:iam::000000000000:role/PersonalizeS3Access"
RECIPE = "arn:aws:personalize:::recipe/"
SECTION_SIZE = 4
DEADLINE_MS = 1500
PERSONALIZE_TIMEOUT_MS = 1000
SIMILAR_TIMEOUT_MS = 800
COOLDOWN_SECONDS = 1.0
PLAYER = "u-00"  # SE, history in Personalize and in the database; last played g-01
COLD = "p-new"  # SE, no history anywhere
FILLERS = [f"g-{n:02d}" for n in range(7, 31)]


# ------------------------------------------------------------------------------------------ the world


def catalog_games(*, disabled: frozenset[str] = frozenset({"g-05"})) -> list[dict[str, Any]]:
    """The Personalize data's games plus fillers; g-05 disabled, g-06 licensed in Germany only."""
    ids = ["g-01", "g-02", "g-03", "g-04", "g-05", "g-06", "g-hit", "g-rising", *FILLERS]
    return [
        {
            "game_id": game_id,
            "title": f"Title {game_id}",
            "provider": "Northlight Studios",
            "category": "slots",
            "volatility": "medium",
            "rtp": 0.961,
            "release_date": "2024-02-15",
            "jurisdictions": ["DE"] if game_id == "g-06" else ["SE", "MT", "DE"],
            "enabled": game_id not in disabled,
        }
        for game_id in ids
    ]


def upload_catalog(s3: Any, games: list[dict[str, Any]]) -> None:
    body = {"version": 1, "generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "games": games}
    s3.put_object(Bucket=BUCKET, Key=CATALOG_KEY, Body=json.dumps(body).encode(), ContentType="application/json")


def platform_database(path: Path) -> str:
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = create_platform_engine(url)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            insert(Game),
            [
                {
                    "id": game["game_id"],
                    "title": game["title"],
                    "provider": game["provider"],
                    "category": game["category"],
                    "volatility": game["volatility"],
                    "rtp": game["rtp"],
                    "release_date": date(2024, 2, 15),
                    "jurisdictions": game["jurisdictions"],
                    "enabled": game["enabled"],
                }
                for game in catalog_games()
            ],
        )
        players = [{"id": PLAYER, "country": "SE"}, {"id": "u-01", "country": "MT"}, {"id": COLD, "country": "SE"}]
        connection.execute(
            insert(Player),
            [{**p, "platform": "web", "currency": "EUR", "created_at": now - timedelta(days=90)} for p in players],
        )
        history = [("g-03", 3), ("g-05", 2), ("g-01", 1)]  # g-01 last; g-05 (disabled) before it
        connection.execute(
            insert(GameSession),
            [
                {
                    "player_id": PLAYER,
                    "game_id": game_id,
                    "session_id": f"s-{game_id}",
                    "started_at": now - timedelta(hours=hours),
                    "ended_at": now - timedelta(hours=hours) + timedelta(minutes=5),
                    "rounds": 10,
                    "total_stake": 10.0,
                    "total_win": 8.0,
                    "first_stake": 1.0,
                    "currency": "EUR",
                }
                for game_id, hours in history
            ],
        )
    engine.dispose()
    return url


def train_campaigns(personalize: Any, s3: Any) -> dict[str, str]:
    """Schemas, group, datasets, imports, a filter, solutions, versions and campaigns, with boto3."""
    s3.put_object(Bucket=BUCKET, Key="pam-it/interactions.csv", Body=interactions_csv())
    s3.put_object(Bucket=BUCKET, Key="pam-it/items.csv", Body=items_csv())
    s3.put_object(Bucket=BUCKET, Key="pam-it/users.csv", Body=users_csv())
    group = personalize.create_dataset_group(name="pam-it")["datasetGroupArn"]
    wait_status(personalize, group)
    for kind, schema in (("INTERACTIONS", INTERACTIONS_SCHEMA), ("ITEMS", ITEMS_SCHEMA), ("USERS", USERS_SCHEMA)):
        schema_arn = personalize.create_schema(name=f"pam-it-{kind.lower()}", schema=json.dumps(schema))["schemaArn"]
        dataset = personalize.create_dataset(
            name=f"pam-it-{kind.lower()}", schemaArn=schema_arn, datasetGroupArn=group, datasetType=kind
        )["datasetArn"]
        wait_status(personalize, dataset)
        job = personalize.create_dataset_import_job(
            jobName=f"pam-it-{kind.lower()}",
            datasetArn=dataset,
            dataSource={"dataLocation": f"s3://{BUCKET}/pam-it/{kind.lower()}.csv"},
            roleArn=ROLE,
        )["datasetImportJobArn"]
        wait_status(personalize, job)
    unavailable = personalize.create_filter(
        name="pam-it-unavailable",
        datasetGroupArn=group,
        filterExpression='EXCLUDE ItemID WHERE Items.AVAILABLE IN ("false")',
    )["filterArn"]
    wait_status(personalize, unavailable)
    recipes = {
        "popular": "aws-popularity-count",
        "trending": "aws-trending-now",
        "for_you": "aws-user-personalization-v2",
    }
    versions = {}
    for name, recipe in recipes.items():
        solution = personalize.create_solution(
            name=f"pam-it-{name}", datasetGroupArn=group, recipeArn=RECIPE + recipe, performAutoTraining=False
        )["solutionArn"]
        wait_status(personalize, solution)
        versions[name] = personalize.create_solution_version(solutionArn=solution)["solutionVersionArn"]
    campaigns = {}
    for name, version in versions.items():
        wait_status(personalize, version)
        campaigns[name] = personalize.create_campaign(
            name=f"pam-it-{name}", solutionVersionArn=version, minProvisionedTPS=1
        )["campaignArn"]
    for arn in campaigns.values():
        wait_status(personalize, arn)
    return {**campaigns, "unavailable": unavailable}


def fill_similar_table(dynamodb: Any) -> None:
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "gameId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "gameId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    rows = {"g-01": ["g-05", "g-06", "g-02", "g-07", "g-08", "g-09", "g-10"], "g-03": ["g-04", "g-11"]}
    for game_id, similar in rows.items():
        dynamodb.put_item(
            TableName=TABLE,
            Item={
                "gameId": {"S": game_id},
                "similar": {"L": [{"S": other} for other in similar]},
                "modelVersion": {"S": "v-it"},
                "updatedAt": {"S": datetime.now(UTC).isoformat()},
            },
        )


class DelayingProxy:
    """A TCP proxy (its own thread and event loop) in front of an HTTP endpoint: requests wait ``delay``
    seconds before they are forwarded; ``fail`` closes every connection instead."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.delay = 0.0
        self.fail = False
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DelayingProxy:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            writer.close()
            return

        async def forward() -> None:
            while data := await reader.read(65536):
                if self.fail:
                    break
                if self.delay:
                    await asyncio.sleep(self.delay)
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()
            writer.close()

        async def back() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        try:
            await asyncio.gather(forward(), back())
        except (OSError, ConnectionError):
            writer.close()
            up_writer.close()


@dataclass
class Pam:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    emulator: EmulatorClient
    proxy: DelayingProxy
    s3: Any
    campaigns: dict[str, str]

    def get(self, path: str, player: str | None = PLAYER, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token(player)}"} if player else {}
        return httpx.get(self.url + path, headers=headers, timeout=10, **kwargs)

    def lobby(self, player: str = PLAYER) -> dict[str, Any]:
        response = self.get(f"/v1/players/{player}/lobby", player)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        LobbyResponse.model_validate(body)
        return body

    def admin(self, method: str, path: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token('ops', admin=True)}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=10)

    def breakers(self) -> dict[str, str]:
        response = self.admin("GET", "/v1/admin/dependencies")
        assert response.status_code == 200, response.text
        return {entry["name"]: entry["state"] for entry in response.json()["dependencies"]}

    def healthy_again(self) -> None:
        self.emulator.clear_faults()
        self.proxy.delay = 0.0
        self.proxy.fail = False


def token(player: str | None, *, admin: bool = False, ttl: int = 600) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": player, "iss": "pam", "aud": "pam-lobby", "iat": now, "exp": now + ttl}
    if admin:
        claims["roles"] = ["admin"]
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def pam(
    devstack: DevStack, devstack_env: dict[str, str], aws_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pam]:
    work = tmp_path_factory.mktemp("pam-api")
    s3 = aws_client("s3")
    s3.create_bucket(Bucket=BUCKET)
    upload_catalog(s3, catalog_games())
    campaigns = train_campaigns(aws_client("personalize"), s3)
    fill_similar_table(aws_client("dynamodb"))
    database_url = platform_database(work / "platform.db")
    proxy = DelayingProxy(devstack.edge_url).start()
    outputs = work / "outputs.json"
    outputs.write_text(
        json.dumps(
            {
                "campaigns": {"popularity": campaigns["popular"], "trending": campaigns["trending"]},
                "filters": {"unavailable": campaigns["unavailable"]},
            }
        )
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "PAM_"))}
    env.update(devstack_env)
    env.update(
        {
            "AWS_ENDPOINT_URL_DYNAMODB": proxy.url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "PAM_DATABASE_URL": database_url,
            "PAM_CATALOG_URL": f"s3://{BUCKET}/{CATALOG_KEY}",
            "PAM_SIMILAR_TABLE": TABLE,
            "PAM_OUTPUTS_FILE": str(outputs),
            # Explicit beats the outputs file (which has no for-you campaign at all).
            "PAM_FOR_YOU_CAMPAIGN_ARN": campaigns["for_you"],
            "PAM_JWT_SECRET": SECRET,
            "PAM_SECTION_SIZE": str(SECTION_SIZE),
            "PAM_CANDIDATES": "10",
            "PAM_POPULAR_CANDIDATES": "25",
            "PAM_REQUEST_DEADLINE_MS": str(DEADLINE_MS),
            "PAM_DATABASE_TIMEOUT_MS": "1000",
            "PAM_SIMILAR_TIMEOUT_MS": str(SIMILAR_TIMEOUT_MS),
            "PAM_PERSONALIZE_TIMEOUT_MS": str(PERSONALIZE_TIMEOUT_MS),
            "PAM_BREAKER_FAILURES": "3",
            "PAM_BREAKER_COOLDOWN_SECONDS": str(COOLDOWN_SECONDS),
            "PAM_FALLBACK_REFRESH_SECONDS": "3600",
            "PAM_CATALOG_REFRESH_SECONDS": "3600",
        }
    )
    port = free_port()
    log = work / "pam-serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "pam.cli", "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"pam serve exited {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            return httpx.get(url + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    emulator = EmulatorClient(devstack.edge_url)
    try:
        wait_for(ready, timeout=60, what="pam serve to be ready", interval=0.1)
        yield Pam(url, process, log, emulator, proxy, s3, campaigns)
    finally:
        emulator.clear_faults()
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        proxy.stop()


@pytest.fixture
def healthy(pam: Pam) -> Iterator[Pam]:
    """PAM with healthy dependencies and closed breakers before and after the test."""
    pam.healthy_again()

    def all_closed() -> bool:
        pam.lobby()
        return set(pam.breakers().values()) == {"closed"}

    wait_for(all_closed, timeout=30, what="every breaker to close", interval=0.2)
    yield pam
    pam.healthy_again()


def sections(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {section["key"]: section for section in body["sections"]}


def game_ids(section: dict[str, Any]) -> list[str]:
    return [game["gameId"] for game in section["games"]]


# ------------------------------------------------------------------------------------------------ tests


def test_lobby_has_every_section_from_the_real_dependencies(healthy: Pam) -> None:
    body = healthy.lobby()
    assert body["playerId"] == PLAYER
    assert body["lastPlayedGameId"] == "g-01"
    assert body["degraded"] is False
    assert [s["key"] for s in body["sections"]] == ["because_you_played", "for_you", "trending", "popular"]
    by_key = sections(body)
    assert by_key["because_you_played"]["title"] == "Because you played Title g-01"
    # g-05 is disabled and g-06 not licensed in Sweden: the similar list's next games fill the row.
    assert game_ids(by_key["because_you_played"]) == ["g-02", "g-07", "g-08", "g-09"]
    assert by_key["because_you_played"]["source"] == "similar-games"
    for key, source in (
        ("for_you", "personalize-for-you"),
        ("trending", "personalize-trending"),
        ("popular", "personalize-popular"),
    ):
        assert by_key[key]["source"] == source
        assert by_key[key]["recommendationId"].startswith("RID-")
    # The rising game leads trending unless for-you, an earlier section, shows it already.
    assert "g-rising" in game_ids(by_key["for_you"])[:SECTION_SIZE] + game_ids(by_key["trending"])[:1]
    shown = [game for section in body["sections"] for game in game_ids(section)]
    assert len(shown) == len(set(shown)) == 4 * SECTION_SIZE
    assert not {"g-05", "g-06"} & set(shown)
    first = by_key["popular"]["games"][0]
    assert set(first) >= {"gameId", "name", "provider", "categories", "volatility", "rtp", "releaseDate"}


def test_cold_start_player_gets_a_full_lobby(healthy: Pam) -> None:
    body = healthy.lobby(COLD)
    assert body["lastPlayedGameId"] is None
    assert body["degraded"] is False
    assert [s["key"] for s in body["sections"]] == ["for_you", "trending", "popular"]
    assert all(len(section["games"]) == SECTION_SIZE for section in body["sections"])


def test_slow_dependencies_are_cut_at_their_timeouts_with_fallbacks(healthy: Pam) -> None:
    healthy.lobby()  # the last good popular and trending lists
    healthy.emulator.set_faults([latency_fault(5000, operation="GetRecommendations")])
    healthy.proxy.delay = 5.0
    started = time.monotonic()
    body = healthy.lobby()
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE_MS / 1000 + 1.0, elapsed
    assert elapsed >= PERSONALIZE_TIMEOUT_MS / 1000 * 0.9
    by_key = sections(body)
    assert body["degraded"] is True
    assert (by_key["because_you_played"]["source"], by_key["because_you_played"]["degraded"]) == (
        "popular-fallback",
        True,
    )
    assert (by_key["for_you"]["source"], by_key["for_you"]["degraded"]) == ("popular-fallback", True)
    assert (by_key["trending"]["source"], by_key["trending"]["degraded"]) == ("cache-trending", True)
    assert (by_key["popular"]["source"], by_key["popular"]["degraded"]) == ("cache-popular", True)
    assert all(section["recommendationId"] is None for section in body["sections"])
    assert all(len(section["games"]) == SECTION_SIZE for section in body["sections"])
    metrics = healthy.get("/metrics", None).text
    assert 'pam_dependency_calls_total{dependency="similar",outcome="timeout"}' in metrics
    assert 'pam_dependency_calls_total{dependency="for_you",outcome="timeout"}' in metrics
    assert 'pam_lobby_fallbacks_total{section="popular",source="cache-popular"}' in metrics


def test_breakers_open_on_failures_and_recover(healthy: Pam) -> None:
    healthy.emulator.set_faults([error_fault(1.0, status=500, operation="GetRecommendations")])
    healthy.proxy.fail = True
    for _ in range(3):
        body = healthy.lobby()
        assert body["degraded"] is True
    states = healthy.breakers()
    assert {states[name] for name in ("similar", "for_you", "trending", "popular")} == {"open"}
    assert states["database"] == "closed"
    started = time.monotonic()
    body = healthy.lobby()  # nothing is called: answered at once
    assert time.monotonic() - started < 0.5
    assert sections(body)["for_you"]["source"] == "popular-fallback"
    metrics = healthy.get("/metrics", None).text
    assert 'pam_dependency_calls_total{dependency="for_you",outcome="breaker_open"}' in metrics
    assert 'pam_breaker_state{dependency="for_you"} 2.0' in metrics

    healthy.healthy_again()

    def recovered() -> dict[str, Any] | None:
        lobby = healthy.lobby()
        return lobby if not lobby["degraded"] else None

    body = wait_for(recovered, timeout=COOLDOWN_SECONDS + 20, what="the lobby to recover", interval=0.2)
    assert sections(body)["for_you"]["source"] == "personalize-for-you"
    assert set(healthy.breakers().values()) == {"closed"}
    assert 'pam_breaker_state{dependency="for_you"} 0.0' in healthy.get("/metrics", None).text


def test_auth_over_http(pam: Pam) -> None:
    missing = pam.get(f"/v1/players/{PLAYER}/lobby", None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.headers["content-type"] == "application/problem+json"
    other = httpx.get(
        f"{pam.url}/v1/players/u-01/lobby", headers={"Authorization": f"Bearer {token(PLAYER)}"}, timeout=10
    )
    assert other.status_code == 403
    expired = httpx.get(
        f"{pam.url}/v1/players/{PLAYER}/lobby",
        headers={"Authorization": f"Bearer {token(PLAYER, ttl=-600)}"},
        timeout=10,
    )
    assert expired.status_code == 401
    assert pam.get("/v1/admin/dependencies").status_code == 403


def test_catalog_refresh_picks_up_a_new_catalog_and_keeps_it(healthy: Pam) -> None:
    assert healthy.admin("POST", "/v1/admin/catalog/refresh").json()["outcome"] == "not_modified"
    upload_catalog(healthy.s3, catalog_games(disabled=frozenset({"g-05", "g-rising"})))
    try:
        refreshed = healthy.admin("POST", "/v1/admin/catalog/refresh").json()
        assert refreshed["outcome"] == "updated"
        shown = {game for section in healthy.lobby()["sections"] for game in game_ids(section)}
        assert "g-rising" not in shown
    finally:
        upload_catalog(healthy.s3, catalog_games())
        assert healthy.admin("POST", "/v1/admin/catalog/refresh").json()["outcome"] == "updated"
    metrics = healthy.get("/metrics", None).text
    assert 'pam_catalog_refreshes_total{outcome="not_modified"}' in metrics
    assert 'pam_catalog_lookups_total{outcome="hit"}' in metrics
    assert (
        'pam_http_request_duration_seconds_bucket{le="0.05",method="GET",route="/v1/players/{player_id}/lobby",status="200"}'
        in metrics
    )


def test_an_empty_catalog_is_refused_and_the_lobby_keeps_its_games(healthy: Pam) -> None:
    before = healthy.lobby()
    upload_catalog(healthy.s3, [])  # what `batch datasets` writes from an empty platform database
    try:
        refreshed = healthy.admin("POST", "/v1/admin/catalog/refresh").json()
        assert refreshed["outcome"] == "error"
        assert refreshed["games"] == len(catalog_games()) - 1  # the last good copy, g-05 disabled
        after = healthy.lobby()
        assert [s["key"] for s in after["sections"]] == [s["key"] for s in before["sections"]]
        assert all(len(section["games"]) == SECTION_SIZE for section in after["sections"])
        assert healthy.get("/readyz", None).json()["catalogGames"] == refreshed["games"]
    finally:
        upload_catalog(healthy.s3, catalog_games())
        assert healthy.admin("POST", "/v1/admin/catalog/refresh").json()["outcome"] in ("updated", "not_modified")
    assert 'pam_catalog_refreshes_total{outcome="error"}' in healthy.get("/metrics", None).text


# ------------------------------------------------------------------------------------------ schemathesis


def test_openapi_fuzzing_finds_no_server_error(pam: Pam) -> None:
    """Every operation of the served description, fuzzed (valid and invalid data) with a player's token:
    no 5xx, and statuses, content types, headers and bodies as the description says."""
    pam.healthy_again()
    schema = schemathesis.openapi.from_url(f"{pam.url}/openapi.json")
    headers = {"Authorization": f"Bearer {token(PLAYER)}"}
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert {operation.path for operation in operations} >= {"/v1/players/{player_id}/lobby", "/readyz"}
    statuses: set[int] = set()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            response = case.call_and_validate(headers=headers, timeout=10)
            statuses.add(response.status_code)

        fuzz()
    # The fuzzing reached the lobby's own answers, not only the token check.
    assert {200, 403} <= statuses
