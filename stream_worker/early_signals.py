"""Stop signals that reach ``stream-worker run`` before its supervisor has installed its handlers.

As a container's PID 1, a process does not even receive a signal it has no handler for, so a SIGTERM
while ``run`` imports pydantic and loads its settings would be lost. Importing this module (the CLI
imports it before anything heavy) catches them from then on when the command is ``run``; the
supervisor reads :data:`EARLY_SIGNALS` after installing its own handlers.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

#: Stop signals caught before the supervisor's handlers were installed.
EARLY_SIGNALS: list[int] = []


def _note(signum: int, frame: FrameType | None) -> None:
    EARLY_SIGNALS.append(signum)


def catch() -> None:
    """Note SIGTERM and SIGINT in :data:`EARLY_SIGNALS` (main thread only)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _note)


if sys.argv[1:2] == ["run"]:
    catch()
