"""Deliver the finished video: upload to Cloudflare R2 (any S3 API) and presign a GET, or return it inline.

Credentials come from the job's ``r2`` object, field by field, else from the ``R2_*`` environment variables.
With neither, the video comes back as base64 up to ``INLINE_RESULT_MAX_BYTES``. The boto3 client uses the
configuration R2 needs: region ``auto``, SigV4, path-style addressing, and checksums only where the operation
requires them (boto3 >= 1.36 adds CRC checksums by default that R2 rejects). botocore's "standard" retry mode
retries 5xx answers, throttling and timeouts; no new attempt starts once the upload has taken
``UPLOAD_TOTAL_TIMEOUT_S`` (:class:`_Deadline`), so a destination that fails mid-job costs a bounded time.

:func:`check_destination` proves, before any work, that the bucket takes uploads (start-up for the operator's
``R2_*``, each job for a caller's ``r2``): ``HeadBucket`` with short timeouts and, where that is refused, a put and
delete of an empty object under the key prefix, whose answer names the problem (HEAD answers carry no error code).

Failures are :class:`UploadFailed` naming the bucket and the S3 error code, never a secret. A presigned URL
is a bearer credential: it is returned to the caller and never logged.
"""

from __future__ import annotations

import base64
import logging
import os
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from sadtalker.core.errors import DownloadFailed, InvalidInput, UploadFailed
from sadtalker.worker.download import resolve_checked
from sadtalker.worker.options import R2Credentials
from sadtalker.worker.settings import Settings

logger = logging.getLogger(__name__)

CONTENT_TYPE = "video/mp4"
MAX_ATTEMPTS = 4  # first try + 3 retries on 5xx / timeouts
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
# No new upload attempt starts after this many seconds (one attempt already under way may finish: its socket
# operations are bounded by the timeouts above).
UPLOAD_TOTAL_TIMEOUT_S = 120.0
# The destination check: short timeouts, one retry (a closed port answers at once, a black hole after 2 x 3 s).
CHECK_CONNECT_TIMEOUT_S = 3.0
CHECK_READ_TIMEOUT_S = 5.0
CHECK_ATTEMPTS = 2
# What an S3 error code means for the operator or caller, in the check's message.
_S3_MEANING = {
    "SignatureDoesNotMatch": "wrong secret access key, or an access key id the server does not know",
    "InvalidAccessKeyId": "unknown access key id",
    "NoSuchBucket": "the bucket does not exist",
    "AccessDenied": "the key may not write to this bucket",
}
_ENV_NAMES = {
    "endpoint_url": "R2_ENDPOINT_URL",
    "access_key_id": "R2_ACCESS_KEY_ID",
    "secret_access_key": "R2_SECRET_ACCESS_KEY",
    "bucket_name": "R2_BUCKET_NAME",
}


@dataclass(frozen=True)
class StorageConfig:
    """Where and how one result is uploaded."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    bucket_name: str
    key_prefix: str = Settings.r2_key_prefix  # the defaults are Settings' (R2_KEY_PREFIX, R2_PRESIGN_EXPIRES_S)
    presign_expires_s: int = Settings.presign_expires_s
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    read_timeout_s: float = READ_TIMEOUT_S
    max_attempts: int = MAX_ATTEMPTS
    total_timeout_s: float = UPLOAD_TOTAL_TIMEOUT_S


@dataclass(frozen=True)
class Delivery:
    """How the caller gets the video: ``url`` + ``key`` (+ when the URL expires) after an upload, else
    ``video_base64``."""

    url: Optional[str] = field(default=None, repr=False)
    key: Optional[str] = None
    video_base64: Optional[str] = field(default=None, repr=False)
    expires_at: Optional[str] = None  # ISO 8601 UTC, e.g. "2026-12-05T10:00:00Z"

    def as_result(self) -> dict:
        """The result fields: video_url, expires_at and r2_key, or video_base64."""
        if self.video_base64 is not None:
            return {"video_base64": self.video_base64}
        return {"video_url": self.url, "expires_at": self.expires_at, "r2_key": self.key}


def resolve_storage(r2: Optional[R2Credentials], settings: Settings) -> Optional[StorageConfig]:
    """The storage to use for this job, or None for an inline result. Raises InvalidInput when half-configured.

    Each of the four fields comes from the job's ``r2`` object when given there, else from its environment
    variable. All four empty = no storage. Some but not all = an error naming what is missing.
    """
    merged = {}
    for name in _ENV_NAMES:
        from_job = getattr(r2, name) if r2 is not None else None
        merged[name] = from_job or getattr(settings, f"r2_{name}")
    missing = [name for name, value in merged.items() if not value]
    if len(missing) == len(merged):
        return None
    if missing:
        where = ", ".join(f"r2.{name} or {_ENV_NAMES[name]}" for name in missing)
        raise InvalidInput(f"storage is only partly configured; also give {where}")
    scheme = urlsplit(merged["endpoint_url"]).scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidInput("the R2 endpoint_url must be an http:// or https:// URL")
    if r2 is not None and r2.endpoint_url:
        _check_job_endpoint(r2.endpoint_url, settings.allow_loopback_urls)
    return StorageConfig(
        key_prefix=settings.r2_key_prefix,
        presign_expires_s=settings.presign_expires_s,
        **merged,
    )


def _check_job_endpoint(endpoint_url: str, allow_loopback: bool) -> None:
    """A caller-given endpoint must not point the worker at a private network (the operator's env one is trusted).

    Checked by resolving, like a download; boto3 then resolves again itself, so this stops plain mistakes and
    plain SSRF, not a DNS answer that changes between the two look-ups.
    """
    parts = urlsplit(endpoint_url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        resolve_checked(parts.hostname or "", port, allow_loopback, refusal="r2.endpoint_url is not allowed: host")
    except DownloadFailed as error:
        message = error.message if error.message.startswith("r2.") else f"r2.endpoint_url: {error.message}"
        raise InvalidInput(message) from None


def result_key(prefix: str, job_id: str) -> str:
    """Object key of a job's video: ``<prefix><job id>.mp4`` (job id already made safe by the handler)."""
    return f"{prefix}{job_id}.mp4"


def make_client(config: StorageConfig) -> Any:
    """A boto3 S3 client configured for R2 (and any S3 API that checks SigV4, such as Swift's s3api)."""
    import boto3
    from botocore.config import Config

    boto_config = Config(
        region_name="auto",
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "total_max_attempts": config.max_attempts},
        connect_timeout=config.connect_timeout_s,
        read_timeout=config.read_timeout_s,
    )
    return boto3.client(
        "s3",
        endpoint_url=config.endpoint_url,
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key,
        config=boto_config,
    )


class _Deadline:
    """Stops botocore's retries once ``seconds`` have passed: its ``before-send`` hook refuses every attempt after
    the first that would start later (the exception it raises is not retryable, so botocore gives up). It also
    keeps the last failure, which that exception would otherwise hide."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.started = clock()
        self.seconds = seconds
        self.attempts = 0
        self.last_failure = "no answer"

    def attach(self, client: Any, operation: str) -> None:
        client.meta.events.register(f"before-send.s3.{operation}", self.before_send)
        client.meta.events.register(f"needs-retry.s3.{operation}", self.note_failure)

    def before_send(self, **_: Any) -> None:
        if self.attempts and self.elapsed() > self.seconds:
            raise _OutOfTime()
        self.attempts += 1

    def note_failure(self, response: Any = None, caught_exception: Any = None, **_: Any) -> None:
        if isinstance(caught_exception, _OutOfTime):
            return None
        if caught_exception is not None:
            self.last_failure = type(caught_exception).__name__
        elif response is not None:
            status = response[0].status_code
            code = (response[1] or {}).get("Error", {}).get("Code")
            self.last_failure = f"S3 error {code} (HTTP {status})" if code else f"HTTP {status}"
        return None  # botocore's own retry handler decides

    def elapsed(self) -> float:
        return self.clock() - self.started


class _OutOfTime(Exception):
    """Raised by :class:`_Deadline` to stop botocore's retries."""


def upload_video(
    path: str, config: StorageConfig, job_id: str, clock: Callable[[], float] = time.monotonic
) -> Delivery:
    """PUT the video as ``video/mp4`` and return a presigned GET for it. Raises UploadFailed.

    Retries (botocore "standard") stop when ``config.max_attempts`` are spent or ``config.total_timeout_s`` has
    passed, whichever comes first; ``clock`` is that deadline's clock.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    key = result_key(config.key_prefix, job_id)
    client = make_client(config)
    deadline = _Deadline(config.total_timeout_s, clock)
    deadline.attach(client, "PutObject")
    try:
        with open(path, "rb") as body:
            client.put_object(Bucket=config.bucket_name, Key=key, Body=body, ContentType=CONTENT_TYPE)
        expires_at = _expiry(config.presign_expires_s)  # before signing: never later than the URL's own expiry
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": config.bucket_name, "Key": key}, ExpiresIn=config.presign_expires_s
        )
    except _OutOfTime:
        raise UploadFailed(
            f"upload to bucket {config.bucket_name!r} failed: {deadline.last_failure}; gave up after "
            f"{deadline.attempts} attempt(s) in {deadline.elapsed():.1f} s (the limit is {config.total_timeout_s:g} s)"
        ) from None
    except ClientError as error:
        raise UploadFailed(
            f"upload to bucket {config.bucket_name!r} failed: {_s3_error(error)} after {deadline.attempts} "
            "attempt(s); check the R2 credentials, bucket name and endpoint"
        ) from None
    except BotoCoreError as error:
        raise UploadFailed(
            f"upload to bucket {config.bucket_name!r} failed: {type(error).__name__} "
            f"talking to {endpoint_host(config.endpoint_url)} after {deadline.attempts} attempt(s)"
        ) from None
    logger.info("uploaded %d bytes to bucket %s key %s", os.path.getsize(path), config.bucket_name, key)
    return Delivery(url=url, key=key, expires_at=expires_at)


def check_destination(config: StorageConfig) -> None:
    """Raise UploadFailed unless the bucket takes this worker's uploads; seconds, not a render's worth of time.

    ``HeadBucket`` first (one cheap authenticated call). Its refusal carries no error code, so a put of an empty
    object under the key prefix follows: it succeeds where only HEAD is not allowed (then it is deleted), and its
    refusal names the problem (wrong secret, unknown key, missing bucket, no write access).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    client = make_client(
        replace(
            config,
            connect_timeout_s=CHECK_CONNECT_TIMEOUT_S,
            read_timeout_s=CHECK_READ_TIMEOUT_S,
            max_attempts=CHECK_ATTEMPTS,
        )
    )
    bucket = config.bucket_name
    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError:
        pass  # the put below says why
    except BotoCoreError as error:
        raise UploadFailed(
            f"cannot reach the storage endpoint {endpoint_host(config.endpoint_url)} "
            f"for bucket {bucket!r}: {type(error).__name__}"
        ) from None
    key = f"{config.key_prefix}.write-check-{uuid.uuid4().hex}"
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"")
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "unknown")
        meaning = f" ({_S3_MEANING[code]})" if code in _S3_MEANING else ""
        raise UploadFailed(
            f"bucket {bucket!r} does not take uploads: {_s3_error(error)}{meaning}; "
            "check the R2 credentials, bucket name and endpoint"
        ) from None
    except BotoCoreError as error:
        raise UploadFailed(
            f"cannot reach the storage endpoint {endpoint_host(config.endpoint_url)} "
            f"for bucket {bucket!r}: {type(error).__name__}"
        ) from None
    try:
        client.delete_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as error:
        logger.warning(
            "storage check: the empty object %s stays in bucket %s (delete failed: %s)",
            key,
            bucket,
            type(error).__name__,
        )


def inline_video(path: str, max_bytes: int, already_inline: int = 0) -> Delivery:
    """The video as base64 when it and the ``already_inline`` bytes this job returned (streamed segments) are at most
    ``max_bytes``; above that UploadFailed says to configure R2."""
    size = os.path.getsize(path)
    if size + already_inline > max_bytes:
        earlier = f" (with {_size_text(already_inline)} of segments already returned)" if already_inline else ""
        raise UploadFailed(
            f"the video is {_size_text(size)}{earlier}, above the {_size_text(max_bytes)} inline limit "
            "(INLINE_RESULT_MAX_BYTES); configure R2 (the job's r2 object or the R2_* environment variables)"
        )
    with open(path, "rb") as handle:
        return Delivery(video_base64=base64.b64encode(handle.read()).decode("ascii"))


def deliver(
    path: str, config: Optional[StorageConfig], name: str, inline_max_bytes: int, already_inline: int = 0
) -> Delivery:
    """Upload as ``<prefix><name>.mp4`` when storage is configured, else inline (see :func:`inline_video`)."""
    if config is None:
        return inline_video(path, inline_max_bytes, already_inline)
    return upload_video(path, config, name)


def _s3_error(error: Any) -> str:
    """``S3 error <Code> (HTTP <status>)`` from a botocore ClientError."""
    code = error.response.get("Error", {}).get("Code", "unknown")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
    return f"S3 error {code} (HTTP {status})"


def _expiry(seconds: int) -> str:
    """The moment a presigned URL made now stops working, ISO 8601 UTC to the second."""
    moment = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _size_text(n_bytes: int) -> str:
    return f"{n_bytes / 1048576:.1f} MB" if n_bytes >= 1048576 else f"{n_bytes} bytes"


def endpoint_host(endpoint_url: str) -> str:
    """``scheme://host[:port]`` of an endpoint: what a message may show of it (no path, query or credentials)."""
    parts = urlsplit(endpoint_url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
