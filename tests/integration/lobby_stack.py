"""A real PAM for the lobby page tests, built the way an operator builds one, against the local stack.

:func:`running_lobby_stack` builds it in a folder, in the order the data travels:

1. the platform database: ``pam db upgrade`` and ``pam db seed`` (a small generated catalog and history)
   into a SQLite file;
2. ``batch datasets``: the Personalize CSVs and ``games.json`` to the devstack's S3 (moto);
3. ``batch personalize apply --outputs`` with the shipped config, every resource renamed: dataset group,
   imports, solutions and campaigns in the Personalize emulator, their ARNs in an outputs file PAM reads;
4. the similar-games table in DynamoDB (moto): filled with boto3 (one row per game, deterministic
   neighbours), or, with ``similar="batch"``, by ``batch similar run`` (SIMS batch inference in the
   emulator, then the loader), which makes the whole batch pipeline part of the build;
5. ``pam serve`` on a free port with all of the above, polled until ``/readyz`` says it is ready.

Every step is a console script in a subprocess with only the stack's environment; its output is kept in
the test's temporary folder and shown when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt
import pytest
import yaml

from tests.integration.support import free_port, wait_for

#: Dummy HS256 secret of the local stack (at least 32 characters, as PAM requires).
JWT_SECRET = "lobby-page-tests-not-a-real-secret-0123456789"
JWT_ISSUER = "pam"
JWT_AUDIENCE = "pam-lobby"
DATASETS_BUCKET = "patron-datasets"
DATASETS_PREFIX = "lobby-page-tests"
SIMILAR_TABLE = "lobby-page-similar-games"
ROLE_ARN = "arn:aws:iam::000000000000:role/PersonalizeS3Read"
SIMILAR_PER_GAME = 12
STEP_TIMEOUT = 240.0
#: Prefix of this module's Personalize resource names.
RESOURCE_PREFIX = "lobbypage-"


def console_script(name: str) -> str:
    """The console script installed next to the interpreter running the tests."""
    script = Path(sys.executable).with_name(name)
    if not script.is_file():
        raise RuntimeError(f"the {name} console script is not installed (pip install -e .)")
    return str(script)


def run_step(args: Sequence[str], env: Mapping[str, str], log: Path, *, timeout: float = STEP_TIMEOUT) -> str:
    """Run one command to completion; fail the test with its output when it exits non-zero."""
    done = subprocess.run(
        list(args), env=dict(env), capture_output=True, text=True, timeout=timeout, check=False, cwd=log.parent
    )
    log.write_text(f"$ {' '.join(args)}\n{done.stdout}\n--- stderr ---\n{done.stderr}", encoding="utf-8")
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(args)}` exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


@dataclass
class LobbyStack:
    """A running PAM and what the tests need to reach it and to change what it recommends."""

    base_url: str
    player_id: str
    other_player_id: str
    catalog: dict[str, dict[str, Any]]
    dynamodb: Any
    #: The environment ``pam serve`` runs with (``pam token`` signs with its key).
    env: Mapping[str, str]
    similar_table: str = SIMILAR_TABLE
    #: The folder of the build: the platform database, the outputs file, every step's log.
    work: Path = Path()
    changed: dict[str, list[str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, player_id: str) -> str:
        """A token for ``player_id`` from ``pam token``, the command a developer uses (one per player)."""
        if player_id not in self.tokens:
            done = subprocess.run(
                [console_script("pam"), "token", player_id, "--ttl", "3600"],
                env=dict(self.env),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, f"pam token exited {done.returncode}: {done.stderr}"
            self.tokens[player_id] = done.stdout.strip()
        return self.tokens[player_id]

    def expired_token(self, player_id: str) -> str:
        """A token signed with the stack's key whose ``exp`` passed two minutes ago (``pam token`` cannot
        issue one: its ``--ttl`` must be positive)."""
        now = int(time.time())
        claims = {"sub": player_id, "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "iat": now - 600, "exp": now - 120}
        return jwt.encode(claims, JWT_SECRET, algorithm="HS256")

    def api_lobby(self, player_id: str, token: str) -> dict[str, Any]:
        """The lobby as the API answers it."""
        answer = httpx.get(
            f"{self.base_url}/v1/players/{player_id}/lobby", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        lobby: dict[str, Any] = answer.json()
        return lobby

    def healthy_lobby(self, player_id: str, token: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """The API's lobby once no section of it is degraded (every dependency answered in time)."""
        last: list[dict[str, Any]] = [{}]

        def healthy() -> dict[str, Any] | None:
            last[0] = self.api_lobby(player_id, token)
            return None if last[0].get("degraded") else last[0]

        try:
            return wait_for(healthy, timeout=timeout, what=f"a lobby of {player_id} without fallbacks", interval=0.2)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; the last answer: {json.dumps(last[0])[:2000]}") from None

    def change_similar_games(self, player_id: str) -> list[str]:
        """Rewrite the similar-games row of the player's last played game: games the player's lobby shows
        in its later sections now come first. Returns those games, in their new order."""
        lobby = self.healthy_lobby(player_id, self.token(player_id))
        last = lobby["lastPlayedGameId"]
        assert last, "the player has a last played game"
        later = [game["gameId"] for section in lobby["sections"][1:] for game in section["games"]]
        moved = list(reversed(later[-4:]))
        current = self.similar_row(last)
        self.put_similar(last, [*moved, *[game for game in current if game not in moved]])
        self.changed[last] = moved
        return moved

    def similar_row(self, game_id: str) -> list[str]:
        item = self.dynamodb.get_item(TableName=self.similar_table, Key={"gameId": {"S": game_id}}).get("Item", {})
        return [value["S"] for value in item.get("similar", {}).get("L", [])]

    def put_similar(self, game_id: str, similar: Sequence[str]) -> None:
        self.dynamodb.put_item(
            TableName=self.similar_table,
            Item={
                "gameId": {"S": game_id},
                "similar": {"L": [{"S": other} for other in similar]},
                "modelVersion": {"S": "lobby-page-tests"},
                "updatedAt": {"S": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            },
        )


def _renamed(node: Any, prefix: str) -> Any:
    """``node`` with every resource name (``name``, ``jobNamePrefix``) prefixed with ``prefix``."""
    if isinstance(node, dict):
        return {
            key: f"{prefix}{value}"
            if key in ("name", "jobNamePrefix") and isinstance(value, str)
            else _renamed(value, prefix)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renamed(value, prefix) for value in node]
    return node


def personalize_config(folder: Path, prefix: str = RESOURCE_PREFIX) -> Path:
    """The shipped Personalize config with resources of their own: other tests on the same emulator
    apply it too, and apply finds resources by name."""
    shipped = resources.files("batch.personalize").joinpath("default.yaml").read_text(encoding="utf-8")
    path = folder / "personalize.yaml"
    renamed = _renamed(yaml.safe_load(shipped), prefix)
    path.write_text(yaml.safe_dump(renamed, sort_keys=False), encoding="utf-8")
    return path


def _stack_env(devstack_env: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The stack's environment with nothing of the caller's AWS, PAM or batch settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "PAM_", "BATCH_"))}
    env.update(devstack_env)
    env.update(
        {
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def _players(database: Path) -> tuple[str, str]:
    """Two players with the most play history (so each has a last played game and a for-you row)."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT player_id FROM game_sessions WHERE player_id IS NOT NULL "
            "GROUP BY player_id ORDER BY COUNT(*) DESC, player_id LIMIT 2"
        ).fetchall()
    assert len(rows) == 2, "the seed has at least two players with history"
    return str(rows[0][0]), str(rows[1][0])


def _fill_similar_table(dynamodb: Any, table: str, catalog: Mapping[str, dict[str, Any]]) -> None:
    names = dynamodb.list_tables()["TableNames"]
    if table not in names:
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "gameId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "gameId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    ids = sorted(catalog)
    for position, game_id in enumerate(ids):
        # Deterministic neighbours: the next games of the catalog, round the end.
        similar = [ids[(position + step) % len(ids)] for step in range(1, SIMILAR_PER_GAME + 1)]
        dynamodb.put_item(
            TableName=table,
            Item={
                "gameId": {"S": game_id},
                "similar": {"L": [{"S": other} for other in similar]},
                "modelVersion": {"S": "lobby-page-tests"},
            },
        )


def _start_pam(env: Mapping[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [console_script("pam"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"pam serve exited {process.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            return httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200  # the catalog is loaded
        except httpx.HTTPError:
            return False

    wait_for(answers, timeout=60, what="pam serve to be ready", interval=0.1, max_interval=0.5)
    return process, base_url


@contextmanager
def running_lobby_stack(
    devstack_env: Mapping[str, str],
    aws_client: Any,
    work: Path,
    *,
    similar: Literal["direct", "batch"] = "direct",
    name: str = "lobby-page",
) -> Iterator[LobbyStack]:
    """Build everything in ``work`` (logs too), start PAM, and stop it on exit. ``name`` keeps this build's
    S3 prefix, similar-games table and Personalize resources apart from other builds on the same stack."""
    datasets_prefix = DATASETS_PREFIX if name == "lobby-page" else f"{name}-datasets"
    similar_table = SIMILAR_TABLE if name == "lobby-page" else f"{name}-similar-games"
    resource_prefix = RESOURCE_PREFIX if name == "lobby-page" else f"{name.replace('-', '')}-"
    database = work / "platform.db"
    database_url = f"sqlite:///{database}"
    outputs = work / "personalize-outputs.json"
    env = _stack_env(
        devstack_env,
        {
            "PAM_DATABASE_URL": database_url,
            "BATCH_DATABASE_URL": database_url,
            "BATCH_S3_BUCKET": DATASETS_BUCKET,
            "BATCH_S3_PREFIX": datasets_prefix,
            "BATCH_SIMILAR_TABLE": similar_table,
            "BATCH_PERSONALIZE_ROLE_ARN": ROLE_ARN,
            "BATCH_PERSONALIZE_CONFIG": str(personalize_config(work, resource_prefix)),
            "BATCH_SIMILAR_SOLUTION_NAME": f"{resource_prefix}lobby-sims",
            "BATCH_SIMILAR_POLL_INITIAL_SECONDS": "0.1",
            "BATCH_SIMILAR_POLL_MAX_SECONDS": "0.5",
            "BATCH_PERSONALIZE_POLL_INITIAL_SECONDS": "0.1",
            "BATCH_PERSONALIZE_POLL_MAX_SECONDS": "0.5",
        },
    )
    pam, batch = console_script("pam"), console_script("batch")
    run_step([pam, "db", "upgrade"], env, work / "db-upgrade.log")
    run_step(
        [pam, "db", "seed", "--players", "80", "--sessions", "1500", "--games", "100", "--seed", "5"],
        env,
        work / "db-seed.log",
    )
    run_step([batch, "datasets"], env, work / "batch-datasets.log")
    run_step([batch, "personalize", "apply", "--outputs", str(outputs)], env, work / "personalize-apply.log")

    s3 = aws_client("s3")
    body = s3.get_object(Bucket=DATASETS_BUCKET, Key=f"{datasets_prefix}/games.json")["Body"].read()
    catalog = {game["game_id"]: game for game in json.loads(body)["games"]}
    dynamodb = aws_client("dynamodb")
    if similar == "batch":
        run_step([batch, "similar", "run"], env, work / "similar-run.log")
    else:
        _fill_similar_table(dynamodb, similar_table, catalog)
    player, other = _players(database)

    pam_env = {
        **env,
        "PAM_CATALOG_URL": f"s3://{DATASETS_BUCKET}/{datasets_prefix}/games.json",
        "PAM_SIMILAR_TABLE": similar_table,
        "PAM_OUTPUTS_FILE": str(outputs),
        "PAM_JWT_SECRET": JWT_SECRET,
        "PAM_JWT_ISSUER": JWT_ISSUER,
        "PAM_JWT_AUDIENCE": JWT_AUDIENCE,
        "PAM_SECTION_SIZE": "8",
        # Two shared cores: generous deadlines, so no section falls back by accident while the page is compared
        # with the API's own answer.
        "PAM_REQUEST_DEADLINE_MS": "5000",
        "PAM_DATABASE_TIMEOUT_MS": "3000",
        "PAM_SIMILAR_TIMEOUT_MS": "3000",
        "PAM_PERSONALIZE_TIMEOUT_MS": "3000",
    }
    process, base_url = _start_pam(pam_env, work / "pam-serve.log")
    try:
        yield LobbyStack(
            base_url=base_url,
            player_id=player,
            other_player_id=other,
            catalog=catalog,
            dynamodb=dynamodb,
            env=pam_env,
            similar_table=similar_table,
            work=work,
        )
    finally:
        with contextlib.suppress(httpx.HTTPError):  # for a look after a failure: fallbacks, breakers
            (work / "pam-metrics.txt").write_text(httpx.get(f"{base_url}/metrics", timeout=5).text, encoding="utf-8")
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
