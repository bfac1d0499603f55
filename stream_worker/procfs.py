"""A process's state and start time from ``/proc/PID/stat`` (Linux), telling a live process from a
zombie and from a later process given the same pid. Used by the supervisor and by devstack."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final


def proc_is_ours() -> bool:
    """Whether ``/proc`` shows our pid namespace (in a new one without its own ``/proc`` mount, it shows
    another's pids, and would name other processes)."""
    try:
        return str(Path("/proc/self").readlink()) == str(os.getpid())
    except OSError:
        return False


PROC_MOUNTED: Final = proc_is_ours()
#: What :func:`process_identity` gives a live process whose start time cannot be read (no ``/proc``).
UNKNOWN_START: Final = -1


#: ``/proc/PID/stat`` states of a process that has ended (a zombie waits for its parent to reap it).
ENDED_STATES: Final = frozenset({b"Z", b"X", b"x"})


class ProcUnreadableError(Exception):
    """``/proc`` cannot tell about a pid (not mounted, or not readable)."""


def proc_stat(pid: int | str) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` from field 3 (state) on, so field N is at index N - 3; None
    when there is no such process. Raises ProcUnreadableError when ``/proc`` cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError) as exc:  # no such process, or it ended while read
        if PROC_MOUNTED:
            return None
        raise ProcUnreadableError from exc
    except OSError as exc:
        raise ProcUnreadableError from exc
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, hence the last ")".
    fields = stat[stat.rfind(b")") + 1 :].split()
    if len(fields) < 20:
        raise ProcUnreadableError
    return fields


def process_identity(pid: int) -> int | None:
    """The start time of the live process ``pid`` (clock ticks after boot, ``/proc/PID/stat`` field 22),
    which tells it from a later process given the same pid; None when there is no such process or it
    is a zombie (it has ended; only its exit status is left to collect).

    Without ``/proc`` (not Linux): :data:`UNKNOWN_START` for any process that exists.
    """
    try:
        fields = proc_stat(pid)
    except ProcUnreadableError:
        pass
    else:
        return None if fields is None or fields[0] in ENDED_STATES else int(fields[19])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return UNKNOWN_START
