"""Structured JSON logs on stderr. stdout belongs to the MultiLang protocol: nothing else writes there."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Final

_STANDARD: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus the record's ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                body[key] = value
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str, separators=(",", ":"))


def configure_logging(level: str | None = None) -> None:
    """Send every log line to stderr as JSON; idempotent. ``level`` defaults to $LOG_LEVEL or INFO."""
    root = logging.getLogger()
    chosen = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    root.setLevel(chosen)
    for handler in list(root.handlers):
        if getattr(handler, "_patron_json", False):
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._patron_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.Formatter.converter = time.gmtime
