"""Deliver the finished video: upload to Cloudflare R2 (any S3 API) and presign a GET, or return it inline.

Credentials come from the job's ``r2`` object, field by field, else from the ``R2_*`` environment variables.
With neither, the video comes back as base64 up to ``INLINE_RESULT_MAX_BYTES``. The boto3 client uses the
configuration R2 needs: region ``auto``, SigV4, path-style addressing, and checksums only where the operation
requires them (boto3 >= 1.36 adds CRC checksums by default that R2 rejects). botocore's "standard" retry mode
retries 5xx answers, throttling and timeouts.

Failures are :class:`UploadFailed` naming the bucket and the S3 error code, never a secret. A presigned URL
is a bearer credential: it is returned to the caller and never logged.
"""
from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlsplit

from sadtalker.worker.download import resolve_checked
from sadtalker.core.errors import DownloadFailed, InvalidInput, UploadFailed
from sadtalker.worker.options import R2Credentials
from sadtalker.worker.settings import Settings

logger = logging.getLogger(__name__)

CONTENT_TYPE = "video/mp4"
MAX_ATTEMPTS = 4  # first try + 3 retries on 5xx / timeouts
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
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


@dataclass(frozen=True)
class Delivery:
    """How the caller gets the video: ``url`` + ``key`` after an upload, else ``video_base64``."""

    url: Optional[str] = field(default=None, repr=False)
    key: Optional[str] = None
    video_base64: Optional[str] = field(default=None, repr=False)

    def as_result(self) -> dict:
        """The result fields: video_url and r2_key, or video_base64."""
        if self.video_base64 is not None:
            return {"video_base64": self.video_base64}
        return {"video_url": self.url, "r2_key": self.key}


def resolve_storage(r2: Optional[R2Credentials], settings: Settings) -> Optional[StorageConfig]:
    """The storage to use for this job, or None for an inline result. Raises InvalidInput when half-configured.

    Each of the four fields comes from the job's ``r2`` object when given there, else from its environment
    variable. All four empty = no storage. Some but not all = an error naming what is missing.
    """
    merged = {}
    for name, env_name in _ENV_NAMES.items():
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
        resolve_checked(parts.hostname or "", port, allow_loopback)
    except DownloadFailed as error:
        raise InvalidInput(f"r2.endpoint_url is not allowed: {error.message}") from None


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


def upload_video(path: str, config: StorageConfig, job_id: str) -> Delivery:
    """PUT the video as ``video/mp4`` and return a presigned GET for it. Raises UploadFailed."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = result_key(config.key_prefix, job_id)
    client = make_client(config)
    try:
        with open(path, "rb") as body:
            client.put_object(Bucket=config.bucket_name, Key=key, Body=body, ContentType=CONTENT_TYPE)
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": config.bucket_name, "Key": key}, ExpiresIn=config.presign_expires_s
        )
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "unknown")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        raise UploadFailed(
            f"upload to bucket {config.bucket_name!r} failed: S3 error {code} (HTTP {status}); "
            "check the R2 credentials, bucket name and endpoint"
        ) from None
    except BotoCoreError as error:
        raise UploadFailed(
            f"upload to bucket {config.bucket_name!r} failed: {type(error).__name__} "
            f"talking to {_endpoint_host(config.endpoint_url)}"
        ) from None
    logger.info("uploaded %d bytes to bucket %s key %s", os.path.getsize(path), config.bucket_name, key)
    return Delivery(url=url, key=key)


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


def deliver(path: str, config: Optional[StorageConfig], name: str, inline_max_bytes: int,
            already_inline: int = 0) -> Delivery:
    """Upload as ``<prefix><name>.mp4`` when storage is configured, else inline (see :func:`inline_video`)."""
    if config is None:
        return inline_video(path, inline_max_bytes, already_inline)
    return upload_video(path, config, name)


def _size_text(n_bytes: int) -> str:
    return f"{n_bytes / 1048576:.1f} MB" if n_bytes >= 1048576 else f"{n_bytes} bytes"


def _endpoint_host(endpoint_url: str) -> str:
    parts = urlsplit(endpoint_url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
