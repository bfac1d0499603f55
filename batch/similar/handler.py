"""The loader as a Lambda function: ``batch.similar.handler.handle`` on an S3 event for a batch output object.

Each record names one object (``Records[].s3.bucket.name``, ``Records[].s3.object.key``, URL-encoded as
S3 sends it); objects not ending in ``.out`` are ignored. The model version is the solution version of
the batch inference job whose output folder holds the object. Settings come from the environment
(``BATCH_SIMILAR_TABLE``...), as for the CLI.

Returns a summary dict (one entry per object). Raises when any object could not be loaded, so Lambda
retries the event: loading the same model's answers again is safe (its rows are rewritten, newer rows
stay).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote_plus

from rich.console import Console

from batch.aws import personalize_client, s3_client
from batch.errors import BatchError
from batch.settings import load_settings
from batch.similar.command import load_output
from batch.similar.errors import LoadFailedError
from batch.similar.inference import model_of_output
from batch.similar.output import OUTPUT_SUFFIX, S3Location

log = logging.getLogger("batch.similar.handler")


def objects_of(event: dict[str, Any]) -> list[S3Location]:
    """The objects an S3 event notification names; raises ValueError for an event of another shape."""
    records = event.get("Records")
    if not isinstance(records, list):
        raise ValueError("not an S3 event notification: no Records list")
    found: list[S3Location] = []
    for record in records:
        try:
            s3 = record["s3"]
            found.append(S3Location(s3["bucket"]["name"], unquote_plus(s3["object"]["key"])))
        except (KeyError, TypeError):
            raise ValueError(f"not an S3 event record: {record!r:.200}") from None
    return found


def handle(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    """Load every batch output object of ``event``; raises LoadFailedError when any could not be loaded."""
    settings = load_settings()
    s3 = s3_client(settings.region)
    personalize = personalize_client(settings.region)
    quiet = Console(stderr=True, quiet=True)
    loads: list[dict[str, Any]] = []
    written = 0
    ignored: list[str] = []
    failures: list[str] = []
    for location in objects_of(event):
        if not location.key.endswith(OUTPUT_SUFFIX):
            ignored.append(str(location))
            continue
        try:
            model = model_of_output(personalize, location)
            summary = load_output(settings, s3, location, model, quiet)
        except BatchError as exc:
            log.error("load failed", extra={"object": str(location), "error": str(exc)})
            failures.append(f"{location}: {exc}")
            continue
        written += summary.written
        entry = {"object": str(location), **summary.to_json()}
        log.info("loaded", extra=entry)
        loads.append(entry)
    if failures:
        total = len(failures) + len(loads)
        raise LoadFailedError(f"{len(failures)} of {total} objects not loaded: " + "; ".join(failures))
    return {
        "loaded": len(loads),
        "ignored": ignored,
        "written": written,
        "loads": loads,
    }
