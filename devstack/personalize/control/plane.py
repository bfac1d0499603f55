"""The control plane's state and machinery: resource tables, status progression, listing, live data.

Resources move through their statuses in background tasks on the event loop, one step every
``step_seconds`` (default 0.2 s). With ``step_seconds`` 0 (``--step-seconds 0`` or
``POST /_emulator/settings {"stepSeconds": 0}``) a create or delete call answers only once the
resource is ACTIVE, FAILED or gone, so a Describe right after it sees the outcome.

Blocking work (S3, training) runs in worker threads on snapshots; everything else, models included,
is touched from the event loop only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

from botocore.model import ListShape, StructureShape

from devstack.personalize.control.data import GroupData
from devstack.personalize.control.resources import (
    ACTIVE,
    CREATE_FAILED,
    CREATE_IN_PROGRESS,
    DELETE_IN_PROGRESS,
    DELETE_PENDING,
    DELETING,
    RESOURCE_TYPES,
    Resource,
    SolutionVersion,
)
from devstack.personalize.errors import (
    InvalidInputError,
    InvalidNextTokenError,
    ResourceAlreadyExistsError,
    ResourceInUseError,
    ResourceNotFoundError,
)
from devstack.personalize.recipes import Interaction
from devstack.personalize.s3io import S3Gateway
from devstack.personalize.shapes import CONTROL_SERVICE, operation_model, project
from devstack.personalize.state import Store, Tracker
from devstack.personalize.validation import PutEventsInput, PutRecordsInput

logger = logging.getLogger("devstack.personalize.control")

R = TypeVar("R", bound=Resource)
T = TypeVar("T")
DEFAULT_PAGE_SIZE: Final = 100
DEFAULT_STEP_SECONDS: Final = 0.2
DEFAULT_AUTO_TRAINING_DELAY_SECONDS: Final = 3600.0
DEFAULT_AUTO_TRAINING_DAY_SECONDS: Final = 86400.0
#: Readable names of resource types, for messages.
LABELS: Final[Mapping[str, str]] = {
    "schema": "Schema",
    "dataset-group": "Dataset group",
    "dataset": "Dataset",
    "dataset-import-job": "Dataset import job",
    "solution": "Solution",
    "solution-version": "Solution version",
    "campaign": "Campaign",
    "event-tracker": "Event tracker",
    "filter": "Filter",
    "batch-inference-job": "Batch inference job",
}


class JobFailedError(Exception):
    """The work behind a resource failed: the message becomes its ``failureReason`` (CREATE FAILED)."""


@dataclass(slots=True)
class ControlSettings:
    """How fast resources progress and how often automatic training runs.

    ``step_seconds``: the time between status steps (0: instantaneous, see the module).
    ``auto_training_delay_seconds``: from ACTIVE to a solution's first automatic training (real: 1 h).
    ``auto_training_day_seconds``: the length of a "day" in ``rate(N days)`` schedules (real: 86400).
    """

    step_seconds: float = DEFAULT_STEP_SECONDS
    auto_training_delay_seconds: float = DEFAULT_AUTO_TRAINING_DELAY_SECONDS
    auto_training_day_seconds: float = DEFAULT_AUTO_TRAINING_DAY_SECONDS

    def to_json(self) -> dict[str, float]:
        """The admin API form."""
        return {
            "stepSeconds": self.step_seconds,
            "autoTrainingDelaySeconds": self.auto_training_delay_seconds,
            "autoTrainingDaySeconds": self.auto_training_day_seconds,
        }

    def update(self, body: Mapping[str, Any]) -> None:
        """Apply an admin ``POST /_emulator/settings`` body; raise ``ValueError`` naming a bad key."""
        names = {
            "stepSeconds": "step_seconds",
            "autoTrainingDelaySeconds": "auto_training_delay_seconds",
            "autoTrainingDaySeconds": "auto_training_day_seconds",
        }
        unknown = set(body) - set(names)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(names)}")
        values: dict[str, float] = {}
        for key, value in body.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{key!r} must be a number >= 0, got {value!r}")
            values[names[key]] = float(value)
        if values.get("auto_training_day_seconds", 1.0) <= 0:
            raise ValueError("'autoTrainingDaySeconds' must be > 0")
        for attribute, value in values.items():
            setattr(self, attribute, value)


class ControlPlane:
    """Every control-plane resource of one emulator and the data of its dataset groups."""

    def __init__(self, store: Store, s3: S3Gateway, settings: ControlSettings | None = None) -> None:
        self.store = store
        self.s3 = s3
        self.settings = settings or ControlSettings()
        self.tables: dict[type[Resource], dict[str, Resource]] = {kind: {} for kind in RESOURCE_TYPES}
        self.groups: dict[str, GroupData] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        store.event_listeners.append(self.on_events)
        store.record_listeners.append(self.on_records)
        store.reset_listeners.append(self.on_reset)

    # ------------------------------------------------------------------------------------ tables

    def arn(self, resource: str) -> str:
        """``arn:aws:personalize:REGION:ACCOUNT:<resource>``."""
        return self.store.arn(resource)

    def table(self, kind: type[R]) -> dict[str, R]:
        """The resources of type ``kind`` by ARN, in creation order."""
        return cast("dict[str, R]", self.tables[kind])

    def add(self, resource: Resource) -> None:
        """Register a new resource, or raise ``ResourceAlreadyExistsError``."""
        table = self.tables[type(resource)]
        if resource.arn in table:
            raise ResourceAlreadyExistsError(f"Another resource with Arn {resource.arn} already exists.")
        table[resource.arn] = resource

    def find(self, kind: type[R], arn: str | None) -> R | None:
        """The resource of type ``kind`` with ``arn``, or ``None``."""
        if arn is None:
            return None
        return cast("R | None", self.tables[kind].get(arn))

    def get(self, kind: type[R], arn: str) -> R:
        """The resource, or ``ResourceNotFoundError`` naming it."""
        found = self.find(kind, arn)
        if found is None:
            raise ResourceNotFoundError(f"Could not find resource of type {kind.kind}: {arn}")
        return found

    def require_active(self, resource: Resource) -> None:
        """Raise unless ``resource`` is ACTIVE: in use while in flight or deleting, invalid when failed."""
        if resource.active:
            return
        label = LABELS.get(resource.kind, resource.kind)
        if resource.status == CREATE_FAILED:
            raise InvalidInputError(f"{label} {resource.arn} is CREATE FAILED: {resource.failure_reason}")
        raise ResourceInUseError(f"{label} {resource.arn} is {resource.status}, not ACTIVE")

    def group_data(self, dataset_group_arn: str) -> GroupData:
        """The rows of a dataset group (created empty on first use)."""
        data = self.groups.get(dataset_group_arn)
        if data is None:
            data = self.groups[dataset_group_arn] = GroupData()
        return data

    # --------------------------------------------------------------------------------- lifecycle

    @property
    def instant(self) -> bool:
        """Whether status changes happen at once (``step_seconds`` 0)."""
        return self.settings.step_seconds <= 0

    async def pause(self) -> None:
        """Wait one status step."""
        if self.settings.step_seconds > 0:
            await asyncio.sleep(self.settings.step_seconds)

    def spawn(self, coroutine: Awaitable[None], name: str) -> asyncio.Task[None]:
        """Run ``coroutine`` in the background, keeping a reference until it ends."""

        async def run() -> None:
            await coroutine

        task = asyncio.get_running_loop().create_task(run(), name=name)
        self.tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task failed", exc_info=task.exception(), extra={"task": task.get_name()})

    def launch(
        self,
        resource: Resource,
        work: Callable[[], Awaitable[None]] | None = None,
        on_active: Callable[[], None] | None = None,
    ) -> asyncio.Task[None]:
        """Move a new resource to ACTIVE (running ``work`` while IN_PROGRESS) or to CREATE FAILED."""
        task = self.spawn(self._progress(resource, work, on_active), f"create {resource.arn}")
        resource.task = task
        return task

    async def settle(self, task: asyncio.Task[None]) -> None:
        """In instant mode, wait for ``task`` before answering (it goes on if the caller goes away)."""
        if self.instant and not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise

    async def _progress(
        self,
        resource: Resource,
        work: Callable[[], Awaitable[None]] | None,
        on_active: Callable[[], None] | None,
    ) -> None:
        await self.pause()
        resource.set_status(CREATE_IN_PROGRESS)
        await self.pause()
        try:
            if work is not None:
                await work()
        except JobFailedError as failure:
            resource.set_status(CREATE_FAILED, str(failure))
            logger.info("creation failed", extra={"arn": resource.arn, "reason": str(failure)})
            return
        except Exception as exc:
            logger.exception("creation failed in the emulator", extra={"arn": resource.arn})
            resource.set_status(CREATE_FAILED, f"Internal error in the Personalize emulator: {exc}")
            return
        resource.set_status(ACTIVE)
        logger.info("resource active", extra={"arn": resource.arn})
        if on_active is not None:
            on_active()

    def delete(self, resource: Resource, on_deleted: Callable[[], None] | None = None) -> asyncio.Task[None]:
        """Start deleting ``resource``: DELETE PENDING -> DELETE IN_PROGRESS -> gone."""
        if resource.status in DELETING:
            raise ResourceInUseError(f"{LABELS.get(resource.kind, resource.kind)} {resource.arn} is {resource.status}")
        if resource.task is not None and not resource.task.done():
            resource.task.cancel()
        resource.set_status(DELETE_PENDING)

        async def progress() -> None:
            await self.pause()
            resource.set_status(DELETE_IN_PROGRESS)
            await self.pause()
            self.tables[type(resource)].pop(resource.arn, None)
            if on_deleted is not None:
                on_deleted()
            logger.info("resource deleted", extra={"arn": resource.arn})

        task = self.spawn(progress(), f"delete {resource.arn}")
        resource.task = task
        return task

    def cancel_all(self) -> None:
        """Cancel every background task (reset, shutdown)."""
        for task in list(self.tasks):
            task.cancel()
        self.tasks.clear()

    # ----------------------------------------------------------------------------------- listing

    def page(
        self, operation: str, member: str, resources: Iterable[Resource], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A List answer: summaries (the describe objects projected onto the list's member shape)."""
        model = operation_model(CONTROL_SERVICE, operation)
        assert model is not None and isinstance(model.output_shape, StructureShape)
        listing = model.output_shape.members[member]
        assert isinstance(listing, ListShape)
        summary_shape = listing.member
        chunk, token = paginate(list(resources), body)
        return {member: [project(summary_shape, resource.describe()) for resource in chunk], "nextToken": token}

    # ---------------------------------------------------------------------------------- live data

    def live_versions(self, dataset_group_arn: str) -> list[SolutionVersion]:
        """The group's solution versions that hold a model (ACTIVE, or trained and being replayed)."""
        return [
            version
            for version in self.table(SolutionVersion).values()
            if version.model is not None and version.solution.dataset_group_arn == dataset_group_arn
        ]

    def on_events(self, tracker: Tracker, request: PutEventsInput) -> None:
        """PutEvents accepted for ``tracker``: feed its dataset group and the group's realtime models."""
        data = self.groups.get(tracker.dataset_group_arn)
        if data is None:
            return
        user_id = request.user_id or request.session_id
        versions = self.live_versions(tracker.dataset_group_arn)
        for event in request.events:
            if not event.item_id:
                continue
            interaction = Interaction(user_id, event.item_id, event.sent_at, event.event_type, event.event_value)
            data.add_streamed(interaction)
            for version in versions:
                model = version.model
                solution = version.solution
                if (
                    model is not None
                    and model.realtime
                    and accepts(solution.solution_config, solution.event_type, interaction)
                ):
                    model.observe(interaction)

    def on_records(self, log_name: str, request: PutRecordsInput) -> None:
        """PutItems/PutUsers accepted: merge the records into the dataset's group."""
        dataset = self.store.datasets.get(request.dataset_arn)
        if dataset is None:
            return
        data = self.groups.get(dataset.dataset_group_arn)
        if data is not None:
            data.put_records("ITEMS" if log_name == "items" else "USERS", request.records)

    def on_reset(self, trackers: bool) -> None:
        """The admin reset: with ``trackers`` (the default), forget every control-plane resource."""
        if not trackers:
            return
        self.cancel_all()
        for table in self.tables.values():
            table.clear()
        self.groups.clear()

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every resource's describe object by kind (the admin listing)."""
        return {kind.kind: [resource.describe() for resource in self.tables[kind].values()] for kind in RESOURCE_TYPES}


def accepts(solution_config: Mapping[str, Any], event_type: str | None, interaction: Interaction) -> bool:
    """Whether a solution trains on ``interaction``: its ``eventType``, ``eventValueThreshold`` and
    ``eventsConfig`` (per event type thresholds) allow it."""
    if event_type and interaction.event_type != event_type:
        return False
    threshold = solution_config.get("eventValueThreshold")
    if threshold is not None and (interaction.event_value is None or interaction.event_value < float(threshold)):
        return False
    events_config = solution_config.get("eventsConfig")
    if events_config:
        parameters = {entry.get("eventType"): entry for entry in events_config.get("eventParametersList", [])}
        entry = parameters.get(interaction.event_type)
        if entry is None:
            return False
        limit = entry.get("eventValueThreshold")
        if limit is not None and (interaction.event_value is None or interaction.event_value < float(limit)):
            return False
    return True


def paginate(everything: Sequence[T], body: Mapping[str, Any]) -> tuple[Sequence[T], str | None]:
    """The page of ``everything`` a List call asks for (``nextToken``, ``maxResults``) and the next token."""
    start = decode_token(body.get("nextToken"))
    if start > len(everything):
        raise InvalidNextTokenError()
    size = int(body.get("maxResults") or DEFAULT_PAGE_SIZE)
    return everything[start : start + size], encode_token(start + size) if start + size < len(everything) else None


def encode_token(offset: int) -> str:
    """An opaque ``nextToken`` for position ``offset``."""
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def decode_token(token: object) -> int:
    """The position a ``nextToken`` stands for (0 without one); ``InvalidNextTokenError`` if forged."""
    if token is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(str(token).encode()).decode()
        label, _, number = text.partition(":")
        if label != "offset":
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidNextTokenError() from None


__all__ = ["ControlPlane", "ControlSettings", "JobFailedError", "accepts", "paginate"]
