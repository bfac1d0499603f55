"""Read-ahead: the next chunks of a query are read (and prepared) on a second core while this one writes.

:func:`read_ahead` runs an iterator in a background thread and hands its items over in order through a
bounded queue (memory holds at most ``depth`` items waiting, plus the one each side is working on). A
thread, not a process: the Arrow reader (SQLite stepping, the record batches) and polars release the
GIL, so the two stages overlap on two cores without copying the chunks between processes.

Failures: an exception in the producer is raised in the consumer, at the item where it happened (the
consumer's traceback chains to the producer's); when the consumer stops early (an error of its own, a
``KeyboardInterrupt``, closing the generator), the producer is told to stop, stops at its next item, and
is waited for, so its database connection is closed. The thread is a daemon: a process ending while
it is blocked in a read does not wait for it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable
from typing import Final, TypeVar, overload

T = TypeVar("T")
U = TypeVar("U")

#: How long a blocked ``put`` waits before it checks whether the consumer stopped.
_POLL_SECONDS: Final = 0.1
#: How long a stopping consumer waits for the producer to finish its current item.
_JOIN_SECONDS: Final = 30.0


class _End:
    """The producer's last message: done, or the exception it ended with."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class ReadAheadError(RuntimeError):
    """The read-ahead thread failed with an exception that is not an :class:`Exception` (e.g. SystemExit)."""


@overload
def read_ahead(
    items: Iterable[T], *, depth: int = 2, prepare: None = None, name: str = "batch-read-ahead"
) -> Generator[T, None, None]: ...


@overload
def read_ahead(
    items: Iterable[T], *, depth: int = 2, prepare: Callable[[T], U], name: str = "batch-read-ahead"
) -> Generator[U, None, None]: ...


def read_ahead(
    items: Iterable[T],
    *,
    depth: int = 2,
    prepare: Callable[[T], U] | None = None,
    name: str = "batch-read-ahead",
) -> Generator[T | U, None, None]:
    """``prepare(item)`` for each of ``items`` (the item itself without ``prepare``), computed in a
    background thread up to ``depth`` items ahead of the consumer, in order. Exceptions of the
    iteration or of ``prepare`` are raised here, in the consumer."""
    if depth < 1:
        raise ValueError("depth must be at least 1")
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(message, timeout=_POLL_SECONDS)
            except queue.Full:
                continue
            return True
        return False

    def produce() -> None:
        error: BaseException | None = None
        iterator = iter(items)
        try:
            for item in iterator:
                if stop.is_set():
                    break
                if not put(prepare(item) if prepare is not None else item):
                    break
        except BaseException as exc:  # every failure is handed to the consumer
            error = exc
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()  # a generator's finally clauses (its connection) run in this thread
                except Exception as exc:
                    error = error or exc
        put(_End(error))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            message = handoff.get()
            if isinstance(message, _End):
                if message.error is None:
                    return
                if isinstance(message.error, Exception):
                    raise message.error
                raise ReadAheadError(f"the read-ahead thread ended with {message.error!r}") from message.error
            yield message  # type: ignore[misc]  # T or U: what produce() put
    finally:
        stop.set()
        thread.join(_JOIN_SECONDS)
