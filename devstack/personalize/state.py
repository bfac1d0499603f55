"""The emulator's state: resources (trackers, datasets), accepted records, quotas and call statistics.

Everything lives in memory and is touched only from the server's event loop (no locks). Accepted
records are kept as tuples in append-only lists, in the order received, so listings are fast. With a
:class:`~devstack.personalize.persistence.Persistence`, records and resources are also written to disk
and reloaded by :meth:`Store.load`.
"""

from __future__ import annotations

import enum
import logging
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Final, Literal

from devstack.personalize.errors import OUTCOMES, InvalidInputError, ResourceNotFoundError, ThrottlingError
from devstack.personalize.persistence import Persistence
from devstack.personalize.quota import DEFAULT_PUT_EVENTS_PER_SECOND, TokenBucket
from devstack.personalize.validation import PutEventsInput, PutRecordsInput

logger = logging.getLogger("devstack.personalize.state")

#: Columns of an accepted event, in the order of the stored tuples (and of the compact listing).
EVENT_FIELDS: Final = (
    "seq",
    "receivedAt",
    "trackingId",
    "userId",
    "sessionId",
    "eventId",
    "eventType",
    "eventValue",
    "itemId",
    "sentAt",
    "recommendationId",
    "impression",
    "properties",
    "metricAttribution",
)
ITEM_FIELDS: Final = ("seq", "receivedAt", "datasetArn", "itemId", "properties")
USER_FIELDS: Final = ("seq", "receivedAt", "datasetArn", "userId", "properties")
DATASET_TYPES: Final = ("INTERACTIONS", "ITEMS", "USERS", "ACTIONS", "ACTION_INTERACTIONS")


class UseDefault(enum.Enum):
    """Marks "use the emulator's default quota" where ``None`` already means "unlimited"."""

    QUOTA = "default"


USE_DEFAULT: Final = UseDefault.QUOTA
QuotaSetting = float | None | Literal[UseDefault.QUOTA]


@dataclass(slots=True)
class Tracker:
    """An event tracker. ``quota_per_second`` ``None`` means unlimited; ``burst`` defaults to the quota."""

    tracking_id: str
    name: str
    arn: str
    dataset_group_arn: str
    quota_per_second: float | None
    burst: float | None = None
    created_at: float = field(default_factory=time.time)
    status: str = "ACTIVE"

    def to_json(self) -> dict[str, Any]:
        """The admin API / persistence form (camelCase keys)."""
        return {
            "trackingId": self.tracking_id,
            "name": self.name,
            "eventTrackerArn": self.arn,
            "datasetGroupArn": self.dataset_group_arn,
            "quotaPerSecond": self.quota_per_second,
            "burst": self.burst,
            "createdAt": self.created_at,
            "status": self.status,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Tracker:
        """Inverse of :meth:`to_json`."""
        return cls(
            tracking_id=str(obj["trackingId"]),
            name=str(obj["name"]),
            arn=str(obj["eventTrackerArn"]),
            dataset_group_arn=str(obj["datasetGroupArn"]),
            quota_per_second=obj.get("quotaPerSecond"),
            burst=obj.get("burst"),
            created_at=float(obj.get("createdAt") or time.time()),
            status=str(obj.get("status") or "ACTIVE"),
        )


@dataclass(slots=True)
class Dataset:
    """A dataset PutItems/PutUsers can write to (its type is ITEMS, USERS, ...)."""

    arn: str
    dataset_group_arn: str
    dataset_type: str
    name: str
    created_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """The admin API / persistence form."""
        return {
            "datasetArn": self.arn,
            "datasetGroupArn": self.dataset_group_arn,
            "datasetType": self.dataset_type,
            "name": self.name,
            "createdAt": self.created_at,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Dataset:
        """Inverse of :meth:`to_json`."""
        return cls(
            arn=str(obj["datasetArn"]),
            dataset_group_arn=str(obj["datasetGroupArn"]),
            dataset_type=str(obj["datasetType"]),
            name=str(obj["name"]),
            created_at=float(obj.get("createdAt") or time.time()),
        )


class RecordLog:
    """Append-only rows (tuples in ``fields`` order) with increasing ``seq`` and non-decreasing time.

    Column 0 is ``seq``, column 1 is ``receivedAt`` (epoch seconds); ``key_index`` is the column the
    listing filters on (``trackingId`` or ``datasetArn``).
    """

    def __init__(self, name: str, fields: tuple[str, ...], key_field: str) -> None:
        self.name = name
        self.fields = fields
        self.key_index = fields.index(key_field)
        self.rows: list[tuple[Any, ...]] = []
        self.next_seq = 1
        self.last_time = 0.0

    def stamp(self, now: float) -> tuple[int, float]:
        """Reserve a seq and a receive time (never before the previous one) for one new row."""
        seq = self.next_seq
        self.next_seq += 1
        self.last_time = max(self.last_time, now)
        return seq, self.last_time

    def load(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Append stored rows (dict form), keeping seq and time ordered."""
        for obj in objects:
            row = tuple(obj.get(name) for name in self.fields)
            if not isinstance(row[0], int) or not isinstance(row[1], int | float):
                continue
            if self.rows and (row[0] <= self.rows[-1][0] or row[1] < self.rows[-1][1]):
                continue
            self.rows.append(row)
        if self.rows:
            self.next_seq = self.rows[-1][0] + 1
            self.last_time = float(self.rows[-1][1])

    def clear(self) -> None:
        """Forget every row (seq numbers keep increasing)."""
        self.rows = []

    def query(
        self,
        *,
        key: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> tuple[list[tuple[Any, ...]], bool]:
        """Rows with ``seq > after``, ``since <= receivedAt < until`` and the given key, oldest first.

        Returns (rows, truncated): at most ``limit`` rows, and whether more matched.
        """
        rows = self.rows
        start = 0
        if after is not None:
            start = bisect_right(rows, after, key=itemgetter(0))
        if since is not None:
            start = max(start, bisect_left(rows, since, key=itemgetter(1)))
        stop = len(rows) if until is None else bisect_left(rows, until, key=itemgetter(1))
        if key is None:
            if limit is not None and stop - start > limit:
                return rows[start : start + limit], True
            return rows[start:stop], False
        index = self.key_index
        selected: list[tuple[Any, ...]] = []
        for position in range(start, stop):
            row = rows[position]
            if row[index] == key:
                if limit is not None and len(selected) >= limit:
                    return selected, True
                selected.append(row)
        return selected, False


class Stats:
    """Calls per operation and outcome, plus counts derived from the accepted records."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, int]] = {}
        self.event_ids: set[str] = set()
        self.events_without_id = 0
        self.events_by_tracker: dict[str, int] = {}
        self.started_at = time.time()

    def count(self, operation: str, outcome: str) -> None:
        """Count one call of ``operation`` that ended with ``outcome``."""
        by_outcome = self.calls.get(operation)
        if by_outcome is None:
            by_outcome = self.calls[operation] = dict.fromkeys(OUTCOMES, 0)
        by_outcome[outcome] = by_outcome.get(outcome, 0) + 1

    def note_events(self, tracking_id: str, event_ids: Iterable[str | None]) -> None:
        """Account for accepted events of one tracker."""
        count = 0
        for event_id in event_ids:
            count += 1
            if event_id is None:
                self.events_without_id += 1
            else:
                self.event_ids.add(event_id)
        self.events_by_tracker[tracking_id] = self.events_by_tracker.get(tracking_id, 0) + count

    def clear_records(self) -> None:
        """Forget the record-derived counts (the call counts stay)."""
        self.event_ids = set()
        self.events_without_id = 0
        self.events_by_tracker = {}


class Store:
    """Trackers, datasets, quotas, accepted records and stats of one emulator.

    ``default_quota`` applies to trackers created without a quota (``None`` or 0: unlimited).
    ``clock`` is monotonic (quotas), ``wall`` gives receive times (epoch seconds).
    """

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        account_id: str = "000000000000",
        default_quota: float | None = DEFAULT_PUT_EVENTS_PER_SECOND,
        persistence: Persistence | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.region = region
        self.account_id = account_id
        self.default_quota = default_quota or None
        self.persistence = persistence
        self.clock = clock
        self.wall = wall
        self.trackers: dict[str, Tracker] = {}
        self.datasets: dict[str, Dataset] = {}
        self.buckets: dict[str, TokenBucket] = {}
        self.events = RecordLog("events", EVENT_FIELDS, "trackingId")
        self.items = RecordLog("items", ITEM_FIELDS, "datasetArn")
        self.users = RecordLog("users", USER_FIELDS, "datasetArn")
        self.stats = Stats()
        #: Trackers given at start-up (CLI), restored by :meth:`reset`: (trackingId, quota).
        self.startup_trackers: list[tuple[str, QuotaSetting]] = []
        #: Called with (tracker, request) after a PutEvents call is accepted (the control plane's models).
        self.event_listeners: list[Callable[[Tracker, PutEventsInput], None]] = []
        #: Called with (log name ``items``/``users``, request) after PutItems/PutUsers is accepted.
        self.record_listeners: list[Callable[[str, PutRecordsInput], None]] = []
        #: Called with the ``trackers`` flag of :meth:`reset` (the control plane forgets its resources).
        self.reset_listeners: list[Callable[[bool], None]] = []

    # ----------------------------------------------------------------------------------------- arns

    def arn(self, resource: str) -> str:
        """``arn:aws:personalize:REGION:ACCOUNT:<resource>``."""
        return f"arn:aws:personalize:{self.region}:{self.account_id}:{resource}"

    # ------------------------------------------------------------------------------------- trackers

    def put_tracker(
        self,
        tracking_id: str,
        *,
        quota_per_second: QuotaSetting = USE_DEFAULT,
        burst: float | None = None,
        name: str | None = None,
        dataset_group_arn: str | None = None,
        create_datasets: bool = True,
    ) -> tuple[Tracker, bool]:
        """Create or replace a tracker; return (tracker, created).

        The dataset group defaults to ``dataset-group/<name>``; with ``create_datasets`` its INTERACTIONS,
        ITEMS and USERS datasets are registered too, so PutItems/PutUsers can address them.
        """
        if not tracking_id or len(tracking_id) > 256:
            raise ValueError("trackingId must have 1..256 characters")
        quota = self.default_quota if quota_per_second is USE_DEFAULT else quota_per_second
        if quota is not None and quota < 0:
            raise ValueError("quotaPerSecond must be >= 0 (0 or null: unlimited)")
        if burst is not None and burst < 1:
            raise ValueError("burst must be >= 1")
        existing = self.trackers.get(tracking_id)
        tracker_name = name or (existing.name if existing else tracking_id)
        group_arn = dataset_group_arn or (
            existing.dataset_group_arn if existing else self.arn(f"dataset-group/{tracker_name}")
        )
        tracker = Tracker(
            tracking_id=tracking_id,
            name=tracker_name,
            arn=self.arn(f"event-tracker/{tracker_name}"),
            dataset_group_arn=group_arn,
            quota_per_second=quota or None,
            burst=burst,
        )
        if existing is not None:
            tracker.created_at = existing.created_at
        self.trackers[tracking_id] = tracker
        self.buckets[tracking_id] = TokenBucket(tracker.quota_per_second, burst, self.clock())
        if create_datasets:
            for dataset_type in ("INTERACTIONS", "ITEMS", "USERS"):
                arn = self.dataset_arn(group_arn, dataset_type)
                self.put_dataset(arn, group_arn, dataset_type, save=False)
            self._save_datasets()
        self._save_trackers()
        return tracker, existing is None

    def delete_tracker(self, tracking_id: str) -> bool:
        """Delete a tracker (its datasets and records stay); return whether it existed."""
        existed = self.trackers.pop(tracking_id, None) is not None
        self.buckets.pop(tracking_id, None)
        if existed:
            self._save_trackers()
        return existed

    def require_tracker(self, tracking_id: str) -> Tracker:
        """The tracker, or ``ResourceNotFoundError``."""
        tracker = self.trackers.get(tracking_id)
        if tracker is None:
            raise ResourceNotFoundError(f"Event tracker with trackingId {tracking_id!r} does not exist")
        return tracker

    def admit(self, tracking_id: str) -> None:
        """Take one call from the tracker's quota, or raise ``ThrottlingError``."""
        bucket = self.buckets.get(tracking_id)
        if bucket is not None and not bucket.try_acquire(self.clock()):
            raise ThrottlingError(f"Rate exceeded for tracker {tracking_id!r}")

    # ------------------------------------------------------------------------------------- datasets

    def dataset_arn(self, dataset_group_arn: str, dataset_type: str) -> str:
        """The ARN Personalize gives the dataset of ``dataset_type`` in a dataset group."""
        group_name = dataset_group_arn.rsplit("/", 1)[-1]
        return self.arn(f"dataset/{group_name}/{dataset_type}")

    def put_dataset(
        self,
        arn: str,
        dataset_group_arn: str | None = None,
        dataset_type: str | None = None,
        *,
        save: bool = True,
    ) -> Dataset:
        """Register a dataset (idempotent). The type defaults to the ARN's last path segment."""
        existing = self.datasets.get(arn)
        if existing is not None:
            return existing
        parts = arn.split(":", 5)
        resource = parts[5] if len(parts) == 6 else ""
        segments = resource.split("/")
        kind = dataset_type or (segments[-1] if len(segments) == 3 else "")
        if kind not in DATASET_TYPES:
            raise ValueError(f"datasetType must be one of {list(DATASET_TYPES)}, got {kind!r}")
        group_arn = dataset_group_arn or (self.arn(f"dataset-group/{segments[1]}") if len(segments) == 3 else "")
        if not group_arn:
            raise ValueError("datasetGroupArn is required unless the ARN is of the form dataset/GROUP/TYPE")
        dataset = Dataset(arn=arn, dataset_group_arn=group_arn, dataset_type=kind, name=segments[-1])
        self.datasets[arn] = dataset
        if save:
            self._save_datasets()
        return dataset

    def delete_dataset(self, arn: str) -> bool:
        """Forget a dataset; return whether it existed."""
        existed = self.datasets.pop(arn, None) is not None
        if existed:
            self._save_datasets()
        return existed

    def require_dataset(self, arn: str, dataset_type: str) -> Dataset:
        """The dataset; ``ResourceNotFoundError`` if unknown, ``InvalidInputError`` if of another type."""
        dataset = self.datasets.get(arn)
        if dataset is None:
            raise ResourceNotFoundError(f"Dataset {arn!r} does not exist")
        if dataset.dataset_type != dataset_type:
            raise InvalidInputError(f"Dataset {arn!r} is of type {dataset.dataset_type}, not {dataset_type}")
        return dataset

    # -------------------------------------------------------------------------------------- records

    def accept_events(self, request: PutEventsInput) -> None:
        """Store the events of an accepted PutEvents call."""
        log = self.events
        now = self.wall()
        rows: list[tuple[Any, ...]] = []
        for event in request.events:
            seq, received_at = log.stamp(now)
            rows.append(
                (
                    seq,
                    received_at,
                    request.tracking_id,
                    request.user_id,
                    request.session_id,
                    event.event_id,
                    event.event_type,
                    event.event_value,
                    event.item_id,
                    event.sent_at,
                    event.recommendation_id,
                    event.impression,
                    event.properties,
                    event.metric_attribution,
                )
            )
        log.rows.extend(rows)
        self.stats.note_events(request.tracking_id, (event.event_id for event in request.events))
        if self.persistence is not None:
            self.persistence.append(log.name, log.fields, rows)
        if self.event_listeners:
            tracker = self.trackers.get(request.tracking_id)
            if tracker is not None:
                for listener in self.event_listeners:
                    listener(tracker, request)

    def accept_records(self, log: RecordLog, request: PutRecordsInput) -> None:
        """Store the items or users of an accepted PutItems/PutUsers call (``log``: items or users)."""
        now = self.wall()
        rows: list[tuple[Any, ...]] = []
        for record_id, properties in request.records:
            seq, received_at = log.stamp(now)
            rows.append((seq, received_at, request.dataset_arn, record_id, properties))
        log.rows.extend(rows)
        if self.persistence is not None:
            self.persistence.append(log.name, log.fields, rows)
        for listener in self.record_listeners:
            listener(log.name, request)

    def clear_records(self) -> None:
        """Forget every accepted event, item and user (memory and disk) and the counts derived from them."""
        for log in (self.events, self.items, self.users):
            log.clear()
            if self.persistence is not None:
                self.persistence.truncate(log.name)
        self.stats.clear_records()

    def reset(self, *, trackers: bool = True) -> None:
        """Clear records and stats; with ``trackers``, restore the start-up trackers and no others."""
        self.clear_records()
        self.stats.calls = {}
        for listener in self.reset_listeners:
            listener(trackers)
        if trackers:
            self.trackers.clear()
            self.buckets.clear()
            self.datasets.clear()
            for tracking_id, quota in self.startup_trackers:
                self.put_tracker(tracking_id, quota_per_second=quota)
            self._save_trackers()
            self._save_datasets()

    # ---------------------------------------------------------------------------------- persistence

    def load(self) -> None:
        """Reload resources and records from the data directory (no-op without persistence)."""
        persistence = self.persistence
        if persistence is None:
            return
        for obj in persistence.read("datasets"):
            dataset = Dataset.from_json(obj)
            self.datasets[dataset.arn] = dataset
        now = self.clock()
        for obj in persistence.read("trackers"):
            tracker = Tracker.from_json(obj)
            self.trackers[tracker.tracking_id] = tracker
            self.buckets[tracker.tracking_id] = TokenBucket(tracker.quota_per_second, tracker.burst, now)
        self.events.load(persistence.read("events"))
        self.items.load(persistence.read("items"))
        self.users.load(persistence.read("users"))
        by_tracker: dict[str, list[str | None]] = {}
        event_id_index = EVENT_FIELDS.index("eventId")
        for row in self.events.rows:
            by_tracker.setdefault(row[2], []).append(row[event_id_index])
        for tracking_id, event_ids in by_tracker.items():
            self.stats.note_events(tracking_id, event_ids)
        logger.info(
            "state loaded",
            extra={
                "dataDir": str(persistence.data_dir),
                "trackers": len(self.trackers),
                "events": len(self.events.rows),
                "items": len(self.items.rows),
                "users": len(self.users.rows),
            },
        )

    def close(self) -> None:
        """Close the data files."""
        if self.persistence is not None:
            self.persistence.close()

    def _save_trackers(self) -> None:
        if self.persistence is not None:
            self.persistence.rewrite("trackers", (tracker.to_json() for tracker in self.trackers.values()))

    def _save_datasets(self) -> None:
        if self.persistence is not None:
            self.persistence.rewrite("datasets", (dataset.to_json() for dataset in self.datasets.values()))

    # ------------------------------------------------------------------------------------- snapshot

    def stats_snapshot(self) -> dict[str, Any]:
        """The ``GET /_emulator/stats`` body."""
        stats = self.stats
        return {
            "calls": {operation: dict(outcomes) for operation, outcomes in stats.calls.items()},
            "eventsAccepted": len(self.events.rows),
            "distinctEventIds": len(stats.event_ids),
            "eventsWithoutEventId": stats.events_without_id,
            "eventsByTracker": dict(stats.events_by_tracker),
            "itemsAccepted": len(self.items.rows),
            "usersAccepted": len(self.users.rows),
            "trackers": len(self.trackers),
            "uptimeSeconds": time.time() - stats.started_at,
        }


def project(rows: Sequence[tuple[Any, ...]], fields: Sequence[str], wanted: Sequence[str]) -> list[list[Any]]:
    """Keep only the ``wanted`` columns of ``rows`` (compact listing with ``fields=``)."""
    indexes = [fields.index(name) for name in wanted]
    if len(indexes) == 1:
        only = indexes[0]
        return [[row[only]] for row in rows]
    getter = itemgetter(*indexes)
    return [list(getter(row)) for row in rows]
