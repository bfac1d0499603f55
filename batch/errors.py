"""The batch's error taxonomy: a wrong setting or query file, the database failing, the output failing."""

from __future__ import annotations


class BatchError(Exception):
    """Base of every error the batch reports to its operator."""


class ConfigurationError(BatchError):
    """A setting, the queries file or the mapping file is wrong; the message names it. Fatal."""


class SourceError(BatchError):
    """The database could not be read (unreachable, or a query failed); the message names the query."""


class SinkError(BatchError):
    """A dataset file could not be written (S3 or the local folder); the message names the file."""
