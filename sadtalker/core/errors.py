"""Typed errors carrying the API's stable ``error_type`` codes (docs/api.md, "Errors").

Everything a job can fail with is a :class:`WorkerError`; ``handler._error`` turns one into the
response dict. Messages say what went wrong and what to do, and never contain secrets.
"""

from typing import Iterable


class WorkerError(Exception):
    """Base class. ``error_type`` is the stable code returned to the caller."""

    error_type = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(WorkerError):
    error_type = "invalid_input"


def size_not_available(size: int, sizes: Iterable[int]) -> InvalidInput:
    """The caller's error for a render size this worker lacks: the sizes it has, no path, no operator hint."""
    offered = " or ".join(str(s) for s in sorted(sizes))
    return InvalidInput(f"size {size} is not available on this worker; it renders size {offered}")


class DownloadFailed(WorkerError):
    error_type = "download_failed"


class UnsupportedMedia(WorkerError):
    error_type = "unsupported_media"


class NoFaceDetected(WorkerError):
    error_type = "no_face_detected"


class AudioTooLong(WorkerError):
    error_type = "audio_too_long"


class UploadFailed(WorkerError):
    error_type = "upload_failed"


class InternalError(WorkerError):
    error_type = "internal_error"


class JobCancelled(WorkerError):
    """RunPod cancelled the job (``/cancel`` or its stop signal); the pipeline stops at the next batch."""

    error_type = "cancelled"


class CheckpointError(WorkerError):
    """A weight file is missing, unreadable, or does not match the network (keys, shapes)."""

    error_type = "internal_error"
