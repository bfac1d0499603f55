"""Where the dataset files go: an S3 prefix (multipart uploads streamed part by part) or a local folder.

A file appears whole or not at all: an S3 object exists once its upload completes (an aborted upload
leaves nothing), a local file is written under a temporary name and renamed at the end. Memory holds
at most one upload part, however large the file.

A file can also be *staged* (:meth:`DatasetSink.stage`): written in full now, but put in place only by
:meth:`DatasetSink.publish`, or dropped by :meth:`DatasetSink.discard`, leaving what is in place as it
was. A staged S3 file is a multipart upload with every part sent but not completed (a file smaller than
one part waits in memory: at most one part per staged file), so publishing is one quick request per file
and copies nothing; a staged local file is its temporary file, renamed on publishing.
"""

from __future__ import annotations

import contextlib
import io
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from batch.errors import ConfigurationError, SinkError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

#: S3's smallest part (except the last one).
MIN_PART_BYTES: Final = 5 * 1024 * 1024
_WRITE_BUFFER_BYTES: Final = 256 * 1024


@dataclass(slots=True)
class OutputFile:
    """A dataset file being written: write to :attr:`stream`; :attr:`size` is final once it is closed."""

    name: str
    location: str
    stream: IO[bytes]
    size: int = 0


class DatasetSink(ABC):
    """A place for dataset files."""

    @abstractmethod
    def open(self, name: str, content_type: str) -> AbstractContextManager[OutputFile]:
        """A new file ``name``: complete when the block ends normally, absent if it raises."""

    @abstractmethod
    def location(self, name: str) -> str:
        """Where file ``name`` ends up (``s3://bucket/key`` or a path)."""

    @abstractmethod
    def remove(self, name: str) -> None:
        """Delete file ``name`` if it exists."""

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`SinkError` or :class:`ConfigurationError` now when files could not be written."""

    @abstractmethod
    def stage(self, name: str, content_type: str) -> AbstractContextManager[OutputFile]:
        """A new file ``name``, written when the block ends normally but put in place only by
        :meth:`publish` (nothing is left of it if the block raises)."""

    @abstractmethod
    def publish(self) -> None:
        """Put every staged file in place, each whole, in the order they were staged; raises
        :class:`SinkError` (the files not yet in place are discarded)."""

    @abstractmethod
    def discard(self) -> None:
        """Drop every staged file; the files in place stay as they are. Never raises for a file that
        cannot be dropped (what is left is never in place)."""

    def write_bytes(self, name: str, data: bytes, content_type: str) -> OutputFile:
        with self.open(name, content_type) as output:
            output.stream.write(data)
        return output

    def stage_bytes(self, name: str, data: bytes, content_type: str) -> OutputFile:
        with self.stage(name, content_type) as output:
            output.stream.write(data)
        return output


@contextmanager
def text_stream(output: OutputFile) -> Iterator[io.TextIOWrapper]:
    """A UTF-8 text view of ``output`` (for ``csv.writer``); flushed at the end, never closing it."""
    text = io.TextIOWrapper(output.stream, encoding="utf-8", newline="")
    try:
        yield text
        text.flush()
    finally:
        text.detach()


class LocalFolderSink(DatasetSink):
    """Files in a local folder (created if missing)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        #: Staged files: (the temporary file, the file it becomes).
        self._staged: list[tuple[Path, Path]] = []

    def location(self, name: str) -> str:
        return str(self.folder / name)

    def remove(self, name: str) -> None:
        try:
            (self.folder / name).unlink(missing_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot delete {self.folder / name}: {exc}") from exc

    def check(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create the output folder {self.folder}: {exc}") from exc

    @contextmanager
    def open(self, name: str, content_type: str) -> Iterator[OutputFile]:
        with self._write(name) as (output, partial, final):
            yield output
        partial.replace(final)

    @contextmanager
    def stage(self, name: str, content_type: str) -> Iterator[OutputFile]:
        with self._write(name) as (output, partial, final):
            yield output
        self._staged.append((partial, final))

    def publish(self) -> None:
        try:
            while self._staged:
                partial, final = self._staged[0]
                try:
                    partial.replace(final)
                except OSError as exc:
                    raise SinkError(f"cannot put {final} in place: {exc}") from exc
                self._staged.pop(0)
        finally:
            self.discard()

    def discard(self) -> None:
        staged, self._staged = self._staged, []
        for partial, _ in staged:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)

    @contextmanager
    def _write(self, name: str) -> Iterator[tuple[OutputFile, Path, Path]]:
        """``name`` written to its temporary file; the caller puts it in place."""
        final = self.folder / name
        partial = self.folder / f".{name}.partial"
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            handle = partial.open("wb")
        except OSError as exc:
            raise SinkError(f"cannot write {final}: {exc}") from exc
        output = OutputFile(name, str(final), handle)
        try:
            with handle:
                yield output, partial, final
            output.size = partial.stat().st_size
        except BaseException:
            partial.unlink(missing_ok=True)
            raise


class _MultipartUpload(io.RawIOBase):
    """A write-only stream that uploads to one S3 object ``part_size`` bytes at a time.

    Nothing is sent until a part is full; a file smaller than one part is a single PutObject.
    """

    def __init__(self, client: S3Client, bucket: str, key: str, *, part_size: int, content_type: str) -> None:
        super().__init__()
        self._client = client
        self._bucket = bucket
        self._key = key
        self._part_size = part_size
        self._content_type = content_type
        self._pending = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._discard = False
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data)
        if self._discard:  # aborted: what a buffer still flushes goes nowhere
            return view.nbytes
        self._pending += view
        self.size += view.nbytes
        while len(self._pending) >= self._part_size:
            part = bytes(self._pending[: self._part_size])
            del self._pending[: self._part_size]
            self._send_part(part)
        return view.nbytes

    def _send_part(self, data: bytes) -> None:
        if self._upload_id is None:
            created = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._content_type
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        sent = self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=data
        )
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    def finish_parts(self) -> None:
        """Send what is pending as the last part if a multipart upload is under way (a file smaller than
        one part stays pending, for :meth:`complete`'s single PutObject). Then only :meth:`complete` or
        :meth:`abort` remain."""
        if self._upload_id is not None and self._pending:
            self._send_part(bytes(self._pending))
            self._pending = bytearray()

    def complete(self) -> None:
        if self._upload_id is None:
            self._client.put_object(
                Bucket=self._bucket, Key=self._key, Body=bytes(self._pending), ContentType=self._content_type
            )
        else:
            if self._pending:
                self._send_part(bytes(self._pending))
            self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._pending = bytearray()

    def abort(self) -> None:
        self._discard = True
        self._pending = bytearray()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            # If this fails too (or the process is killed), the upload stays until a lifecycle rule of the
            # bucket aborts it: one should be configured (AbortIncompleteMultipartUpload, DaysAfterInitiation 1).
            with contextlib.suppress(BotoCoreError, ClientError):
                self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=upload_id)


class S3Sink(DatasetSink):
    """Objects under ``s3://bucket/prefix/``; each file is one (multipart) upload."""

    def __init__(self, client: S3Client, bucket: str, prefix: str, *, part_size: int = 8 * 1024 * 1024) -> None:
        if part_size < MIN_PART_BYTES:
            raise ConfigurationError(f"an upload part must be at least {MIN_PART_BYTES} bytes, not {part_size}")
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        #: Staged files: (the upload, with every part sent, and where it goes).
        self._staged: list[tuple[_MultipartUpload, str]] = []

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def location(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.key(name)}"

    def remove(self, name: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self.key(name))
        except (BotoCoreError, ClientError) as exc:
            raise SinkError(f"cannot delete {self.location(name)}: {exc}") from exc

    def check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except NoCredentialsError as exc:
            raise ConfigurationError(f"no AWS credentials to write to s3://{self.bucket}: {exc}") from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise SinkError(f"cannot write to s3://{self.bucket} ({code or exc}): does the bucket exist?") from exc
        except BotoCoreError as exc:
            raise SinkError(f"cannot reach S3 for s3://{self.bucket}: {exc}") from exc

    @contextmanager
    def open(self, name: str, content_type: str) -> Iterator[OutputFile]:
        with self._upload(name, content_type, staged=False) as output:
            yield output

    @contextmanager
    def stage(self, name: str, content_type: str) -> Iterator[OutputFile]:
        with self._upload(name, content_type, staged=True) as output:
            yield output

    def publish(self) -> None:
        try:
            while self._staged:
                upload, location = self._staged[0]
                try:
                    upload.complete()
                except (BotoCoreError, ClientError) as exc:
                    raise SinkError(f"upload of {location} failed: {exc}") from exc
                self._staged.pop(0)
        finally:
            self.discard()

    def discard(self) -> None:
        staged, self._staged = self._staged, []
        for upload, _ in staged:
            upload.abort()

    @contextmanager
    def _upload(self, name: str, content_type: str, *, staged: bool) -> Iterator[OutputFile]:
        location = self.location(name)
        upload = _MultipartUpload(
            self._client, self.bucket, self.key(name), part_size=self.part_size, content_type=content_type
        )
        stream = io.BufferedWriter(upload, buffer_size=_WRITE_BUFFER_BYTES)
        output = OutputFile(name, location, stream)
        try:
            yield output
            stream.flush()
            if staged:
                upload.finish_parts()
            else:
                upload.complete()
        except (BotoCoreError, ClientError) as exc:
            upload.abort()
            raise SinkError(f"upload of {location} failed: {exc}") from exc
        except BaseException:
            upload.abort()
            raise
        finally:
            stream.close()
        output.size = upload.size
        if staged:
            self._staged.append((upload, location))
