"""Helpers of ``bench/e2e_pipeline.py``: CPU accounting by process group, Prometheus histogram quantiles,
rates from timestamps, and a plain table printer. No product code here; stdlib + prometheus_client.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

CLK_TCK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")

# ------------------------------------------------------------------------------------------ CPU


def proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, utime+stime seconds) for every process readable in /proc."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_bytes().decode("ascii", "replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # fields[0] is state (stat field 3): ppid is field 4, utime 14, stime 15.
        try:
            table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
        except (IndexError, ValueError):
            continue
    return table


def _busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, wall-clock CPU seconds available) from /proc/stat."""
    parts = Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    # guest time is already counted in user/nice.
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


class CpuAccount:
    """CPU seconds by group of processes, sampled every ``interval`` by a thread.

    ``groups`` maps a name to a function giving the root pids of that group right now (it gets the
    map pid -> child pids); a group holds its roots and all their descendants, unless an earlier
    group claimed them. A process that exits keeps the CPU it was last seen
    with. ``others`` is the machine's busy time minus every group's (other tenants of the machine).
    """

    def __init__(
        self, groups: Mapping[str, Callable[[dict[int, list[int]]], Iterable[int]]], interval: float = 1.0
    ) -> None:
        self.groups = dict(groups)
        self.interval = interval
        self._seen: dict[str, dict[int, float]] = {name: {} for name in self.groups}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-account", daemon=True)

    def start(self) -> CpuAccount:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        table = proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        with self._lock:
            claimed: set[int] = set()
            for name, roots in list(self.groups.items()):
                try:
                    todo = [pid for pid in roots(children) if pid in table]
                except Exception:
                    todo = []
                seen = self._seen[name]
                while todo:
                    pid = todo.pop()
                    if pid in claimed:
                        continue
                    claimed.add(pid)
                    seen[pid] = table[pid][1]
                    todo.extend(children.get(pid, ()))

    def snapshot(self) -> CpuSnapshot:
        self.sample()
        busy, total = _busy_seconds()
        with self._lock:
            by_group = {name: dict(seen) for name, seen in self._seen.items()}
        return CpuSnapshot(time.monotonic(), busy, total, by_group)


@dataclass(frozen=True)
class CpuSnapshot:
    at: float
    busy: float
    total: float
    by_group: dict[str, dict[int, float]]

    def cores_since(self, earlier: CpuSnapshot) -> dict[str, float]:
        """Average cores used per group between ``earlier`` and this snapshot, plus ``others`` and
        ``machine`` (all processes)."""
        wall = max(self.at - earlier.at, 1e-9)
        result: dict[str, float] = {}
        ours = 0.0
        for name, seen in self.by_group.items():
            before = earlier.by_group.get(name, {})
            used = sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in seen.items())
            result[name] = used / wall
            ours += used
        machine = max(0.0, self.busy - earlier.busy)
        result["others"] = max(0.0, machine - ours) / wall
        result["machine"] = machine / wall
        return result


# ------------------------------------------------------------------------------------ histograms


def histogram_buckets(text: str, name: str, **labels: str) -> dict[float, float]:
    """Cumulative bucket counts of histogram ``name`` with ``labels`` (summed over other labels)."""
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != name + "_bucket":
                continue
            if any(sample.labels.get(k) != v for k, v in labels.items()):
                continue
            le = float(sample.labels["le"])
            buckets[le] = buckets.get(le, 0.0) + float(sample.value)
    return buckets


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += float(sample.value)
    return total


def metric_by_label(text: str, name: str, label: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and label in sample.labels:
                found[sample.labels[label]] = float(sample.value)
    return found


def bucket_diff(after: Mapping[float, float], before: Mapping[float, float]) -> dict[float, float]:
    return {le: after[le] - before.get(le, 0.0) for le in after}


def bucket_quantile(q: float, buckets: Mapping[float, float]) -> float:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket holding rank q*n
    (the first bucket starts at 0; a rank in the +Inf bucket gives the largest finite bound)."""
    ordered = sorted(buckets.items())
    if not ordered:
        return math.nan
    count = ordered[-1][1]
    if count <= 0:
        return math.nan
    rank = q * count
    lower_bound, lower_count = 0.0, 0.0
    for bound, cumulative in ordered:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower_bound
            inside = cumulative - lower_count
            if inside <= 0:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / inside
        lower_bound, lower_count = bound, cumulative
    return ordered[-1][0]


def fraction_at_most(bound: float, buckets: Mapping[float, float]) -> float:
    """The exact share of observations <= ``bound`` when ``bound`` is a bucket boundary."""
    ordered = sorted(buckets.items())
    count = ordered[-1][1] if ordered else 0.0
    if count <= 0 or bound not in buckets:
        return math.nan
    return buckets[bound] / count


# ------------------------------------------------------------------------------------ statistics


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of sorted or unsorted ``values`` (numpy's default method)."""
    if not values:
        return math.nan
    data = sorted(values)
    position = q * (len(data) - 1)
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)


@dataclass
class Rate:
    """A count over a time span: first to last, and the steady state between two quantiles."""

    count: int
    first_to_last: float
    steady: float
    span_seconds: float
    steady_span_seconds: float


def rate_from_times(times: Sequence[float], low: float = 0.1, high: float = 0.9) -> Rate:
    """Events/s from their timestamps: (n-1)/(last-first), and the rate between the ``low`` and
    ``high`` quantiles of the times (the ramp-up and the tail cut off)."""
    data = sorted(times)
    n = len(data)
    if n < 2:
        return Rate(n, math.nan, math.nan, 0.0, 0.0)
    span = data[-1] - data[0]
    i, j = int(low * (n - 1)), int(high * (n - 1))
    steady_span = data[j] - data[i]
    return Rate(
        n,
        (n - 1) / span if span > 0 else math.nan,
        (j - i) / steady_span if steady_span > 0 else math.nan,
        span,
        steady_span,
    )


# ----------------------------------------------------------------------------------------- output


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def render(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
        line = "  ".join(h.ljust(w) for h, w in zip(self.headers, widths, strict=True))
        out = [line, "  ".join("-" * w for w in widths)]
        for row in self.rows:
            out.append(
                "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
            )
        return "\n".join(out)


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def run_started_together(run: Callable[[T], None], items: Sequence[T], barrier: threading.Barrier) -> float:
    """One thread per item running ``run(item)``; each waits on ``barrier`` (``len(items) + 1`` parties)
    before its work, so the clock starts when all are ready. Returns the seconds until the last ended."""
    threads = [threading.Thread(target=run, args=(item,), daemon=True) for item in items]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.monotonic()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def iterator_start(after: Mapping[str, str] | None, shard: str) -> dict[str, str]:
    """GetShardIterator's start arguments: after ``after[shard]`` when given, else TRIM_HORIZON."""
    if after is not None and shard in after:
        return {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after[shard]}
    return {"ShardIteratorType": "TRIM_HORIZON"}


@dataclass(frozen=True)
class ReadTarget:
    """What a plain reader reads: kinesis-mock's endpoint, the region and keys it signs with, the
    stream, and how many records each shard holds (the reader stops there)."""

    endpoint: str
    region: str
    access_key: str
    secret_key: str
    stream: str
    expected: Counter[str]
