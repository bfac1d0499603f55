"""Optional persistence of the emulator's state as JSON-lines files in a data directory.

- ``events.jsonl``, ``items.jsonl``, ``users.jsonl``: accepted records, appended (and flushed) as each
  call is accepted, so they survive a restart or a crash of the emulator.
- ``trackers.jsonl``, ``datasets.jsonl``: the resources, one per line, rewritten atomically on change.

A torn last line (a crash in the middle of a write) is skipped on load, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

logger = logging.getLogger("devstack.personalize.persistence")

RECORD_FILES: Final = ("events", "items", "users")
RESOURCE_FILES: Final = ("trackers", "datasets")


def _dump_line(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"


class Persistence:
    """Reads and writes the data directory; one instance owns the files while the emulator runs."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._handles: dict[str, IO[str]] = {}

    def path(self, name: str) -> Path:
        """The file holding ``name`` (``events``, ``trackers``, ...)."""
        return self.data_dir / f"{name}.jsonl"

    def read(self, name: str) -> Iterator[dict[str, Any]]:
        """Yield the objects stored in ``name``; unreadable lines are skipped with a warning."""
        path = self.path(name)
        if not path.exists():
            return
        skipped = 0
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    skipped += 1
                    continue
                if isinstance(obj, dict):
                    yield obj
                else:
                    skipped += 1
        if skipped:
            logger.warning("skipped unreadable lines", extra={"file": str(path), "skipped": skipped})

    def _handle(self, name: str) -> IO[str]:
        handle = self._handles.get(name)
        if handle is None:
            path = self.path(name)
            # A torn last line (crash mid-write) must not swallow the next record: start on a new line.
            needs_newline = False
            if path.exists() and path.stat().st_size > 0:
                with path.open("rb") as existing:
                    existing.seek(-1, os.SEEK_END)
                    needs_newline = existing.read(1) != b"\n"
            handle = path.open("a", encoding="utf-8")
            if needs_newline:
                handle.write("\n")
            self._handles[name] = handle
        return handle

    def append(self, name: str, fields: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Append rows (tuples in ``fields`` order) to ``name`` as JSON objects, then flush."""
        handle = self._handle(name)
        handle.write("".join(_dump_line(dict(zip(fields, row, strict=True))) for row in rows))
        handle.flush()

    def truncate(self, name: str) -> None:
        """Empty the file ``name``."""
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.close()
        self.path(name).write_text("", encoding="utf-8")

    def rewrite(self, name: str, objects: Iterable[Mapping[str, Any]]) -> None:
        """Replace the contents of ``name`` atomically with ``objects``, one per line."""
        path = self.path(name)
        tmp = path.with_suffix(".jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write("".join(_dump_line(obj) for obj in objects))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)

    def close(self) -> None:
        """Flush and close every open file."""
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
