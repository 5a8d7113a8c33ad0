"""Worker settings, read from the environment by one function.

``Settings.from_env(env)`` takes any mapping (default ``os.environ``) so tests pass a dict. Every
setting has a default and a comment; README's "Environment variables" table lists the same names.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional

MB = 1024 * 1024


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"environment variable {name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from None
    if not value >= minimum:  # also rejects NaN
        raise ValueError(f"environment variable {name} must be >= {minimum}, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"environment variable {name} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in allowed:
        raise ValueError(f"environment variable {name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    # Folder holding every weight file the worker loads (scripts/download_models.sh fills it).
    checkpoints_dir: str = "./checkpoints"
    # Face finder: "retinaface" (official RetinaFace + 98-point FAN) or "dlib" (no downloaded weights).
    face_detector: str = "retinaface"
    # "cuda", "cpu", or "auto" (CUDA when available).
    device: str = "auto"
    # Frames rendered per generator call; changes speed and memory, never the result.
    render_batch_size: int = 8
    # When to load the 512 renderer: "startup" or "lazy" (on the first size-512 job).
    load_512: str = "lazy"

    # Download limits.
    max_image_bytes: int = 20 * MB
    max_audio_bytes: int = 100 * MB
    download_connect_timeout_s: float = 10.0
    download_read_timeout_s: float = 30.0
    # Longest one whole download (redirects and body) may take, so a trickling server cannot hold a job.
    download_total_timeout_s: float = 300.0
    # Allow URLs that resolve to loopback addresses (tests only; never in production).
    allow_loopback_urls: bool = False

    # Media limits.
    max_audio_seconds: float = 600.0
    max_image_side: int = 4096

    # Long audio is rendered in chunks of at most this many seconds, each from the source image.
    chunk_seconds: float = 45.0
    # Preprocessing results (crop, 3DMM coefficients) kept per warm worker.
    preprocess_cache_size: int = 16

    # Storage (Cloudflare R2 or any S3 API). Empty = not configured by the environment.
    r2_endpoint_url: str = ""
    r2_access_key_id: str = ""
    r2_secret_access_key: str = ""
    r2_bucket_name: str = ""
    r2_key_prefix: str = "sadtalker/results/"
    presign_expires_s: int = 3600
    # Without storage, results up to this size come back inline as base64.
    inline_result_max_bytes: int = 15 * MB

    def __repr__(self) -> str:  # never print the secret
        secret = "***" if self.r2_secret_access_key else ""
        fields = ", ".join(
            f"{name}={secret if name == 'r2_secret_access_key' else getattr(self, name)!r}"
            for name in self.__dataclass_fields__
        )
        return f"Settings({fields})"

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Settings":
        env = os.environ if env is None else env
        d = cls()
        return cls(
            checkpoints_dir=env.get("CHECKPOINTS_DIR") or d.checkpoints_dir,
            face_detector=_choice(env, "FACE_DETECTOR", d.face_detector, ("retinaface", "dlib")),
            device=_choice(env, "DEVICE", d.device, ("auto", "cuda", "cpu")),
            render_batch_size=_int(env, "RENDER_BATCH_SIZE", d.render_batch_size, 1),
            load_512=_choice(env, "LOAD_512", d.load_512, ("startup", "lazy")),
            max_image_bytes=_int(env, "MAX_IMAGE_BYTES", d.max_image_bytes, 1),
            max_audio_bytes=_int(env, "MAX_AUDIO_BYTES", d.max_audio_bytes, 1),
            download_connect_timeout_s=_float(env, "DOWNLOAD_CONNECT_TIMEOUT_S", d.download_connect_timeout_s, 0.001),
            download_read_timeout_s=_float(env, "DOWNLOAD_READ_TIMEOUT_S", d.download_read_timeout_s, 0.001),
            download_total_timeout_s=_float(env, "DOWNLOAD_TOTAL_TIMEOUT_S", d.download_total_timeout_s, 0.001),
            allow_loopback_urls=_bool(env, "ALLOW_LOOPBACK_URLS", d.allow_loopback_urls),
            max_audio_seconds=_float(env, "MAX_AUDIO_SECONDS", d.max_audio_seconds, 0.001),
            max_image_side=_int(env, "MAX_IMAGE_SIDE", d.max_image_side, 256),
            chunk_seconds=_float(env, "CHUNK_SECONDS", d.chunk_seconds, 5.0),
            preprocess_cache_size=_int(env, "PREPROCESS_CACHE_SIZE", d.preprocess_cache_size, 0),
            r2_endpoint_url=env.get("R2_ENDPOINT_URL", ""),
            r2_access_key_id=env.get("R2_ACCESS_KEY_ID", ""),
            r2_secret_access_key=env.get("R2_SECRET_ACCESS_KEY", ""),
            r2_bucket_name=env.get("R2_BUCKET_NAME", ""),
            r2_key_prefix=env.get("R2_KEY_PREFIX", d.r2_key_prefix),
            presign_expires_s=_int(env, "R2_PRESIGN_EXPIRES_S", d.presign_expires_s, 1),
            inline_result_max_bytes=_int(env, "INLINE_RESULT_MAX_BYTES", d.inline_result_max_bytes, 1),
        )
