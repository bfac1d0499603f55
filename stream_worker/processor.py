"""The KCL record processor (MultiLang protocol, amazon_kclpy v3): one child process per shard.

amazon_kclpy catches an exception raised by a callback, prints it and acknowledges the action
anyway; a record we never registered could then be checkpointed past. So every callback here
catches everything itself and ends the process on an unexpected error: the daemon then stops and
the shard restarts from its last checkpoint. A fatal configuration error ends it the same way,
without checkpointing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor as kcl_v3

from stream_worker.assembly import build_pipeline
from stream_worker.checkpoint import CheckpointStep, LeaseLostError
from stream_worker.errors import FatalConfigurationError
from stream_worker.metrics import WorkerMetrics, default_metrics
from stream_worker.pipeline import InputRecord, ShardPipeline
from stream_worker.settings import WorkerSettings

log = logging.getLogger(__name__)

#: Exit status of a child stopped by a fatal configuration error.
EXIT_FATAL = 3
#: Exit status of a child stopped by an unexpected error.
EXIT_BUG = 70


def _exit(status: int) -> NoReturn:
    for stream in (sys.stderr, sys.stdout):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def to_input_record(record: Any) -> InputRecord:
    """A kclpy ``Record`` as the pipeline's InputRecord."""
    get = getattr(record, "get", None)
    sub = None if get is None else get("subSequenceNumber")
    millis = None if get is None else get("approximateArrivalTimestamp")
    return InputRecord(
        data=record.binary_data,
        sequence_number=str(record.sequence_number),
        sub_sequence_number=int(sub or 0),
        partition_key=str(record.partition_key or ""),
        arrival_time=None if millis is None else float(millis) / 1000.0,
    )


class RecordProcessor(kcl_v3.RecordProcessorBase):  # type: ignore[misc]
    """Runs one shard's :class:`ShardPipeline` under the MultiLangDaemon."""

    def __init__(
        self,
        settings: WorkerSettings,
        metrics: WorkerMetrics | None = None,
        pipeline_factory: Callable[[str], ShardPipeline] | None = None,
        exit_process: Callable[[int], NoReturn] = _exit,
    ) -> None:
        self.settings = settings
        self._metrics = metrics or default_metrics()
        self._factory = pipeline_factory
        self._exit = exit_process
        self.shard_id = "unknown"
        self.pipeline: ShardPipeline | None = None
        self._checkpoints: CheckpointStep | None = None
        self._lease_lost = False
        self._fatal_once = threading.Lock()

    # -- helpers --------------------------------------------------------------------------------

    def _on_fatal(self, error: FatalConfigurationError) -> None:
        if not self._fatal_once.acquire(blocking=False):
            return
        log.critical(
            "stopping: the worker cannot deliver as configured; nothing more is checkpointed",
            extra={"shard": self.shard_id, "error": str(error)[:500]},
        )
        self._exit(EXIT_FATAL)

    def _crash(self, where: str) -> NoReturn:
        log.critical(
            "unexpected error; ending the child so the shard restarts from its checkpoint",
            extra={"shard": self.shard_id, "callback": where},
            exc_info=True,
        )
        self._exit(EXIT_BUG)

    def _checkpoint(self, checkpointer: Any, *, force: bool = False) -> None:
        assert self._checkpoints is not None and self.pipeline is not None
        if self._lease_lost or self.pipeline.fatal is not None:
            return
        try:
            self._checkpoints.maybe_checkpoint(checkpointer, force=force)
        except LeaseLostError:
            self._lease_lost = True
            log.warning("lease lost while checkpointing; stopping delivery", extra={"shard": self.shard_id})
            self.pipeline.abandon()

    # -- MultiLang callbacks ----------------------------------------------------------------------

    def initialize(self, initialize_input: Any) -> None:
        try:
            self.shard_id = str(initialize_input.shard_id)
            if self._factory is not None:
                self.pipeline = self._factory(self.shard_id)
            else:
                self.pipeline = build_pipeline(self.settings, self.shard_id, self._metrics, self._on_fatal)
            self._checkpoints = CheckpointStep(
                self.pipeline.tracker, self.settings.checkpoint_interval_seconds, self.pipeline.telemetry
            )
            log.info(
                "shard processor started",
                extra={"shard": self.shard_id, "from": initialize_input.sequence_number},
            )
        except FatalConfigurationError as exc:
            self._on_fatal(exc)
        except BaseException:
            self._crash("initialize")

    def process_records(self, process_records_input: Any) -> None:
        try:
            pipeline = self.pipeline
            assert pipeline is not None, "process_records before initialize"
            if pipeline.fatal is not None:
                self._on_fatal(pipeline.fatal)
            checkpointer = process_records_input.checkpointer
            if self._lease_lost:
                return
            delivered_at = time.time()
            pipeline.telemetry.processing_records(delivered_at)
            records = [to_input_record(r) for r in process_records_input.records]
            behind = process_records_input.millis_behind_latest
            received_at = time.monotonic()

            def while_blocked() -> None:
                # millisBehindLatest is measured against now: while backpressure holds the next read,
                # the shard falls further behind, and the gauge must show it.
                if behind is not None and float(behind) > 0:
                    pipeline.telemetry.behind_latest(float(behind) + (time.monotonic() - received_at) * 1000)
                self._checkpoint(checkpointer)

            if records:
                # Waits for capacity (checkpointing meanwhile) whenever the events added pass the mark.
                pipeline.accept(records, while_blocked)
            if behind is not None:
                pipeline.telemetry.behind_latest(float(behind))
                pipeline.set_backlog(float(behind) > self.settings.backlog_threshold_seconds * 1000)
                # After the records are in: the read reached the stream's tip less millisBehindLatest.
                # (A read that waited in KCL's queue puts this horizon ahead of the truth by that wait:
                # some groups then go out a little emptier; no event is lost or held.)
                pipeline.advance_horizon(delivered_at - float(behind) / 1000)

            pipeline.wait_for_capacity(while_blocked)
            self._checkpoint(checkpointer)
            pipeline.telemetry.processing_records(None)
        except BaseException:
            self._crash("process_records")

    def lease_lost(self, lease_lost_input: Any) -> None:
        try:
            self._lease_lost = True
            log.info("lease lost; stopping delivery, no checkpoint", extra={"shard": self.shard_id})
            if self.pipeline is not None:
                self.pipeline.abandon()
                self.pipeline.close()
        except BaseException:
            self._crash("lease_lost")

    def shard_ended(self, shard_ended_input: Any) -> None:
        try:
            pipeline = self.pipeline
            assert pipeline is not None and self._checkpoints is not None
            started = time.monotonic()
            if not pipeline.drain(timeout=None):
                if pipeline.fatal is not None:
                    self._on_fatal(pipeline.fatal)
                log.warning("shard end without a full drain; not checkpointing", extra={"shard": self.shard_id})
                return
            try:
                self._checkpoints.checkpoint_shard_end(shard_ended_input.checkpointer)
            except LeaseLostError:
                log.warning("lease lost at shard end; another worker will finish it", extra={"shard": self.shard_id})
                pipeline.close()
                return
            log.info(
                "shard ended: drained and checkpointed at SHARD_END",
                extra={"shard": self.shard_id, "drain_seconds": round(time.monotonic() - started, 3)},
            )
            pipeline.close()
        except BaseException:
            self._crash("shard_ended")

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        try:
            pipeline = self.pipeline
            if pipeline is None:
                return
            drained = pipeline.drain(timeout=self.settings.shutdown_grace_seconds)
            self._checkpoint(shutdown_requested_input.checkpointer, force=True)
            pipeline.abandon()
            log.info(
                "shutdown requested: checkpointed what is done",
                extra={
                    "shard": self.shard_id,
                    "drained": drained,
                    "unfinished_records": pipeline.tracker.unfinished_records,
                },
            )
            pipeline.close()
        except BaseException:
            self._crash("shutdown_requested")


def run_processor(settings: WorkerSettings) -> None:
    """Speak the MultiLang protocol on stdin/stdout until the daemon closes stdin."""
    kcl.KCLProcess(RecordProcessor(settings)).run()
