"""Run the Personalize emulator: ``python -m devstack.personalize [options]``.

The server binds before it starts (``--port 0`` picks a free port), and once it is listening it
writes the port to ``--port-file`` (atomically) and prints its URL as the one line on stdout. Logs go to
stderr as JSON lines. SIGTERM/SIGINT shut it down gracefully (exit status 0).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Final

import uvicorn

from devstack.personalize.app import ControlSettings, EmulatorConfig, create_app, create_emulator
from devstack.personalize.control.plane import (
    DEFAULT_AUTO_TRAINING_DAY_SECONDS,
    DEFAULT_AUTO_TRAINING_DELAY_SECONDS,
    DEFAULT_STEP_SECONDS,
)
from devstack.personalize.logs import configure_logging
from devstack.personalize.quota import DEFAULT_PUT_EVENTS_PER_SECOND
from devstack.personalize.state import USE_DEFAULT, QuotaSetting

logger = logging.getLogger("devstack.personalize.server")

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 4580
BACKLOG: Final = 2048
#: Longer than any SDK's idle pool timeout, so a pooled connection is never closed under the client.
KEEP_ALIVE_SECONDS: Final = 120
_UNLIMITED: Final = frozenset({"0", "none", "unlimited", "inf"})


def parse_quota(text: str) -> float | None:
    """A quota in calls/s; ``0``, ``none``, ``unlimited`` or ``inf`` mean unlimited (``None``)."""
    if text.strip().lower() in _UNLIMITED:
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a quota (calls per second): {text!r}") from None
    if value < 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"a quota must be >= 0: {text!r}")
    return value or None


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def parse_tracker_spec(text: str) -> tuple[str, QuotaSetting]:
    """``ID`` (default quota) or ``ID:QUOTA`` -> (trackingId, quota)."""
    tracking_id, sep, quota_text = text.rpartition(":")
    if not sep:
        tracking_id, quota_text = text, ""
    if not tracking_id or len(tracking_id) > 256:
        raise argparse.ArgumentTypeError(f"tracker must be ID[:QUOTA] with an ID of 1..256 chars: {text!r}")
    if not quota_text:
        return tracking_id, USE_DEFAULT
    return tracking_id, parse_quota(quota_text)


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of the emulator."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.personalize",
        description=(
            "Amazon Personalize emulator: events, runtime and control-plane APIs with local recipes, "
            "an inspection and fault-injection API."
        ),
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (0: pick a free one; default {DEFAULT_PORT})"
    )
    parser.add_argument("--port-file", type=Path, help="write the actual port here once the server is listening")
    parser.add_argument(
        "--tracker",
        dest="trackers",
        action="append",
        type=parse_tracker_spec,
        default=[],
        metavar="ID[:QUOTA]",
        help="create an event tracker at start-up (repeatable); QUOTA in PutEvents calls/s, 0 = unlimited",
    )
    parser.add_argument(
        "--default-quota",
        type=parse_quota,
        default=DEFAULT_PUT_EVENTS_PER_SECOND,
        metavar="PER_SECOND",
        help="PutEvents calls/s per tracker when a tracker gives none (default 1000; 0 = unlimited)",
    )
    parser.add_argument("--data-dir", type=Path, help="persist trackers and accepted records here (JSON lines)")
    parser.add_argument("--region", default="us-east-1", help="region used in ARNs (default us-east-1)")
    parser.add_argument("--account-id", default="000000000000", help="account used in ARNs")
    parser.add_argument("--seed", type=int, help="seed of the fault injector's random draws")
    parser.add_argument(
        "--s3-endpoint-url",
        help="S3 endpoint for dataset import and batch inference jobs (default: AWS_ENDPOINT_URL_S3, "
        "AWS_ENDPOINT_URL, else real S3)",
    )
    parser.add_argument(
        "--step-seconds",
        type=_non_negative,
        default=DEFAULT_STEP_SECONDS,
        metavar="SECONDS",
        help="time between status steps of control-plane resources (default 0.2; 0 = instantaneous)",
    )
    parser.add_argument(
        "--auto-training-delay-seconds",
        type=_non_negative,
        default=DEFAULT_AUTO_TRAINING_DELAY_SECONDS,
        metavar="SECONDS",
        help="from a solution's ACTIVE to its first automatic training (default 3600, as the service)",
    )
    parser.add_argument(
        "--auto-training-day-seconds",
        type=_positive,
        default=DEFAULT_AUTO_TRAINING_DAY_SECONDS,
        metavar="SECONDS",
        help="the length of a day in automatic training schedules rate(N days) (default 86400)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="default info"
    )
    return parser


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free port."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def write_port_file(path: Path, port: int) -> None:
    """Write ``port`` to ``path`` atomically (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n", encoding="utf-8")
    tmp.replace(path)


class _Server(uvicorn.Server):
    """A uvicorn server that calls ``on_started`` once it is listening."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self._on_started()


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGTERM/SIGINT; return the exit status (0 after a graceful stop)."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    port_file: Path | None = args.port_file
    if port_file is not None:
        port_file.unlink(missing_ok=True)
    config = EmulatorConfig(
        region=args.region,
        account_id=args.account_id,
        default_quota=args.default_quota,
        trackers=list(args.trackers),
        data_dir=args.data_dir,
        seed=args.seed,
        s3_endpoint_url=args.s3_endpoint_url,
        control=ControlSettings(
            step_seconds=args.step_seconds,
            auto_training_delay_seconds=args.auto_training_delay_seconds,
            auto_training_day_seconds=args.auto_training_day_seconds,
        ),
    )
    try:
        emulator = create_emulator(config)
    except (OSError, ValueError) as exc:
        logger.error("cannot start: %s", exc)
        return 2
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        logger.error("cannot listen: %s", exc, extra={"host": args.host, "port": args.port})
        emulator.store.close()
        return 1
    port = int(sock.getsockname()[1])
    url_host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{url_host}:{port}"

    def on_started() -> None:
        if port_file is not None:
            write_port_file(port_file, port)
        logger.info(
            "listening",
            extra={"url": url, "port": port, "trackers": sorted(emulator.store.trackers)},
        )
        print(url, flush=True)

    uvicorn_config = uvicorn.Config(
        create_app(emulator),
        http="auto",
        loop="auto",
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level=args.log_level,
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        backlog=BACKLOG,
    )
    server = _Server(uvicorn_config, on_started)

    def request_stop(signum: int, frame: FrameType | None) -> None:
        # Before uvicorn takes over the signals (and after it gives them back): ask it to stop.
        server.should_exit = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        emulator.store.close()
        if port_file is not None:
            with contextlib.suppress(OSError):
                if port_file.read_text(encoding="utf-8").strip() == str(port):
                    port_file.unlink()
        logger.info("stopped", extra={"port": port})
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
