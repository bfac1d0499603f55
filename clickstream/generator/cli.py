"""The generator's command line: write a synthetic capture file and print what is in it."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from clickstream.capture import CaptureError, CaptureRecord, is_gzip, write_capture
from clickstream.generator.broken import inject_broken
from clickstream.generator.catalog import generate_catalog
from clickstream.generator.config import DEFAULT_CONFIG, SHORT_SESSIONS
from clickstream.generator.events import generate_events
from clickstream.generator.records import event_millis, pack_records

DEFAULT_START: Final = "2026-11-01T00:00:00Z"


@dataclass(slots=True)
class Summary:
    """What went into a capture, counted as it streams by."""

    events: int = 0
    broken: int = 0
    records: int = 0
    multi_event_records: int = 0
    gzip_records: int = 0
    sessions: set[str] = field(default_factory=set)
    players: set[str] = field(default_factory=set)
    anonymous_sessions: set[str] = field(default_factory=set)
    event_types: Counter[str] = field(default_factory=Counter)
    first_ms: int | None = None
    last_ms: int | None = None

    def count_events(self, items: Iterable[Mapping[str, Any] | bytes]) -> Iterator[Mapping[str, Any] | bytes]:
        for item in items:
            if isinstance(item, bytes):
                self.broken += 1
            else:
                self.events += 1
                self._note(item)
            yield item

    def _note(self, event: Mapping[str, Any]) -> None:
        self.event_types[str(event.get("event_type", event.get("eventType")))] += 1
        session = event.get("session_id", event.get("sessionId"))
        player = event.get("player_id", event.get("playerId"))
        if isinstance(session, str):
            self.sessions.add(session)
            if player is None:
                self.anonymous_sessions.add(session)
        if isinstance(player, str):
            self.players.add(player)
        millis = event_millis(event)
        if millis is not None:
            self.first_ms = millis if self.first_ms is None else min(self.first_ms, millis)
            self.last_ms = millis if self.last_ms is None else max(self.last_ms, millis)

    def count_records(self, records: Iterable[CaptureRecord]) -> Iterator[CaptureRecord]:
        for record in records:
            self.records += 1
            if is_gzip(record.data):
                self.gzip_records += 1
            if record.data.count(b"\n") > 0:
                self.multi_event_records += 1
            yield record

    def lines(self) -> list[str]:
        def when(millis: int | None) -> str:
            if millis is None:
                return "-"
            return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds")

        types = ", ".join(f"{name} {count}" for name, count in self.event_types.most_common())
        return [
            f"events:            {self.events} valid + {self.broken} broken",
            f"records:           {self.records} ({self.multi_event_records} multi-event, {self.gzip_records} gzip)",
            f"sessions:          {len(self.sessions)} ({len(self.anonymous_sessions)} anonymous)",
            f"players:           {len(self.players)}",
            f"time span:         {when(self.first_ms)} .. {when(self.last_ms)}",
            f"event types:       {types}",
        ]


def _epoch(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time or epoch seconds: {text!r}") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clickstream.generator",
        description="Write a deterministic synthetic clickstream capture (same arguments, same bytes).",
    )
    parser.add_argument("--out", type=Path, required=True, help="capture file to write")
    parser.add_argument("--players", type=int, default=1000, help="registered players (default 1000)")
    parser.add_argument("--sessions", type=int, default=None, help="sessions to generate")
    parser.add_argument("--duration", type=float, default=None, help="seconds of sessions to generate")
    parser.add_argument("--games", type=int, default=300, help="games in the catalog (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--start",
        type=_epoch,
        default=_epoch(DEFAULT_START),
        help=f"ISO-8601 or epoch (default {DEFAULT_START})",
    )
    parser.add_argument("--format", choices=("jsonl", "kinesis"), default="jsonl", dest="kind")
    parser.add_argument("--gzip", action="store_true", help="gzip-compress the file")
    parser.add_argument("--broken-fraction", type=_fraction, default=0.0, help="events replaced by broken ones")
    parser.add_argument(
        "--multi-event-fraction", type=_fraction, default=None, help="kinesis: multi-event records (0.2)"
    )
    parser.add_argument("--gzip-record-fraction", type=_fraction, default=None, help="kinesis: gzip records (0.1)")
    parser.add_argument("--shards", type=int, default=None, help="kinesis: assign shard ids for N shards")
    parser.add_argument("--camel-case-fraction", type=_fraction, default=None, help="sessions sending camelCase")
    parser.add_argument("--short-sessions", action="store_true", help="few rounds per game (small captures)")
    parser.add_argument("--catalog-out", type=Path, default=None, help="also write the catalog as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for bad arguments)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.sessions is None and args.duration is None:
        parser.error("give --sessions or --duration")
    if args.kind == "jsonl" and (args.multi_event_fraction or args.gzip_record_fraction or args.shards):
        parser.error("multi-event and gzip records need --format kinesis (plain lines cannot hold them)")
    config = SHORT_SESSIONS if args.short_sessions else DEFAULT_CONFIG
    if args.camel_case_fraction is not None:
        config = config.with_(camel_case_fraction=args.camel_case_fraction)
    kinesis = args.kind == "kinesis"
    multi = (0.2 if args.multi_event_fraction is None else args.multi_event_fraction) if kinesis else 0.0
    gzipped = (0.1 if args.gzip_record_fraction is None else args.gzip_record_fraction) if kinesis else 0.0

    catalog = generate_catalog(args.games, args.seed)
    if args.catalog_out is not None:
        args.catalog_out.write_text(json.dumps(catalog.to_json(), indent=1) + "\n", encoding="utf-8")
    summary = Summary()
    events = generate_events(
        catalog,
        n_players=args.players,
        n_sessions=args.sessions,
        duration=args.duration,
        seed=args.seed,
        start=args.start,
        config=config,
    )
    items = summary.count_events(inject_broken(events, args.broken_fraction, args.seed))
    records = pack_records(
        items, multi_event_fraction=multi, gzip_fraction=gzipped, seed=args.seed, shard_count=args.shards
    )
    try:
        write_capture(args.out, summary.count_records(records), kind=args.kind, gzip=args.gzip)
    except CaptureError as exc:
        parser.error(str(exc))
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({args.kind}{', gzip' if args.gzip else ''}, {size} bytes)")
    print(f"catalog:           {len(catalog)} games ({len(catalog.trending)} trending), seed {args.seed}")
    for line in summary.lines():
        print(line)
    return 0
