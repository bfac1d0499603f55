"""The synthetic clickstream: deterministic, skewed like a real lobby, well-formed, valid, lazy."""

from __future__ import annotations

import gzip
import importlib.util
import itertools
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clickstream.capture import read_capture
from clickstream.generator import (
    BROKEN_KINDS,
    PROVIDERS,
    SHORT_SESSIONS,
    Catalog,
    GeneratorConfig,
    break_event,
    event_bytes,
    generate_catalog,
    generate_events,
    generate_players,
    inject_broken,
    pack_records,
)
from clickstream.generator.cli import main as cli_main
from clickstream.generator.records import event_millis
from clickstream.mapping import EventMapping
from clickstream.normalize import Normalizer, Source
from clickstream.outcomes import Drop
from clickstream.raw import RawEvent

START = 1_793_491_200.0  # 2026-11-01T00:00:00Z
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _get(event: dict[str, Any], snake: str) -> Any:
    camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), snake)
    return event.get(snake, event.get(camel))


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return generate_catalog(150, 7)


@pytest.fixture(scope="module")
def events(catalog: Catalog) -> list[dict[str, Any]]:
    return list(generate_events(catalog, n_players=120, seed=3, start=START, n_sessions=120, config=SHORT_SESSIONS))


# --- catalog -------------------------------------------------------------------------------------------


def test_catalog_is_deterministic_and_seed_dependent() -> None:
    assert generate_catalog(200, 1) == generate_catalog(200, 1)
    assert generate_catalog(200, 1).to_json() != generate_catalog(200, 2).to_json()


def test_catalog_fields_are_plausible(catalog: Catalog) -> None:
    assert [g.game_id for g in catalog] == [f"g-{i:05d}" for i in range(1, 151)]
    for game in catalog:
        assert 0.90 <= game.rtp <= 0.99
        assert game.volatility in ("low", "medium", "high")
        assert len(game.jurisdictions) >= 4
        assert game.release_date <= catalog.as_of
        assert game.title
    big = generate_catalog(2000, 1)
    assert {g.provider for g in big} == set(PROVIDERS)
    assert {"slots", "live-casino", "table", "crash", "bingo"} <= {g.category for g in big}
    assert 0 < sum(not g.enabled for g in big) < 200


def test_catalog_popularity_is_skewed(catalog: Catalog) -> None:
    weights = sorted((g.popularity for g in catalog), reverse=True)
    assert sum(weights[:15]) / sum(weights) > 0.5  # the top 10% of games carry most of the weight


def test_trending_games_are_recent_and_grow(catalog: Catalog) -> None:
    assert catalog.trending
    for game in catalog.trending:
        assert (catalog.as_of - game.release_date).days <= 45
        assert game.weight_at(3) > 2 * game.weight_at(0)
    plain = next(g for g in catalog if not g.trending and g.enabled)
    assert plain.weight_at(3) == plain.weight_at(0)


def test_catalog_json_round_trips(catalog: Catalog) -> None:
    items = json.loads(json.dumps(catalog.to_json()))
    assert Catalog.from_json(items) == catalog
    assert set(items[0]) >= {"game_id", "title", "provider", "category", "volatility", "rtp", "release_date"}


def test_players_are_deterministic() -> None:
    players = generate_players(50, 9)
    assert players == generate_players(50, 9)
    assert [p.player_id for p in players[:2]] == ["p-000001", "p-000002"]
    assert {p.platform for p in generate_players(500, 9)} == {"ios", "android", "web", "desktop"}


# --- events --------------------------------------------------------------------------------------------


def test_same_seed_same_bytes(catalog: Catalog) -> None:
    def run(seed: int) -> bytes:
        stream = generate_events(catalog, n_players=50, seed=seed, start=START, n_sessions=20)
        return b"".join(record.data for record in pack_records(stream, multi_event_fraction=0.3, gzip_fraction=0.3))

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_cli_writes_the_same_file_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a", "b"):
        args = ["--out", str(tmp_path / name), "--players", "30", "--sessions", "5", "--seed", "4"]
        assert cli_main([*args, "--format", "kinesis", "--gzip", "--broken-fraction", "0.05", "--games", "40"]) == 0
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    out = capsys.readouterr().out
    assert "sessions:          5" in out and "broken" in out
    assert sum(1 for _ in read_capture(tmp_path / "a")) > 10


def test_cli_refuses_multi_event_records_in_plain_lines(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--out", str(tmp_path / "x"), "--sessions", "1", "--multi-event-fraction", "0.5"])
    assert exit_info.value.code == 2


def test_events_are_valid_raw_events(events: list[dict[str, Any]]) -> None:
    for event in events:
        RawEvent.model_validate(event)
        assert "\n" not in event_bytes(event).decode()


def test_sessions_are_well_formed(events: list[dict[str, Any]]) -> None:
    sessions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        sessions[_get(event, "session_id")].append(event)
    assert len(sessions) == 120
    anonymous = 0
    for session_id, sent in sessions.items():
        assert UUID.match(session_id)
        # A client retry repeats an event right away; the session is what remains without them.
        session = [e for i, e in enumerate(sent) if i == 0 or e != sent[i - 1]]
        times = [event_millis(e) for e in session]
        assert all(t is not None for t in times)
        assert times == sorted(times)  # type: ignore[type-var]
        players = {_get(e, "player_id") for e in session}
        assert len(players) == 1  # one player (or nobody) per session
        types = [_get(e, "event_type") for e in session]
        if players == {None}:
            anonymous += 1
            assert "login" not in types
        else:
            assert types[0] == "login"
        open_game: str | None = None
        launched_from: str | None = None
        for event, kind in zip(session, types, strict=True):
            game = _get(event, "game_id")
            if kind == "game_tile_click":
                launched_from = game
            elif kind == "game_launch":
                assert game == launched_from and open_game is None
                open_game = game
            elif kind in ("game_round", "bet_placed"):
                assert game == open_game
                assert _get(event, "stake") > 0 and _get(event, "currency")
            elif kind == "game_exit":
                assert game == open_game and _get(event, "duration_ms") > 0
                open_game = None
        assert open_game is None
        assert types.count("game_launch") == types.count("game_exit") >= 1
    assert 0 < anonymous < 40


def test_events_vary_like_real_clients(events: list[dict[str, Any]]) -> None:
    camel = sum("eventType" in e for e in events)
    assert 0.05 < camel / len(events) < 0.5
    kinds = Counter(type(_get(e, "timestamp")).__name__ for e in events)
    assert set(kinds) == {"str", "int", "float"}
    with_id = sum(_get(e, "event_id") is not None for e in events)
    assert 0.9 < with_id / len(events) < 0.99
    ids = [_get(e, "event_id") for e in events if _get(e, "event_id") is not None]
    assert all(UUID.match(i) for i in ids)
    retries = len(ids) - len(set(ids))
    assert retries > 0  # a few client retries, by design
    types = Counter(_get(e, "event_type") for e in events)
    expected_types = {
        "login", "lobby_view", "search", "game_tile_click", "game_launch", "game_round", "bet_placed",
        "heartbeat", "favorite_added", "game_exit", "deposit",
    }  # fmt: skip
    assert expected_types <= set(types)
    assert types["game_round"] > types["game_launch"]
    clicks = [e for e in events if _get(e, "event_type") == "game_tile_click"]
    assert any(_get(e, "recommendation_id") for e in clicks)
    assert all(len(_get(e, "recommendation_id") or "") <= 40 for e in clicks)
    assert all(1 <= len(_get(e, "impression")) <= 25 for e in clicks)


def test_every_generated_event_is_delivered_or_dropped_by_design(events: list[dict[str, Any]]) -> None:
    normalizer = Normalizer(EventMapping.default())
    outcomes: Counter[str] = Counter()
    for position, event in enumerate(events):
        millis = event_millis(event)
        assert millis is not None
        source = Source("gen", str(position), arrival_time=millis / 1000 + 1)
        result = normalizer.normalize(event, source)
        if isinstance(result, Drop):
            assert not result.reason.is_bad_input, (result, event)
            outcomes[result.reason.value] += 1
        else:
            outcomes["deliver"] += 1
    assert outcomes["deliver"] > 300
    assert outcomes["collapsed"] > 0 and outcomes["not_an_interaction"] > 0 and outcomes["duplicate"] > 0


def test_popularity_skew_shows_in_launches(catalog: Catalog) -> None:
    stream = generate_events(catalog, n_players=300, seed=1, start=START, n_sessions=600, config=SHORT_SESSIONS)
    launches = Counter(_get(e, "game_id") for e in stream if _get(e, "event_type") == "game_launch")
    counts = sorted(launches.values(), reverse=True)
    top_tenth = sum(counts[: len(catalog) // 10])
    assert top_tenth / sum(counts) > 0.3
    assert counts[0] > 10 * counts[len(counts) // 2]


def test_trending_games_gain_share_over_days(catalog: Catalog) -> None:
    trending = {g.game_id for g in catalog.trending}
    config = SHORT_SESSIONS.with_(sessions_per_hour=40)
    per_day: dict[int, Counter[bool]] = defaultdict(Counter)
    for event in generate_events(catalog, n_players=300, seed=2, start=START, duration=4 * 86_400, config=config):
        if _get(event, "event_type") == "game_launch":
            day = int(((event_millis(event) or 0) / 1000 - START) // 86_400)
            per_day[day][_get(event, "game_id") in trending] += 1

    def share(day: int) -> float:
        return per_day[day][True] / sum(per_day[day].values())

    assert share(3) > 1.3 * share(0)


def test_generation_is_lazy(catalog: Catalog) -> None:
    endless = generate_events(catalog, n_players=1000, seed=1, start=START, n_sessions=10**12)
    first = list(itertools.islice(endless, 5000))
    assert len(first) == 5000
    forever = generate_events(catalog, n_players=1000, seed=1, start=START, duration=10**9)
    assert len(list(itertools.islice(forever, 100))) == 100


def test_duration_bounds_session_starts(catalog: Catalog) -> None:
    config = GeneratorConfig(sessions_per_hour=3600)
    stream = generate_events(catalog, n_players=100, seed=1, start=START, duration=60, config=config)
    logins = [e for e in stream if _get(e, "event_type") == "login"]
    assert 20 < len(logins) < 120
    assert all((event_millis(e) or 0) < (START + 60) * 1000 for e in logins)


def test_bad_arguments_are_refused(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="n_sessions or duration"):
        generate_events(catalog, n_players=1, seed=1, start=START)
    with pytest.raises(ValueError, match="2000"):
        generate_events(catalog, n_players=1, seed=1, start=0, n_sessions=1)
    with pytest.raises(ValueError, match="camel_case_fraction"):
        GeneratorConfig(camel_case_fraction=1.5)
    with pytest.raises(ValueError, match="timestamp_mix"):
        GeneratorConfig(timestamp_mix=(0.0, 0.0, 0.0))


# --- records -------------------------------------------------------------------------------------------


def _unpack(data: bytes) -> list[bytes]:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [line for line in data.split(b"\n") if line]


def test_pack_records_keeps_every_event_once_in_session_order(events: list[dict[str, Any]]) -> None:
    records = list(pack_records(events, multi_event_fraction=0.4, gzip_fraction=0.3, seed=8, shard_count=4))
    unpacked = [line for record in records for line in _unpack(record.data)]
    assert Counter(unpacked) == Counter(event_bytes(e) for e in events)
    by_key: dict[str, list[bytes]] = defaultdict(list)
    for record in records:
        by_key[record.partition_key].extend(_unpack(record.data))
    for key, lines in by_key.items():
        sent = [event_bytes(e) for e in events if (_get(e, "player_id") or _get(e, "session_id")) == key]
        assert lines == sent
    multi = [r for r in records if len(_unpack(r.data)) > 1]
    assert multi and all(r.data.endswith(b"\n") for r in multi if r.data[:2] != b"\x1f\x8b")
    assert 0.15 < sum(r.data[:2] == b"\x1f\x8b" for r in records) / len(records) < 0.45
    sequence = [int(r.sequence_number or "") for r in records]
    assert sequence == sorted(set(sequence))
    arrivals = [r.arrival_time or 0.0 for r in records]
    assert arrivals == sorted(arrivals)
    for record in records:
        newest = max(event_millis(json.loads(line)) or 0 for line in _unpack(record.data))
        assert (record.arrival_time or 0) * 1000 >= newest
    assert {r.shard_id for r in records} == {f"shardId-{i:012d}" for i in range(4)}


def test_single_event_records_by_default(events: list[dict[str, Any]]) -> None:
    records = list(pack_records(events[:200]))
    assert [r.data for r in records] == [event_bytes(e) for e in events[:200]]


def test_broken_events_are_single_lines_and_deterministic(events: list[dict[str, Any]]) -> None:
    first = list(inject_broken(events, 0.1, seed=3))
    assert first == list(inject_broken(events, 0.1, seed=3))
    broken = [item for item in first if isinstance(item, bytes)]
    assert 0.05 < len(broken) / len(events) < 0.15
    assert all(b"\n" not in item for item in broken)
    for kind in BROKEN_KINDS:
        spoiled = break_event(events[0], kind, __import__("random").Random(1))
        assert spoiled != event_bytes(events[0]) and b"\n" not in spoiled
    records = list(pack_records(first, multi_event_fraction=0.5, seed=1))
    assert sum(len(_unpack(r.data)) for r in records) == len(events)


# --- fixtures ------------------------------------------------------------------------------------------


def _make_fixtures_module() -> Any:
    name = "tests_fixtures_make_fixtures"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FIXTURES / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_checked_in_fixtures_are_what_make_fixtures_writes(tmp_path: Path) -> None:
    """If this fails after a change to the generator, run: python -m tests.fixtures.make_fixtures."""
    written: Iterator[Path] = iter(_make_fixtures_module().build(tmp_path))
    for path in written:
        assert (FIXTURES / path.name).read_bytes() == path.read_bytes(), path.name
