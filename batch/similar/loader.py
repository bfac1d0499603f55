"""Load batch inference answers into the similar-games table, never replacing a newer model's rows.

BatchWriteItem takes no conditions, and a conditional PutItem per game would cost one request per item
(the benchmark's baseline). So the rule is kept by three steps, each cheap:

1. **Claim the table** with one conditional PutItem on a marker item (``modelVersion <= mine``). If a
   newer model holds it, this load writes nothing: every answer counts as skipped-as-older. The marker
   never goes back, so two loads one after the other, in either order, leave the newer model's rows.
2. **Read before each write.** Before every BatchWriteItem (and before every retry of its unprocessed
   items) one consistent BatchGetItem reads the marker and the 25 rows' ``modelVersion``. A row already
   holding a newer model is skipped; if the marker has moved to a newer model, this load stops writing
   (the rest counts as skipped-as-older). A newer load claiming the table while an older one runs thus
   stops the older one within one request.
3. **Repair after a race.** What is left is one request's window: an older load read its rows, a newer
   load wrote them, and then the older load's write landed. So when a load claims the marker from another
   model whose loader was alive recently (the marker's heartbeat is newer than ``race_window`` seconds),
   it waits until ``fence`` seconds after its claim (longer than any single request may take) and then
   reads its rows again, rewriting any that hold an older model. The older load cannot write again
   after the claim without first reading the marker (step 2), so after the repair pass the newer rows
   stand.

Writes go ``concurrency`` requests at a time through a thread pool, at most ``2 * concurrency`` batches
in flight, so memory stays bounded however large the output. Unprocessed items are retried with
exponential backoff and full jitter, at most ``max_attempts`` times, then the load fails with
:class:`LoadFailedError` (what was written stays written; a re-run of the same model rewrites it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Final

from botocore.exceptions import BotoCoreError, ClientError

from batch.similar.backoff import Backoff
from batch.similar.errors import LoadFailedError
from batch.similar.output import BadLine, OutputReport, SimilarGames
from batch.similar.table import MARKER_ID, WRITE_BATCH, SimilarGamesTable

#: Called with (answers handled so far, items written so far).
LoadProgress = Callable[[int, int], None]
#: Streams the answers, counting bad lines into the report; called again for the repair pass.
AnswerSource = Callable[[OutputReport], Iterator[SimilarGames]]

HEARTBEAT_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True)
class LoaderOptions:
    concurrency: int = 4
    max_attempts: int = 8
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.05, cap=5.0))
    #: A previous model's loader seen alive this recently may still be writing: repair after the load.
    race_window: float = 900.0
    #: The repair pass starts no earlier than this many seconds after the claim.
    fence: float = 60.0
    heartbeat: float = HEARTBEAT_SECONDS

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_attempts < 1 or self.race_window < 0 or self.fence < 0:
            raise ValueError("concurrency and max_attempts must be >= 1, race_window and fence >= 0")


@dataclass(slots=True)
class LoadSummary:
    """What one load did."""

    table: str
    model_version: str
    answers: int = 0
    written: int = 0
    skipped_older: int = 0
    duplicates: int = 0
    write_requests: int = 0
    read_requests: int = 0
    unprocessed_retries: int = 0
    retried_items: int = 0
    repaired: int = 0
    repair_pass: bool = False
    superseded_by: str | None = None
    created_table: bool = False
    seconds: float = 0.0
    output: OutputReport = field(default_factory=OutputReport)

    @property
    def items_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "table": self.table,
            "modelVersion": self.model_version,
            "files": self.output.files,
            "lines": self.output.lines,
            "answers": self.answers,
            "written": self.written,
            "skippedOlder": self.skipped_older,
            "duplicates": self.duplicates,
            "errorLines": self.output.errors,
            "malformedLines": self.output.malformed,
            "writeRequests": self.write_requests,
            "readRequests": self.read_requests,
            "unprocessedRetries": self.unprocessed_retries,
            "retriedItems": self.retried_items,
            "repaired": self.repaired,
            "supersededBy": self.superseded_by,
            "seconds": round(self.seconds, 3),
            "itemsPerSecond": round(self.items_per_second, 1),
        }

    def lines(self) -> list[str]:
        def examples(bad: list[BadLine]) -> list[str]:
            return [f"    {example}" for example in bad]

        out = self.output
        lines = [
            f"table:            {self.table}{' (created)' if self.created_table else ''}",
            f"model version:    {self.model_version}",
            f"output:           {out.files:,} files, {out.lines:,} lines, {self.answers:,} answers",
            f"written:          {self.written:,} items in {self.write_requests:,} BatchWriteItem requests"
            f" ({self.read_requests:,} BatchGetItem)",
            f"skipped as older: {self.skipped_older:,}"
            + (f" (superseded by model {self.superseded_by})" if self.superseded_by else ""),
            f"unprocessed:      {self.unprocessed_retries:,} retries of {self.retried_items:,} items",
        ]
        if self.duplicates:
            lines.append(f"duplicate games:  {self.duplicates:,} (the last answer kept)")
        if self.repair_pass:
            lines.append(f"repair pass:      {self.repaired:,} rows rewritten after a concurrent older load")
        lines.append(f"error lines:      {out.errors:,}")
        lines.extend(examples(out.error_examples))
        lines.append(f"malformed lines:  {out.malformed:,}")
        lines.extend(examples(out.malformed_examples))
        lines.append(f"took:             {self.seconds:.1f} s ({self.items_per_second:,.0f} items/s)")
        return lines


@dataclass(slots=True)
class _BatchResult:
    written: int = 0
    skipped_older: int = 0
    write_requests: int = 0
    read_requests: int = 0
    unprocessed_retries: int = 0
    retried_items: int = 0
    superseded_by: str | None = None


def _batches(answers: Iterable[SimilarGames], summary: LoadSummary | None) -> Iterator[list[SimilarGames]]:
    """Batches of up to 25 distinct games (BatchWriteItem refuses a key twice in one request)."""
    batch: dict[str, SimilarGames] = {}
    for answer in answers:
        if answer.game_id == MARKER_ID:
            continue
        if answer.game_id in batch and summary is not None:
            summary.duplicates += 1
        batch[answer.game_id] = answer
        if len(batch) == WRITE_BATCH:
            yield list(batch.values())
            batch = {}
    if batch:
        yield list(batch.values())


class SimilarGamesLoader:
    """Writes one model's answers into the table; see the module docstring for the never-older rule."""

    def __init__(
        self,
        table: SimilarGamesTable,
        options: LoaderOptions | None = None,
        *,
        progress: LoadProgress | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table = table
        self.options = options or LoaderOptions()
        self.progress = progress
        self.sleep = sleep
        self._stop = threading.Event()

    def load(self, source: AnswerSource, *, create_table: bool = True) -> LoadSummary:
        """Load every answer ``source`` yields; raises LoadFailedError (or ConfigurationError for the table)."""
        started = time.monotonic()
        self._stop.clear()
        summary = LoadSummary(self.table.name, self.table.model.key)
        try:
            summary.created_table = self.table.ensure(create=create_table)
            claim = self.table.claim()
            claimed_at = time.monotonic()
            if not claim.owned:
                summary.superseded_by = claim.current.model_version if claim.current else None
                for _answer in source(summary.output):
                    summary.answers += 1
                    summary.skipped_older += 1
            else:
                self._pass(source(summary.output), summary, repair=False)
                previous = claim.previous
                if (
                    previous is not None
                    and previous.model_version != self.table.model.key
                    and time.time() - previous.heartbeat_at <= self.options.race_window
                    and summary.superseded_by is None
                ):
                    summary.repair_pass = True
                    wait_for = claimed_at + self.options.fence - time.monotonic()
                    if wait_for > 0:
                        self.sleep(wait_for)
                    self._pass(source(OutputReport()), summary, repair=True)
        except (BotoCoreError, ClientError) as exc:
            raise LoadFailedError(f"loading into {self.table.name} failed: {exc}") from exc
        summary.seconds = time.monotonic() - started
        return summary

    def _pass(self, answers: Iterator[SimilarGames], summary: LoadSummary, *, repair: bool) -> None:
        limit = 2 * self.options.concurrency
        last_beat = time.monotonic()
        handled = 0
        with ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="similar-load") as pool:
            running: dict[Future[_BatchResult], int] = {}

            def collect(done: Iterable[Future[_BatchResult]]) -> None:
                nonlocal handled
                for future in done:
                    size = running.pop(future)
                    self._add(summary, future.result(), repair=repair)
                    handled += size
                if self.progress is not None and not repair:
                    self.progress(handled, summary.written)

            try:
                for batch in _batches(answers, None if repair else summary):
                    if not repair:
                        summary.answers += len(batch)
                    if self._stop.is_set():
                        if not repair:
                            summary.skipped_older += len(batch)
                        continue
                    while len(running) >= limit:
                        done, _ = wait(running, return_when=FIRST_COMPLETED)
                        collect(done)
                    running[pool.submit(self._store, batch, repair)] = len(batch)
                    if time.monotonic() - last_beat >= self.options.heartbeat:
                        last_beat = time.monotonic()
                        if not self.table.heartbeat():
                            self._stop.set()
                            marker = self.table.read_marker()
                            summary.superseded_by = marker.model_version if marker else None
                if running:
                    done, _ = wait(running)
                    collect(done)
            except BaseException:
                self._stop.set()
                for future in running:
                    future.cancel()
                raise

    def _add(self, summary: LoadSummary, result: _BatchResult, *, repair: bool) -> None:
        if repair:
            summary.repaired += result.written
        else:
            summary.written += result.written
            summary.skipped_older += result.skipped_older
        summary.write_requests += result.write_requests
        summary.read_requests += result.read_requests
        summary.unprocessed_retries += result.unprocessed_retries
        summary.retried_items += result.retried_items
        if result.superseded_by is not None:
            summary.superseded_by = max(summary.superseded_by or "", result.superseded_by)

    def _store(self, batch: list[SimilarGames], repair: bool) -> _BatchResult:
        """Read the marker and the rows, write the rows that hold no newer model, retry what is left."""
        mine = self.table.model.key
        result = _BatchResult()
        pending = batch
        attempt = 0
        while pending:
            if self._stop.is_set():
                result.skipped_older += len(pending)
                return result
            marker, versions = self.table.read_versions([answer.game_id for answer in pending])
            result.read_requests += 1
            if marker is not None and marker > mine:
                result.superseded_by = marker
                result.skipped_older += len(pending)
                self._stop.set()
                return result
            keep: list[SimilarGames] = []
            for answer in pending:
                existing = versions.get(answer.game_id)
                if existing is not None and existing > mine:
                    result.skipped_older += 1
                elif not (repair and existing == mine):
                    keep.append(answer)
            if not keep:
                return result
            unprocessed = self.table.write(keep)
            result.write_requests += 1
            result.written += len(keep) - len(unprocessed)
            if not unprocessed:
                return result
            attempt += 1
            if attempt >= self.options.max_attempts:
                raise LoadFailedError(
                    f"{len(unprocessed)} items stayed unprocessed by DynamoDB after {attempt} BatchWriteItem"
                    f" attempts (first game {unprocessed[0].game_id}); is the table's write capacity too low?"
                )
            result.unprocessed_retries += 1
            result.retried_items += len(unprocessed)
            self.sleep(self.options.backoff.delay(attempt))
            pending = unprocessed
        return result
