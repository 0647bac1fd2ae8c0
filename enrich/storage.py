"""One small storage layer for local paths and `s3://` URIs.

S3 goes through boto3 with the standard AWS settings (AWS_ENDPOINT_URL, AWS_PROFILE, AWS_REGION,
credentials chain), so any S3-compatible store works. Writes are atomic on both backends: a local
write goes to a hidden temporary file in the same folder, is fsynced and renamed over the target;
an S3 PUT is atomic by itself. Readers therefore never see a partial file.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from enrich.errors import UsageError


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int
    etag: str  # S3 ETag, or "mtime_ns-size" for local files: changes whenever the content may have


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise UsageError(f"expected s3://BUCKET/PREFIX, got {uri!r}")
    return bucket, key


def normalize(uri: str) -> str:
    """Absolute local paths and `s3://bucket/prefix` without a trailing slash."""
    if is_s3(uri):
        return uri.rstrip("/") if uri.count("/") > 2 else uri
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return os.path.abspath(os.path.expanduser(uri))


def join(base: str, *parts: str) -> str:
    if is_s3(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base, *parts)


def relative(uri: str, base: str) -> str:
    """`uri` relative to `base`, '/'-separated (the stable clip id)."""
    if is_s3(uri):
        return uri[len(base.rstrip("/")) + 1 :]
    return os.path.relpath(uri, base).replace(os.sep, "/")


RETRIES = {"mode": "standard", "total_max_attempts": 5}  # unless AWS_RETRY_MODE / AWS_MAX_ATTEMPTS say otherwise
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 5, 60


def s3_client():
    """One client per process (a forked DataLoader worker makes its own); boto3 reads the standard
    AWS settings from the environment. Failed calls are retried by botocore's own retry handler:
    its `standard` mode (exponential backoff with jitter, on throttling, 5xx and connection errors)
    with 5 attempts in all, unless the standard AWS_RETRY_MODE / AWS_MAX_ATTEMPTS settings (or the
    profile's) choose others."""
    return _client(os.getpid())


s3_client.cache_clear = lambda: _client.cache_clear()  # a new client on the next call (the tests' proxy)


@functools.cache
def _client(pid: int):
    import boto3
    from botocore.config import Config

    setting = {"mode": "AWS_RETRY_MODE", "total_max_attempts": "AWS_MAX_ATTEMPTS"}  # Config would override them
    retries = {key: value for key, value in RETRIES.items() if not os.environ.get(setting[key])}
    config = Config(retries=retries, connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S)
    return boto3.session.Session().client("s3", config=config)


UNREACHABLE = "storage unreachable: "  # starts the error of a row that failed because storage did


def endpoint_url() -> str | None:
    """The S3 endpoint the standard AWS settings name (None: AWS's own)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def endpoint() -> str:
    return endpoint_url() or "the AWS S3 endpoint"


def unreachable(exc: BaseException) -> str | None:
    """'cannot reach ENDPOINT' when `exc` (or what it wraps, a Ray task error's cause included) is
    storage that could not be reached after botocore's retries; None for any other failure."""
    from botocore import exceptions as bx

    lost = (
        bx.EndpointConnectionError,
        bx.ConnectTimeoutError,
        bx.ReadTimeoutError,
        bx.ConnectionClosedError,
        bx.ResponseStreamingError,
    )
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, lost) or _unreachable_text(exc):
            return f"cannot reach {endpoint()}"
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


# How the errors that carry no botocore exception say it: `s3_errors`' own line (raised in a Ray
# task, whose pickled error keeps no context), and delta-rs' object store (its commits and reads).
UNREACHABLE_TEXT = ("cannot reach ", "error sending request", "tcp connect error", "connection refused")


def _unreachable_text(exc: BaseException) -> bool:
    from enrich.errors import UsageError

    text = str(exc).lower()
    if isinstance(exc, UsageError):
        return text.startswith(UNREACHABLE_TEXT[0])
    return any(t in text for t in UNREACHABLE_TEXT[1:])


def describe_s3_error(exc: Exception, uri: str) -> str:
    """One readable line for the botocore errors users actually hit."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.NoCredentialsError):
        return f"no AWS credentials found for {uri} (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
    if unreachable(exc):
        return f"cannot reach {endpoint()} for {uri}"
    if isinstance(exc, bx.ProfileNotFound):
        return f"AWS profile not found: {exc}"
    if isinstance(exc, bx.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        known = {
            "NoSuchBucket": "bucket does not exist",
            "AccessDenied": "access denied",
            "InvalidAccessKeyId": "bad AWS credentials (unknown access key id)",
            "SignatureDoesNotMatch": "bad AWS credentials (secret key does not match)",
            "NoSuchKey": "object does not exist",
            "404": "object does not exist",
            "403": "access denied",
        }
        return f"{known.get(code, code or 'S3 error')}: {uri}"
    return f"{type(exc).__name__}: {exc} ({uri})"


@contextmanager
def s3_errors(uri: str):
    """Turn botocore failures into a one-line UsageError (nothing to translate for local paths)."""
    if not is_s3(uri):
        yield
        return
    from botocore import exceptions as bx

    try:
        yield
    except (bx.BotoCoreError, bx.ClientError) as exc:
        raise UsageError(describe_s3_error(exc, uri)) from None


def list_objects(prefix: str) -> Iterator[ObjectInfo]:
    """Every object under `prefix` (a folder, a file, or an S3 prefix), recursively."""
    if is_s3(prefix):
        bucket, key = split_s3(prefix)
        with s3_errors(prefix):
            head = stat(prefix) if key else None
            if head is not None:
                yield head
                return
            pages = (
                s3_client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/" if key else "")
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    yield ObjectInfo(f"s3://{bucket}/{obj['Key']}", obj["Size"], obj["ETag"].strip('"'))
        return
    if os.path.isfile(prefix):
        yield _local_info(prefix)
        return
    if not os.path.isdir(prefix):
        raise UsageError(f"input does not exist: {prefix}")
    for root, dirs, files in os.walk(prefix):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield _local_info(os.path.join(root, name))


def _local_info(path: str) -> ObjectInfo:
    st = os.stat(path)
    return ObjectInfo(path, st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}")


def stat(uri: str) -> ObjectInfo | None:
    if not is_s3(uri):
        return _local_info(uri) if os.path.isfile(uri) else None
    from botocore.exceptions import ClientError

    bucket, key = split_s3(uri)
    try:
        head = s3_client().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return ObjectInfo(uri, head["ContentLength"], head["ETag"].strip('"'))


def exists(uri: str) -> bool:
    return stat(uri) is not None


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        return _get_object(bucket, key)
    with open(uri, "rb") as f:
        return f.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Atomic: readers see the old object or the new one, never a partial file."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    with atomic_output(uri) as f:
        f.write(data)


@contextmanager
def atomic_output(uri: str, scratch: str | None = None) -> Iterator[BinaryIO]:
    """A file to write `uri` through, published atomically when the block ends without error, and
    never otherwise: locally a hidden temporary file beside the target (or in the local folder
    `scratch`, on the same file system: a run's staging, which is removed however the run ends),
    fsynced and renamed over it;
    for S3 a local temporary file, uploaded at the end (multipart when large; an upload is only
    visible once complete). Memory stays that of the writer, whatever the file's size."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        with tempfile.TemporaryFile(prefix="enrich-upload-") as f:
            yield f
            f.seek(0)
            s3_client().upload_fileobj(f, bucket, key)
        return
    folder = os.path.dirname(uri)
    os.makedirs(folder, exist_ok=True)
    if scratch:
        os.makedirs(scratch, exist_ok=True)
    tmp = os.path.join(scratch or folder, f".tmp-{uuid.uuid4().hex}-{os.path.basename(uri)}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, uri)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def open_input(uri: str):
    """A seekable Arrow file for reading `uri`. On S3 each read is a ranged GET, so a Parquet reader
    fetches the footer and the column chunks it needs, never the whole object."""
    import pyarrow as pa

    if not is_s3(uri):
        return pa.OSFile(uri, "rb")
    return pa.PythonFile(_S3Reader(uri), mode="r")


def read_arrow(uri: str):
    """The object's bytes in Arrow's own memory (a `pyarrow.Buffer`), for `pyarrow.parquet` to read.

    Not a Python bytes object: `pq.read_table` can return before its thread pool has let go of
    what it read (apache/arrow#33975), and letting go of a Python object takes the GIL, which at
    interpreter exit aborts the process ("terminate called without an active exception")."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    sink.write(read_bytes(uri))
    return sink.getvalue()


STREAM_ATTEMPTS = 3


def _get_object(bucket: str, key: str, **extra) -> bytes:
    """The object's bytes. botocore retries the request but not a body that breaks off while it
    streams, so the whole GET is tried again, up to STREAM_ATTEMPTS times; a dead endpoint then
    fails the retried request itself."""
    from botocore import exceptions as bx

    for attempt in range(STREAM_ATTEMPTS):
        body = s3_client().get_object(Bucket=bucket, Key=key, **extra)["Body"]  # botocore's retries
        try:
            return body.read()
        except (bx.ResponseStreamingError, bx.IncompleteReadError, bx.ReadTimeoutError):  # mid-body
            if attempt == STREAM_ATTEMPTS - 1:
                raise
            time.sleep(0.5 * 2**attempt)


class _S3Reader(io.RawIOBase):
    def __init__(self, uri: str):
        self.bucket, self.key = split_s3(uri)
        self.size = s3_client().head_object(Bucket=self.bucket, Key=self.key)["ContentLength"]
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def read(self, size: int = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self.position + size)
        if end <= self.position:
            return b""
        data = _get_object(self.bucket, self.key, Range=f"bytes={self.position}-{end - 1}")
        self.position += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def create_exclusive(uri: str, data: bytes) -> bool:
    """Write `uri` only if nothing is there yet (a hard link locally, `If-None-Match: *` on S3).
    Returns False, writing nothing, when it already exists."""
    if is_s3(uri):
        from botocore.exceptions import ClientError

        bucket, key = split_s3(uri)
        try:
            s3_client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True
    folder = os.path.dirname(uri)
    os.makedirs(folder, exist_ok=True)
    # Written whole under a hidden name, then hard-linked into place: the link fails if `uri` exists,
    # and a reader never sees it half written (a Delta commit, `enrich.manifest.delta.commit`).
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(uri)}.")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(temp, uri)
    except FileExistsError:
        return False
    finally:
        os.unlink(temp)
    return True


def delete(uri: str) -> None:
    """Remove one object; a missing one is not an error."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3_client().delete_object(Bucket=bucket, Key=key)
    elif os.path.exists(uri):
        os.unlink(uri)


def delete_prefix(prefix: str) -> None:
    """Remove everything under a folder or S3 prefix."""
    if not is_s3(prefix):
        shutil.rmtree(prefix, ignore_errors=True)
        return
    bucket, key = split_s3(prefix)
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/")
    for page in pages:
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            s3_client().delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def remove_empty_folders(path: str, stop: str | None = None) -> None:
    """Remove `path` and then its parents while they are empty, up to (not including) `stop`; a
    folder that holds anything is left alone. Nothing to do on S3, which has no folders."""
    if is_s3(path):
        return
    path = os.path.abspath(path)
    while path != stop and os.path.dirname(path) != path:
        try:
            os.rmdir(path)
        except OSError:  # not empty, or gone already
            if os.path.exists(path):
                return
        path = os.path.dirname(path)


def first_existing(path: str) -> str | None:
    """The nearest of `path` and its parents that exists (local paths; None on S3)."""
    if is_s3(path):
        return None
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def list_uris(prefix: str) -> list[str]:
    """Objects under a folder or prefix; empty when it does not exist."""
    if not is_s3(prefix) and not os.path.isdir(prefix):
        return []
    return [info.uri for info in list_objects(prefix)]


def download(uri: str, dest: str) -> None:
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    bucket, key = split_s3(uri)
    s3_client().download_file(bucket, key, dest)


@contextmanager
def local_copy(uri: str, scratch: str | None = None) -> Iterator[str]:
    """A local path for `uri`: the file itself, or a temporary download removed afterwards."""
    if not is_s3(uri):
        yield uri
        return
    fd, path = tempfile.mkstemp(prefix="enrich-", suffix=os.path.splitext(uri)[1], dir=scratch)
    os.close(fd)
    try:
        download(uri, path)
        yield path
    finally:
        os.unlink(path)


def check_readable(uri: str) -> None:
    """Fail fast with one line when an input cannot be listed."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        with s3_errors(uri):
            s3_client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    elif not os.path.exists(uri):
        raise UsageError(f"input does not exist: {uri}")


def check_writable(uri: str) -> None:
    """Write and remove a probe object so bad credentials or paths fail before any work."""
    probe = join(uri, f"_probe-{uuid.uuid4().hex}")
    try:
        with s3_errors(uri):
            write_bytes(probe, b"")
            delete(probe)
    except OSError as exc:
        raise UsageError(f"cannot write to output {uri}: {exc.strerror or exc}") from None
