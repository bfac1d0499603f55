"""``stream-worker``: the record processor, replay, and (with the local stack) produce and run."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from stream_worker import early_signals
from stream_worker.errors import FatalConfigurationError
from stream_worker.logs import configure_logging
from stream_worker.settings import load_settings

log = logging.getLogger("stream_worker")

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-worker", description="Kinesis clickstream -> Amazon Personalize event tracker"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("process", help="the KCL record processor (run by the MultiLangDaemon; speaks on stdin/stdout)")

    replay = commands.add_parser("replay", help="push a captured clickstream file through the pipeline")
    replay.add_argument("file", type=Path, help="JSON lines or a Kinesis records capture, optionally gzip")
    replay.add_argument("--rate", type=float, help="at most this many records per second")
    replay.add_argument("--speed", type=float, help="replay at this multiple of the recorded pace")
    replay.add_argument("--summary-json", type=Path, help="write the counts to this file")
    replay.add_argument("--tracking-id", help="overrides STREAM_WORKER_TRACKING_ID")
    replay.add_argument("--dead-letter-url", help="overrides STREAM_WORKER_DEAD_LETTER_URL")
    replay.add_argument("--mapping-file", type=Path, help="overrides STREAM_WORKER_MAPPING_FILE")
    replay.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default: tty)"
    )

    produce = commands.add_parser("produce", help="put a captured clickstream file into a Kinesis stream")
    produce.add_argument("file", type=Path, help="JSON lines or a Kinesis records capture, optionally gzip")
    produce.add_argument("--stream", help="the stream (default: STREAM_WORKER_STREAM_NAME)")
    produce.add_argument("--rate", type=float, help="at most this many records per second")
    produce.add_argument("--summary-json", type=Path, help="write the counts to this file")
    produce.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default: tty)"
    )

    run = commands.add_parser(
        "run", help="the container entrypoint: the KCL daemon, /metrics, /healthz, /readyz, graceful shutdown"
    )
    run.add_argument("--metrics-port", type=int, help="overrides STREAM_WORKER_METRICS_PORT")
    run.add_argument(
        "--print-properties", action="store_true", help="print the KCL properties file that would be used, and exit"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    try:
        if args.command == "process":
            from stream_worker.processor import run_processor

            run_processor(load_settings())
            return 0
        if args.command == "replay":
            return _replay(args)
        if args.command == "produce":
            return _produce(args)
        if args.command == "run":
            return _run(args)
    except FatalConfigurationError as exc:
        log.critical(str(exc))
        print(f"stream-worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    raise AssertionError(args.command)


def _replay(args: argparse.Namespace) -> int:
    from stream_worker.replay import Pacing, replay, write_summary

    settings = load_settings(
        tracking_id=args.tracking_id, dead_letter_url=args.dead_letter_url, mapping_file=args.mapping_file
    )
    if not args.file.is_file():
        print(f"stream-worker: {args.file} is not a readable file", file=sys.stderr)
        return EXIT_CONFIG
    try:
        pacing = Pacing(rate=args.rate, speed=args.speed)
    except ValueError as exc:
        print(f"stream-worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    summary = replay(args.file, settings, pacing=pacing, progress=args.progress)
    if args.summary_json:
        write_summary(summary, args.summary_json)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0 if summary["drained"] else 1


def _produce(args: argparse.Namespace) -> int:
    from clickstream.capture import CaptureError
    from stream_worker.errors import RetryableError
    from stream_worker.produce import kinesis_client, produce, write_summary

    settings = load_settings(stream_name=args.stream)
    if not args.file.is_file():
        print(f"stream-worker: {args.file} is not a readable file", file=sys.stderr)
        return EXIT_CONFIG
    if args.rate is not None and args.rate <= 0:
        print("stream-worker: --rate must be positive", file=sys.stderr)
        return EXIT_CONFIG
    client = kinesis_client(settings.region)
    try:
        summary = produce(args.file, settings.stream_name, client=client, rate=args.rate, progress=args.progress)
    except CaptureError as exc:
        print(f"stream-worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RetryableError as exc:
        log.error(str(exc))
        print(f"stream-worker: {exc}", file=sys.stderr)
        return 1
    if args.summary_json:
        write_summary(summary, args.summary_json)
    print(json.dumps(summary.to_json(), indent=2, sort_keys=True))
    return 0 if summary.failed_records == 0 else 1


def _run(args: argparse.Namespace) -> int:
    if not args.print_properties:
        early_signals.catch()  # main(["run"]) called from Python: argv did not say so at import
    from stream_worker.supervisor import Supervisor

    settings = load_settings(metrics_port=args.metrics_port)
    supervisor = Supervisor(settings)
    if args.print_properties:
        print(supervisor.properties_text(), end="")
        return 0
    return supervisor.run(early_signals=early_signals.EARLY_SIGNALS)


if __name__ == "__main__":
    raise SystemExit(main())
