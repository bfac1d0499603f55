"""Batch settings: explicit argument > environment (BATCH_*) > settings file (BATCH_SETTINGS_FILE) > default.

AWS endpoints, region and credentials are not settings of ours: boto3 reads ``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_S3``, ``AWS_REGION`` and the credential chain itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from batch.errors import ConfigurationError
from clickstream.settings import LayeredSettings, check_database_url, settings_problems

ENV_PREFIX: Final = "BATCH_"
#: Environment variable naming an optional YAML settings file.
SETTINGS_FILE_ENV: Final = "BATCH_SETTINGS_FILE"
#: The platform database of a developer machine (what ``pam db seed`` fills by default).
DEFAULT_DATABASE_URL: Final = "sqlite:///./.data/platform.db"
MIB: Final = 1024 * 1024


class BatchSettings(LayeredSettings):
    """Where the batch reads the platform data and where the datasets go."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)
    settings_file_env = SETTINGS_FILE_ENV

    database_url: SecretStr = Field(
        SecretStr(DEFAULT_DATABASE_URL),
        description="SQLAlchemy URL of the database the queries read (sqlite:///..., postgresql://...)",
    )
    queries_file: Path | None = Field(None, description="the dataset queries (default: batch/default_queries.yaml)")
    mapping_file: Path | None = Field(None, description="the event-type mapping (default: clickstream's)")
    s3_bucket: str | None = Field(None, description="bucket the datasets are uploaded to")
    s3_prefix: str = Field("datasets", description="key prefix (folder) of the datasets in the bucket")
    region: str | None = Field(None, description="AWS region; default $AWS_REGION / $AWS_DEFAULT_REGION")
    chunk_size: int = Field(5000, ge=1, le=1_000_000, description="rows fetched from the database at a time")
    upload_part_mib: int = Field(8, ge=5, le=5120, description="size of one multipart upload part (MiB)")
    dedup_memory: int = Field(200_000, ge=1, description="eventIds remembered to drop duplicate interactions")
    columnar: bool = Field(True, description="normalize interactions a chunk at a time as columns (false: row by row)")
    arrow_reader: bool = Field(
        True, description="columnar interactions read from SQLite as Arrow batches (false: rows)"
    )
    parallel: bool = Field(
        True, description="columnar interactions read and prepared on a second thread, ahead of the writing"
    )
    # `batch personalize apply|train`
    personalize_config: Path | None = Field(None, description="Personalize config (default: batch/personalize/)")
    personalize_role_arn: str | None = Field(None, description="IAM role Personalize assumes to read the datasets")
    personalize_wait_timeout_seconds: float = Field(21600.0, gt=0, description="deadline of one apply or train run")
    personalize_poll_initial_seconds: float = Field(2.0, gt=0, description="first wait between status polls")
    personalize_poll_max_seconds: float = Field(60.0, gt=0, description="longest wait between status polls")
    # `batch similar run|load` (the role is BATCH_PERSONALIZE_ROLE_ARN)
    similar_table: str = Field("similar-games", min_length=3, max_length=255, description="the DynamoDB table")
    similar_create_table: bool = Field(True, description="create the table (on-demand) when it is missing")
    similar_concurrency: int = Field(4, ge=1, le=64, description="BatchWriteItem requests in flight at once")
    similar_max_write_attempts: int = Field(8, ge=1, le=100, description="tries of one batch's unprocessed items")
    similar_num_results: int = Field(25, ge=1, le=500, description="similar games per game (numResults)")
    similar_solution_name: str = Field("lobby-sims", min_length=1, description="the SIMS solution of `run`")
    similar_s3_prefix: str = Field("similar", description="key prefix of the batch inference input and output")
    similar_job_timeout_seconds: float = Field(14400.0, gt=0, description="deadline of the batch inference job")
    similar_poll_initial_seconds: float = Field(2.0, gt=0, description="first wait between job status polls")
    similar_poll_max_seconds: float = Field(60.0, gt=0, description="longest wait between job status polls")
    similar_fence_seconds: float = Field(60.0, ge=0, description="wait after a claim before the repair pass")
    similar_race_window_seconds: float = Field(900.0, ge=0, description="an older loader seen this recently may race")

    @field_validator("database_url")
    @classmethod
    def _url_parses(cls, value: SecretStr) -> SecretStr:
        return check_database_url(value)

    @field_validator("s3_bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if value.startswith("s3://") or "/" in value:
            raise ValueError("must be a bucket name only; put the folder in BATCH_S3_PREFIX")
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.strip().strip("/")

    @property
    def upload_part_bytes(self) -> int:
        return self.upload_part_mib * MIB


def load_settings(**explicit: object) -> BatchSettings:
    """Settings with ``explicit`` values (None means "not given") on top.

    Raises :class:`ConfigurationError` naming each wrong setting by its environment variable.
    """
    given = {name: value for name, value in explicit.items() if value is not None}
    try:
        return BatchSettings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigurationError(f"invalid batch settings: {settings_problems(exc, ENV_PREFIX)}") from None
