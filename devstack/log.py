"""Structured logs: one JSON object per line on stderr (stdout is for what a command prints)."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Final

_STANDARD: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_MARK: Final = "_devstack_json"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "pid", ...extra fields}`` on one line."""

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
    """Route every log record to stderr as JSON; idempotent. Level: argument, $DEVSTACK_LOG_LEVEL, INFO."""
    root = logging.getLogger()
    chosen = (level or os.environ.get("DEVSTACK_LOG_LEVEL") or "INFO").upper()
    root.setLevel(chosen)
    if not any(getattr(handler, _MARK, False) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
