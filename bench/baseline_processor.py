"""The baseline: a record processor as the public AWS sample writes it, for comparison only.

One KCL MultiLang child (amazon_kclpy v3), no batching, no concurrency: for each record, decode
(base64 done by kclpy; gunzip if gzip magic; split newline-joined events), ``json.loads`` each
event, and call ``put_events`` once per event, synchronously, with a default boto3 client. After
the batch, checkpoint at the last record (every ``BASELINE_CHECKPOINT_INTERVAL_SECONDS``, default
5, like the worker; 0 = after every batch), and at SHARD_END.

Which events it sends depends on ``BASELINE_MODE``:

- ``same-events`` (default): each event is normalized with the very same
  :class:`clickstream.normalize.Normalizer` the worker uses, so the baseline sends exactly the
  worker's events, with the same eventIds (repeated rounds collapsed), only one per call. This
  isolates what batching and concurrency buy.
- ``sample``: what the public AWS samples' Kinesis consumers do: every raw interaction event
  becomes one ``put_events`` call after only the mapping a valid Personalize event needs (the raw
  type looked up in the event mapping for its Personalize eventType; itemId, sessionId, userId,
  eventId, sentAt from the raw fields; the arrival time when the event has no timestamp). No
  collapsing of rounds, no duplicate suppression, no validation beyond skipping events that cannot
  be sent at all (not an interaction type, no session or item).

Run by ``bench/processor_throughput.py`` as ``python bench/baseline_processor.py`` under
:class:`stream_worker.multilang_driver.MultiLangDriver`. Environment: ``BASELINE_TRACKING_ID``
(else ``STREAM_WORKER_TRACKING_ID``), ``AWS_ENDPOINT_URL_PERSONALIZE_EVENTS``, ``AWS_REGION`` and
credentials. stdout belongs to the protocol; nothing here prints.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from typing import Any

import boto3
from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor

from clickstream.mapping import EventMapping
from clickstream.normalize import Normalizer, Source
from clickstream.outcomes import Drop
from clickstream.raw import parse_timestamp

MODES = ("same-events", "sample")


def sample_event(event: Any, mapping: EventMapping, arrival: float | None) -> dict[str, Any] | None:
    """The PutEvents request the AWS sample would make for one raw event (None: not sendable)."""
    rule = mapping.interactions.get(event.get("event_type") or event.get("eventType"))
    session = event.get("session_id") or event.get("sessionId")
    item = event.get("game_id") or event.get("gameId")
    if rule is None or not session or not item:
        return None
    sent_at = parse_timestamp(event.get("timestamp")) or arrival or time.time()
    entry: dict[str, Any] = {"eventType": rule.event_type, "itemId": str(item), "sentAt": sent_at}
    event_id = event.get("event_id") or event.get("eventId")
    if event_id:
        entry["eventId"] = str(event_id)
    request: dict[str, Any] = {"sessionId": str(session), "eventList": [entry]}
    user = event.get("player_id") or event.get("playerId")
    if user:
        request["userId"] = str(user)
    return request


class BaselineProcessor(processor.RecordProcessorBase):  # type: ignore[misc]
    """For each record: decode, json.loads, map (``BASELINE_MODE``), one synchronous put_events per event."""

    def __init__(self) -> None:
        self.tracking_id = os.environ.get("BASELINE_TRACKING_ID") or os.environ["STREAM_WORKER_TRACKING_ID"]
        self.interval = float(os.environ.get("BASELINE_CHECKPOINT_INTERVAL_SECONDS", "5"))
        self.shard_id = "unknown"
        self.client: Any = None
        self.mode = os.environ.get("BASELINE_MODE", "same-events")
        if self.mode not in MODES:
            raise SystemExit(f"BASELINE_MODE must be one of {MODES}, not {self.mode!r}")
        self.mapping = EventMapping.default()
        self.normalizer = Normalizer(self.mapping)
        self.last_checkpoint = time.monotonic()

    def initialize(self, initialize_input: Any) -> None:
        self.shard_id = str(initialize_input.shard_id)
        self.client = boto3.client("personalize-events", region_name=os.environ.get("AWS_REGION", "us-east-1"))
        self.last_checkpoint = time.monotonic()

    def process_records(self, process_records_input: Any) -> None:
        last: Any = None
        for record in process_records_input.records:
            self.process_record(record)
            last = record
        if last is not None and time.monotonic() - self.last_checkpoint >= self.interval:
            process_records_input.checkpointer.checkpoint(last.sequence_number, last.get("subSequenceNumber") or 0)
            self.last_checkpoint = time.monotonic()

    def process_record(self, record: Any) -> None:
        data = record.binary_data
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        millis = record.get("approximateArrivalTimestamp")
        arrival = None if millis is None else float(millis) / 1000.0
        sequence = str(record.sequence_number)
        sub = int(record.get("subSequenceNumber") or 0)
        for position, line in enumerate(data.split(b"\n")):
            if not line.strip():
                continue
            event = json.loads(line)
            if self.mode == "sample":
                request = sample_event(event, self.mapping, arrival)
                if request is not None:
                    self.client.put_events(trackingId=self.tracking_id, **request)
                continue
            outcome = self.normalizer.normalize(event, Source(self.shard_id, sequence, sub, position, arrival))
            if isinstance(outcome, Drop):
                continue
            request: dict[str, Any] = {
                "trackingId": self.tracking_id,
                "sessionId": outcome.session_id,
                "eventList": [outcome.to_api()],
            }
            if outcome.user_id is not None:
                request["userId"] = outcome.user_id
            self.client.put_events(**request)

    def lease_lost(self, lease_lost_input: Any) -> None:
        pass

    def shard_ended(self, shard_ended_input: Any) -> None:
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        shutdown_requested_input.checkpointer.checkpoint()


if __name__ == "__main__":
    kcl.KCLProcess(BaselineProcessor()).run()
