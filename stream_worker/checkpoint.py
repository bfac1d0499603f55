"""Step 5: checkpoint at the tracker's safe position, at most every ``interval`` seconds.

The KCL checkpointer is only usable on the thread that is handling a MultiLang action, so this
step is driven from ``process_records`` and the shutdown callbacks, never from a background thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from stream_worker.metrics import Telemetry
from stream_worker.tracker import SequencePosition, SequenceTracker

log = logging.getLogger(__name__)


class Checkpointer(Protocol):
    """What amazon_kclpy's checkpointer offers (raises on failure; the error's ``value`` names it)."""

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None: ...


class LeaseLostError(Exception):
    """The checkpoint was refused because another worker holds the shard now."""


_LEASE_LOST = frozenset({"ShutdownException", "LeaseLostException"})


class CheckpointStep:
    """Checkpoints what is done; never what is not."""

    def __init__(
        self,
        tracker: SequenceTracker,
        interval: float,
        telemetry: Telemetry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tracker = tracker
        self._interval = interval
        self._telemetry = telemetry
        self._clock = clock
        self._last_at = clock()
        self.checkpointed: SequencePosition | None = None

    def maybe_checkpoint(self, checkpointer: Checkpointer, *, force: bool = False) -> bool:
        """Checkpoint the safe position if it moved and the interval passed (or ``force``).

        Returns True when a checkpoint was written. Raises LeaseLostError when the lease is gone.
        """
        position = self._tracker.safe_position
        if position is None or (self.checkpointed is not None and position <= self.checkpointed):
            return False
        now = self._clock()
        if not force and now - self._last_at < self._interval:
            return False
        self._last_at = now
        try:
            checkpointer.checkpoint(position.sequence_number, position.sub_sequence)
        except Exception as exc:
            name = str(getattr(exc, "value", type(exc).__name__))
            if name in _LEASE_LOST:
                self._telemetry.checkpoint("lease_lost")
                raise LeaseLostError(name) from exc
            self._telemetry.checkpoint("throttled" if "Throttling" in name else "error")
            log.warning("checkpoint failed; will retry", extra={"error": name, "at": str(position)})
            return False
        self.checkpointed = position
        self._telemetry.checkpoint("ok", time.time())
        log.debug("checkpointed", extra={"sequence": position.sequence_number})
        return True

    def checkpoint_shard_end(self, checkpointer: Checkpointer, *, attempts: int = 6, pause: float = 0.5) -> None:
        """The final checkpoint of an ended shard (lets KCL start its children).

        A throttled or failed checkpoint is tried again (``attempts`` in all, the pause doubling);
        raises LeaseLostError if the lease is gone, or the last error once attempts run out.
        """
        for attempt in range(1, attempts + 1):
            try:
                checkpointer.checkpoint()
            except Exception as exc:
                name = str(getattr(exc, "value", type(exc).__name__))
                if name in _LEASE_LOST:
                    self._telemetry.checkpoint("lease_lost")
                    raise LeaseLostError(name) from exc
                self._telemetry.checkpoint("throttled" if "Throttling" in name else "error")
                if attempt == attempts:
                    raise
                log.warning("SHARD_END checkpoint failed; retrying", extra={"error": name, "attempt": attempt})
                time.sleep(pause * 2 ** (attempt - 1))
                continue
            self._telemetry.checkpoint("ok", time.time())
            return
