"""``devstack``: the local AWS-compatible stack (kinesis-mock, moto, the Personalize emulator, one edge).

    devstack up [--state-dir DIR] [--edge-port 4566] [--stream NAME --shards N] [--foreground]
    eval "$(devstack env)"
    devstack status
    devstack down
    devstack personalize [emulator options]     # the emulator alone, in the foreground

Exit codes: 0 success; 1 failure (a service did not start, or does not answer); 2 bad settings or a
missing prerequisite (Node.js, kinesis-local, a taken edge port); 3 not running (status, env).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from clickstream.settings import settings_problems
from devstack import envfile
from devstack.log import configure_logging
from devstack.settings import ENV_PREFIX, DevStackSettings
from devstack.stack import DevStack, DevStackError, describe

log = logging.getLogger("devstack.cli")

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_CONFIG: Final = 2
EXIT_NOT_RUNNING: Final = 3


def _add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="where pids, ports, logs and env.sh live (default .devstack, DEVSTACK_STATE_DIR)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devstack",
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", help="log level of devstack's own JSON logs on stderr (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start the stack (or say it is up already)")
    _add_state_dir(up)
    up.add_argument("--host", help="address to bind and to name in URLs (default 127.0.0.1)")
    up.add_argument("--edge-port", type=int, help="edge port (default 4566; 0 = any free port)")
    up.add_argument("--region", help="AWS region (default us-east-1)")
    up.add_argument("--stream", dest="stream_name", help="Kinesis stream to create (default clickstream)")
    up.add_argument("--shards", type=int, help="its shard count (default 4)")
    up.add_argument("--tracking-id", help="the emulator's event tracker id (default local-tracker)")
    up.add_argument("--application-name", help="STREAM_WORKER_APPLICATION_NAME (KCL lease table)")
    up.add_argument(
        "--aws-upstream",
        metavar="URL",
        help="use a running LocalStack (e.g. http://127.0.0.1:4566) for every AWS service instead of "
        "kinesis-mock and moto; Personalize still goes to our emulator",
    )
    up.add_argument(
        "--no-personalize", dest="personalize", action="store_false", default=None, help="skip the emulator"
    )
    up.add_argument("--timeout", dest="startup_timeout", type=float, help="seconds each service gets to answer")
    mode = up.add_mutually_exclusive_group()
    mode.add_argument(
        "--detach", dest="foreground", action="store_false", default=False, help="return once up (default)"
    )
    mode.add_argument(
        "--foreground",
        dest="foreground",
        action="store_true",
        help="stay attached; Ctrl-C or SIGTERM stops the stack",
    )

    down = commands.add_parser("down", help="stop what `up` started (by pid)")
    _add_state_dir(down)
    down.add_argument("--timeout", dest="stop_timeout", type=float, help="seconds between SIGTERM and SIGKILL")

    status = commands.add_parser("status", help="each service's pid, port and whether it answers")
    _add_state_dir(status)
    status.add_argument("--json", action="store_true", help="print JSON")

    env = commands.add_parser("env", help='print the environment: eval "$(devstack env)"')
    _add_state_dir(env)
    env.add_argument("--format", choices=["sh", "dotenv", "json"], default="sh")

    commands.add_parser(
        "personalize",
        help="run the Personalize emulator in the foreground (options: devstack personalize -h)",
    )
    return parser


def _settings(args: argparse.Namespace, *names: str) -> DevStackSettings:
    """Settings from the given options (where set) over the environment and defaults."""
    explicit: dict[str, Any] = {}
    for name in ("state_dir", *names):
        value = getattr(args, name, None)
        if value is not None:
            explicit[name] = value
    return DevStackSettings(**explicit)


def cmd_up(args: argparse.Namespace) -> int:
    settings = _settings(
        args,
        "host",
        "edge_port",
        "region",
        "stream_name",
        "shards",
        "tracking_id",
        "application_name",
        "aws_upstream",
        "personalize",
        "startup_timeout",
    )
    stack = DevStack(settings)
    stack.start()
    if stack.attached:
        print(f"devstack is already up: {stack.edge_url} (state {stack.state_dir})")
    else:
        print(f"devstack is up: {stack.edge_url} (state {stack.state_dir})")
        print(f'use it with: eval "$(devstack env --state-dir {stack.state_dir})"')
    sys.stdout.flush()
    if not args.foreground:
        return EXIT_OK
    if stack.attached:
        print("not staying in the foreground: this stack was started by another `devstack up`", file=sys.stderr)
        return EXIT_OK
    return _foreground(stack)


def _foreground(stack: DevStack) -> int:
    """Block until SIGINT/SIGTERM or until a service exits, then stop the stack."""
    watched = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    code = EXIT_OK
    try:
        while True:
            info = signal.sigtimedwait(watched, 5.0)
            if info is not None and info.si_signo in (signal.SIGINT, signal.SIGTERM):
                log.info("signal: stopping", extra={"signal": signal.Signals(info.si_signo).name})
                break
            exited = stack.first_exited()
            if exited is not None:
                log.error("a service exited: stopping the stack", extra={"service": exited})
                code = EXIT_FAILED
                break
    finally:
        stack.stop()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
    return code


def cmd_down(args: argparse.Namespace) -> int:
    stack = DevStack(_settings(args, "stop_timeout"))
    had_state = stack.load_state() is not None
    stopped = stack.stop()
    if not had_state:
        print(f"devstack is not running from {stack.state_dir}")
    else:
        print(f"devstack stopped ({', '.join(stopped) or 'nothing was left running'})")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    stack = DevStack(_settings(args))
    state = stack.load_state()
    statuses = stack.status()
    healthy = state is not None and bool(state.get("ready")) and all(s.answers for s in statuses)
    if args.json:
        body = {
            "state_dir": str(stack.state_dir),
            "running": state is not None,
            "healthy": healthy,
            "edge_url": state.get("edge_url") if state else None,
            "services": [s.__dict__ for s in statuses],
        }
        print(json.dumps(body, indent=2))
    elif state is None:
        print(f"devstack is not running from {stack.state_dir}")
    else:
        print(describe(statuses))
        verdict = "healthy" if healthy else "NOT healthy"
        print(f"edge: {state.get('edge_url', '-')}  state: {stack.state_dir}  {verdict}")
    if state is None:
        return EXIT_NOT_RUNNING
    return EXIT_OK if healthy else EXIT_FAILED


def cmd_env(args: argparse.Namespace) -> int:
    stack = DevStack(_settings(args))
    if not stack.env_path.is_file():
        print(f"devstack is not running from {stack.state_dir} (no env.sh): run `devstack up`", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if args.format == "sh":
        sys.stdout.write(stack.env_path.read_text(encoding="utf-8"))
    else:
        sys.stdout.write(envfile.render(envfile.read(stack.env_path), args.format))
    return EXIT_OK


def cmd_personalize(argv: Sequence[str]) -> int:
    from devstack.personalize.server import main as emulator_main

    return int(emulator_main(list(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["personalize"]:
        return cmd_personalize(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    configure_logging(args.log_level)
    handlers = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "env": cmd_env}
    try:
        return handlers[args.command](args)
    except ValidationError as exc:
        print(f"devstack: bad setting: {settings_problems(exc, ENV_PREFIX)}", file=sys.stderr)
        return EXIT_CONFIG
    except DevStackError as exc:
        print(f"devstack {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
