"""``batch datasets`` from a seeded platform database (SQLite and PostgreSQL) to moto's S3 and to a folder.

What Personalize will import is checked by what imports it here: the Personalize emulator's own schema
and CSV readers (``devstack.personalize.control``) accept every file. Headers are schema field names,
timestamps epoch seconds, categorical values joined by ``|``; the dataset minimums are reported and
decide the exit status.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from sqlalchemy import text

from batch.cli import main as batch_main
from batch.sinks import S3Sink, text_stream
from devstack.moto_server import run_moto_server
from devstack.personalize.control.importer import parse_csv
from devstack.personalize.control.schemas import check_dataset_type, parse_schema
from pam.db.engine import create_platform_engine
from pam.db.migrate import upgrade
from pam.db.seed import SeedPlan
from tests.platform_db_fixture import SeededDatabase, seed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
CSV_FILES = {"items.csv": "ITEMS", "users.csv": "USERS", "interactions.csv": "INTERACTIONS"}
FILES = {
    *CSV_FILES,
    "items.schema.json",
    "users.schema.json",
    "interactions.schema.json",
    "games.json",
    "manifest.json",
}
ITEMS_HEADER = [
    "ITEM_ID",
    "PROVIDER",
    "CATEGORY",
    "VOLATILITY",
    "RTP",
    "JURISDICTIONS",
    "CREATION_TIMESTAMP",
    "AVAILABLE",
]
USERS_HEADER = ["USER_ID", "COUNTRY", "PLATFORM", "CURRENCY"]
INTERACTIONS_HEADER = [
    "USER_ID",
    "ITEM_ID",
    "TIMESTAMP",
    "EVENT_TYPE",
    "EVENT_VALUE",
    "PLATFORM",
    "COUNTRY",
    "CURRENCY",
]


@dataclass(frozen=True)
class MotoServer:
    url: str

    def client(self) -> S3Client:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto server on a free port for this module."""
    with run_moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield MotoServer(url)


@pytest.fixture
def bucket(moto: MotoServer, request: pytest.FixtureRequest) -> str:
    name = "datasets-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    moto.client().create_bucket(Bucket=name)
    return name


def batch_env(**settings: str) -> dict[str, str]:
    """An environment with nothing of the caller's AWS or batch setup, dummy credentials, and ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "BATCH_"))}
    env.update(
        {
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    env.update(settings)
    return env


def run_batch(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("batch")
    return subprocess.run(
        [str(script), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def run_in_process(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    for key in list(os.environ):
        if key.startswith("BATCH_"):
            monkeypatch.delenv(key)
    status = batch_main(args)
    return status, capsys.readouterr().out


def read_csv(body: bytes) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    return rows[0], rows[1:]


def check_files(files: dict[str, bytes], seeded: SeededDatabase) -> dict[str, Any]:
    """Every file is what Personalize (and the lobby) will read; returns the manifest."""
    assert set(files) == FILES
    for name, dataset_type in CSV_FILES.items():
        schema = parse_schema(files[name.replace(".csv", ".schema.json")].decode())
        check_dataset_type(schema, dataset_type)
        parse_csv([(name, files[name])], schema, dataset_type)  # raises on any row the import would refuse

    items_header, items = read_csv(files["items.csv"])
    users_header, users = read_csv(files["users.csv"])
    header, interactions = read_csv(files["interactions.csv"])
    assert (items_header, users_header, header) == (ITEMS_HEADER, USERS_HEADER, INTERACTIONS_HEADER)
    assert len(items) == seeded.summary.games
    assert len(users) == seeded.summary.players
    assert any("|" in row[5] for row in items), "jurisdictions are joined by |"
    assert all(
        set(row[5].split("|")) <= {"GB", "IE", "MT", "SE", "DK", "FI", "DE", "NL", "ES", "IT", "CA", "NZ"}
        for row in items
    )
    assert all(row[6].isdigit() and len(row[6]) == 10 for row in items), "release dates in epoch seconds"
    available = [row[0] for row in items if row[7] == "true"]
    assert len(available) == seeded.summary.enabled_games, "AVAILABLE is games.enabled"
    assert {row[7] for row in items} == {"true", "false"}

    item_ids = {row[0] for row in items}
    assert {row[1] for row in interactions} <= item_ids
    assert all(row[2].isdigit() and len(row[2]) == 10 for row in interactions), "epoch seconds, not millis"
    assert {row[3] for row in interactions} == {"play", "favorite"}
    plays = [row for row in interactions if row[3] == "play"]
    assert all(float(row[4]) > 0 for row in plays), "a play's value is its first stake"
    assert len(plays) == seeded.summary.game_sessions - seeded.summary.anonymous_game_sessions
    assert len(interactions) == len(plays) + seeded.summary.favorites
    start, end = seeded.summary.first_play, seeded.summary.last_play
    assert start is not None and end is not None
    assert all(int(start.timestamp()) <= int(row[2]) <= int(end.timestamp()) for row in plays)

    catalog = json.loads(files["games.json"])
    assert catalog["version"] == 1
    assert len(catalog["games"]) == seeded.summary.enabled_games
    game = catalog["games"][0]
    assert set(game) == {
        "game_id",
        "title",
        "provider",
        "category",
        "volatility",
        "rtp",
        "release_date",
        "jurisdictions",
    }
    assert isinstance(game["jurisdictions"], list) and isinstance(game["rtp"], float)

    manifest: dict[str, Any] = json.loads(files["manifest.json"])
    assert manifest["ready_for_training"] is True
    assert manifest["datasets"]["interactions"]["written"] == len(interactions)
    assert manifest["datasets"]["interactions"]["dropped"] == {"missing_user": seeded.summary.anonymous_game_sessions}
    assert manifest["minimums"]["ok"] is True
    return manifest


def s3_files(client: S3Client, bucket: str, prefix: str) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    return {key.removeprefix(prefix + "/"): client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def folder_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


# --- the datasets ---------------------------------------------------------------------------------------


def test_datasets_from_sqlite_to_s3(
    seeded_sqlite: SeededDatabase, moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    env = batch_env(
        BATCH_DATABASE_URL=seeded_sqlite.url,
        BATCH_S3_BUCKET=bucket,
        BATCH_S3_PREFIX="runs/today",
        AWS_ENDPOINT_URL_S3=moto.url,
    )
    done = run_batch("datasets", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    client = moto.client()
    manifest = check_files(s3_files(client, bucket, "runs/today"), seeded_sqlite)
    assert manifest["files"]["interactions.csv"]["location"] == f"s3://{bucket}/runs/today/interactions.csv"
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert "Dataset minimums for training (Amazon Personalize):" in done.stdout
    assert "Ready for training." in done.stdout
    assert f"s3://{bucket}/runs/today/interactions.csv" in done.stdout
    assert "\x1b[" not in done.stderr, "no progress display when stderr is not a terminal"


def test_datasets_from_postgres_are_the_same_as_from_sqlite(
    seeded_sqlite: SeededDatabase,
    seeded_postgres: SeededDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs = {}
    for name, seeded in (("sqlite", seeded_sqlite), ("postgres", seeded_postgres)):
        out = tmp_path / name
        status, stdout = run_in_process(
            ["datasets", "--out", str(out), "--database-url", seeded.url, "--chunk-size", "300"], monkeypatch, capsys
        )
        assert status == 0, stdout
        outputs[name] = folder_files(out)
        check_files(outputs[name], seeded)
        assert not [p for p in out.iterdir() if p.name.endswith(".partial")]
    sqlite, postgres = outputs["sqlite"], outputs["postgres"]
    for name in (*CSV_FILES, "items.schema.json", "users.schema.json", "interactions.schema.json"):
        assert sqlite[name] == postgres[name], f"{name} differs between SQLite and PostgreSQL"
    assert json.loads(sqlite["games.json"])["games"] == json.loads(postgres["games.json"])["games"]


# --- the minimums ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_sqlite(tmp_path_factory: pytest.TempPathFactory) -> SeededDatabase:
    url = f"sqlite:///{tmp_path_factory.mktemp('small') / 'platform.db'}"
    plan = SeedPlan(players=20, sessions=40, days=3, games=30, seed=3, end=date(2026, 11, 1))
    return SeededDatabase(url, seed(url, plan))


def test_small_datasets_fail_the_minimums_unless_allowed(
    small_sqlite: SeededDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["datasets", "--out", str(tmp_path / "out"), "--database-url", small_sqlite.url]
    status, stdout = run_in_process(args, monkeypatch, capsys)
    assert status == 1
    assert "FAIL interactions " in stdout
    assert "NOT ready for training: interactions, users with 2 or more interactions." in stdout
    assert f"NOT published: {tmp_path / 'out'} is left as it was." in stdout
    assert "Personalize trains on 1,000 or more" in stdout
    assert "pass --allow-small" in stdout
    assert list((tmp_path / "out").iterdir()) == [], "nothing published, nothing left behind"

    status, stdout = run_in_process([*args, "--allow-small"], monkeypatch, capsys)
    assert status == 0
    assert f"Published to {tmp_path / 'out'}" in stdout
    assert "--allow-small: published although these checks failed: interactions, users with 2" in stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["ready_for_training"] is False
    assert [check["ok"] for check in manifest["minimums"]["checks"]] == [False, False, True]
    assert set(folder_files(tmp_path / "out")) == FILES


def test_interactions_of_items_missing_from_the_items_dataset_fail(
    seeded_sqlite: SeededDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator's own queries file (BATCH_QUERIES_FILE) that leaves played games out of the items."""
    engine = create_platform_engine(seeded_sqlite.url)
    with engine.connect() as connection:
        most_played = connection.execute(
            text(
                "SELECT game_id FROM game_sessions WHERE player_id IS NOT NULL GROUP BY game_id ORDER BY count(*) DESC"
            )
        ).scalar()
    engine.dispose()
    default = (Path(__file__).resolve().parents[2] / "batch" / "default_queries.yaml").read_text()
    queries = tmp_path / "queries.yaml"
    queries.write_text(
        default.replace(
            "    FROM games\n    ORDER BY id\n", f"    FROM games WHERE id <> '{most_played}'\n    ORDER BY id\n", 1
        )
    )
    monkeypatch.setenv("BATCH_QUERIES_FILE", str(queries))
    status = batch_main(["datasets", "--out", str(tmp_path / "out"), "--database-url", seeded_sqlite.url])
    stdout = capsys.readouterr().out
    assert status == 1
    assert "FAIL interactions of items not in the Items dataset" in stdout
    assert f"e.g. {most_played}" in stdout


# --- nothing is published unless the checks pass ---------------------------------------------------------


def test_an_empty_database_publishes_nothing_to_s3_or_a_folder(
    seeded_sqlite: SeededDatabase, moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    """Last night's files are in place; tonight the database is empty (or not the platform's): the run
    exits 1 and leaves every file as it was, with or without --allow-small (an empty games.json would
    empty every lobby)."""
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    upgrade(empty)  # the platform's tables, no rows
    client = moto.client()
    s3_env = batch_env(
        BATCH_DATABASE_URL=seeded_sqlite.url,
        BATCH_S3_BUCKET=bucket,
        BATCH_S3_PREFIX="live",
        AWS_ENDPOINT_URL_S3=moto.url,
    )
    assert run_batch("datasets", env=s3_env, cwd=tmp_path).returncode == 0
    assert run_batch("datasets", "--out", "out", env=s3_env, cwd=tmp_path).returncode == 0
    in_s3, in_folder = s3_files(client, bucket, "live"), folder_files(tmp_path / "out")
    assert set(in_s3) == set(in_folder) == FILES
    times = {key: client.head_object(Bucket=bucket, Key=f"live/{key}")["LastModified"] for key in in_s3}

    for extra in ([], ["--allow-small"]):
        for where in ([], ["--out", "out"]):
            refused = run_batch("datasets", *where, *extra, env={**s3_env, "BATCH_DATABASE_URL": empty}, cwd=tmp_path)
            assert refused.returncode == 1, refused.stdout + refused.stderr
            location = "out" if where else f"s3://{bucket}/live/"
            assert f"NOT published: {location} is left as it was." in refused.stdout
            assert "the lobby catalog would be empty" in refused.stdout
            assert "pass --allow-small" not in refused.stdout
    assert s3_files(client, bucket, "live") == in_s3
    assert {key: client.head_object(Bucket=bucket, Key=f"live/{key}")["LastModified"] for key in in_s3} == times
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert folder_files(tmp_path / "out") == in_folder


def test_a_failed_run_leaves_the_s3_files_as_they_were(
    seeded_sqlite: SeededDatabase, moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    client = moto.client()
    env = batch_env(
        BATCH_DATABASE_URL=seeded_sqlite.url,
        BATCH_S3_BUCKET=bucket,
        BATCH_S3_PREFIX="live",
        AWS_ENDPOINT_URL_S3=moto.url,
    )
    assert run_batch("datasets", env=env, cwd=tmp_path).returncode == 0
    before = s3_files(client, bucket, "live")
    bad_sql = tmp_path / "queries.yaml"
    default = (Path(__file__).resolve().parents[2] / "batch" / "default_queries.yaml").read_text()
    bad_sql.write_text(default.replace("FROM games\n    WHERE enabled", "FROM no_such_games\n    WHERE enabled"))
    failed = run_batch("datasets", env={**env, "BATCH_QUERIES_FILE": str(bad_sql)}, cwd=tmp_path)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "catalog query failed" in failed.stderr
    assert s3_files(client, bucket, "live") == before, "the datasets written before the catalog failed are not there"
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_staged_s3_files_appear_only_when_published(moto: MotoServer, bucket: str) -> None:
    client = moto.client()
    client.put_object(Bucket=bucket, Key="live/interactions.csv", Body=b"last night\n")
    big = b"p-000001,g-00001,1793491200,play,0.5,ios,GB,GBP\n" * (120 * 1024)  # 6 MiB: two parts
    for publish in (False, True):
        sink = S3Sink(client, bucket, "live", part_size=5 * 1024 * 1024)
        with sink.stage("interactions.csv", "text/csv") as output:
            output.stream.write(big)
        staged = sink.stage_bytes("games.json", b'{"games": []}\n', "application/json")
        assert (output.size, staged.size) == (len(big), 14)
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert [upload["Key"] for upload in uploads] == ["live/interactions.csv"], "every part sent, not completed"
        assert client.get_object(Bucket=bucket, Key="live/interactions.csv")["Body"].read() == b"last night\n"
        assert client.list_objects_v2(Bucket=bucket, Prefix="live/games.json").get("KeyCount") == 0
        if publish:
            sink.publish()
        else:
            sink.discard()
        assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert client.get_object(Bucket=bucket, Key="live/interactions.csv")["Body"].read() == big
    head = client.head_object(Bucket=bucket, Key="live/interactions.csv")
    assert head["ETag"].strip('"').endswith("-2") and head["ContentType"] == "text/csv"
    assert client.get_object(Bucket=bucket, Key="live/games.json")["Body"].read() == b'{"games": []}\n'


# --- S3 uploads -----------------------------------------------------------------------------------------


def test_a_large_file_goes_up_in_parts(moto: MotoServer, bucket: str) -> None:
    client = moto.client()
    sink = S3Sink(client, bucket, "big", part_size=5 * 1024 * 1024)
    line = "p-000001,g-00001,1793491200,play,0.5,ios,GB,GBP\n"
    lines = 13 * 1024 * 1024 // len(line)
    with sink.open("interactions.csv", "text/csv") as output, text_stream(output) as stream:
        for _ in range(lines):
            stream.write(line)
    assert output.size == lines * len(line)
    body = client.get_object(Bucket=bucket, Key="big/interactions.csv")["Body"].read()
    assert body == line.encode() * lines
    etag = client.head_object(Bucket=bucket, Key="big/interactions.csv")["ETag"]
    assert etag.strip('"').endswith("-3"), f"three parts: {etag}"


def test_a_failed_upload_leaves_nothing(moto: MotoServer, bucket: str) -> None:
    client = moto.client()
    sink = S3Sink(client, bucket, "broken", part_size=5 * 1024 * 1024)
    with pytest.raises(RuntimeError, match="database went away"), sink.open("interactions.csv", "text/csv") as output:
        output.stream.write(b"x" * (6 * 1024 * 1024))  # one part is already up
        raise RuntimeError("database went away")
    assert client.list_objects_v2(Bucket=bucket, Prefix="broken/").get("KeyCount") == 0
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# --- errors the operator can act on ---------------------------------------------------------------------


def test_configuration_and_failures_are_named(seeded_sqlite: SeededDatabase, moto: MotoServer, tmp_path: Path) -> None:
    nowhere = run_batch("datasets", env=batch_env(BATCH_DATABASE_URL=seeded_sqlite.url), cwd=tmp_path)
    assert nowhere.returncode == 2
    assert "give --out DIR, or set BATCH_S3_BUCKET" in nowhere.stderr

    bad_setting = run_batch("datasets", "--out", "x", env=batch_env(BATCH_CHUNK_SIZE="0"), cwd=tmp_path)
    assert bad_setting.returncode == 2
    assert "BATCH_CHUNK_SIZE" in bad_setting.stderr

    missing_bucket = run_batch(
        "datasets",
        env=batch_env(
            BATCH_DATABASE_URL=seeded_sqlite.url, BATCH_S3_BUCKET="no-such-bucket", AWS_ENDPOINT_URL_S3=moto.url
        ),
        cwd=tmp_path,
    )
    assert missing_bucket.returncode == 3
    assert "s3://no-such-bucket" in missing_bucket.stderr

    good = run_batch("datasets", "--out", "out", env=batch_env(BATCH_DATABASE_URL=seeded_sqlite.url), cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    published = folder_files(tmp_path / "out")
    assert set(published) == FILES
    bad_sql = tmp_path / "queries.yaml"
    default = (Path(__file__).resolve().parents[2] / "batch" / "default_queries.yaml").read_text()
    bad_sql.write_text(default.replace("FROM players", "FROM gamblers"))
    failed = run_batch(
        "datasets",
        "--out",
        "out",
        env=batch_env(BATCH_DATABASE_URL=seeded_sqlite.url, BATCH_QUERIES_FILE=str(bad_sql)),
        cwd=tmp_path,
    )
    assert failed.returncode == 3
    assert "users query failed" in failed.stderr
    assert "gamblers" in failed.stderr
    assert folder_files(tmp_path / "out") == published, "a failed run leaves the previous files as they were"


def test_sigterm_while_staging_aborts_the_staged_uploads(moto: MotoServer, bucket: str, tmp_path: Path) -> None:
    """The pod is stopped after interactions.csv went up in parts (staged), while the catalog query runs:
    the run exits 143, its multipart upload is aborted, and nothing is published."""
    from tests.unit.test_batch_parallel import platform_database

    client = moto.client()
    url = platform_database(tmp_path / "big.db", 150_000)  # interactions.csv ~6 MiB: more than one 5 MiB part
    slow = tmp_path / "queries.yaml"
    default = (Path(__file__).resolve().parents[2] / "batch" / "default_queries.yaml").read_text()
    waste = "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) SELECT max(x) FROM c)"
    slow.write_text(default.replace("FROM games\n    WHERE enabled", f"FROM games\n    WHERE enabled AND {waste} > 0"))
    env = batch_env(
        BATCH_DATABASE_URL=url,
        BATCH_S3_BUCKET=bucket,
        BATCH_S3_PREFIX="live",
        BATCH_QUERIES_FILE=str(slow),
        BATCH_UPLOAD_PART_MIB="5",
        AWS_ENDPOINT_URL_S3=moto.url,
    )
    script = Path(sys.executable).with_name("batch")
    run = subprocess.Popen(
        [str(script), "datasets"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            assert run.poll() is None, "the run ended before staging in parts"
            assert time.monotonic() < deadline, "no multipart upload began"
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 143, stdout + stderr
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], "the staged upload was aborted"
    assert client.list_objects_v2(Bucket=bucket, Prefix="live/").get("KeyCount") == 0, "nothing published"
