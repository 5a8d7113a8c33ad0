"""Job input -> frozen options, by one pure function.

``parse_job_input(raw)`` checks every field and rule of the API (docs/api.md): exactly one image source and one
audio source, strict JSON types (``true`` is not an integer, ``"256"`` is not a number, NaN is not a number),
ranges, enums, the ``r2`` object, ``seed``, and unknown fields (named in the error). Every failure is
:class:`~sadtalker.core.errors.InvalidInput` saying what is allowed. Base64 payloads are decoded here, so a job with
broken base64 fails before any download or model work. Nothing here touches the network, the disk or a model.

``null`` counts as "absent" only for the fields whose default is none (the four sources, ``r2``, ``seed``); a
field with a default (``still_mode``, ``size``, ...) must have a value of its type.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple, TypeVar, Union
from urllib.parse import urlsplit

from sadtalker.core.constants import (
    CAMERA_ANGLE_RANGE,
    CAMERA_KEYFRAMES_MAX,
    ENHANCERS,
    EXPRESSION_SCALE_RANGE,
    FPS_RANGE,
    IDLE_SECONDS_RANGE,
    PASTE_METHODS,
    POSE_SCALE_RANGE,
    POSE_STYLE_RANGE,
    PREPROCESS_MODES,
    REF_INFOS,
    SEED_RANGE,
    SIZES,
    UPSCALES,
    is_full,
)
from sadtalker.core.contract import RenderOptions
from sadtalker.core.errors import InvalidInput

URL_SCHEMES = ("http", "https")
MAX_URL_CHARS = 4096
R2_FIELDS = ("endpoint_url", "access_key_id", "secret_access_key", "bucket_name")

_SOURCE_FIELDS = ("image_url", "image_base64", "audio_url", "audio_base64", "ref_video_url", "ref_video_base64")
_DATA_URI = re.compile(r"^data:[^,]*?;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class MediaSource:
    """Where one input (image or audio) comes from: a URL to download, or bytes decoded from base64."""

    # The input field it came from ("image_url", "audio_base64", ...), used in error messages.
    field: str
    # http(s) URL to download, or None when the data came inline.
    url: Optional[str] = None
    # Decoded base64 payload, or None for a URL.
    data: Optional[bytes] = dataclasses.field(default=None, repr=False)  # `field` is an attribute here

    def __repr__(self) -> str:  # never print a URL's query string or megabytes of payload
        if self.url is not None:
            parts = urlsplit(self.url)
            return f"MediaSource({self.field}, {parts.scheme}://{parts.hostname}{parts.path})"
        return f"MediaSource({self.field}, {len(self.data or b'')} bytes)"


@dataclass(frozen=True)
class R2Credentials:
    """The job's ``r2`` object. Any field left out falls back to its ``R2_*`` environment variable."""

    endpoint_url: Optional[str] = None
    access_key_id: Optional[str] = None
    secret_access_key: Optional[str] = dataclasses.field(default=None, repr=False)
    bucket_name: Optional[str] = None


@dataclass(frozen=True)
class JobOptions:
    """One job's validated input: where the media come from, how to render, where the video goes."""

    image: MediaSource
    # None: idle mode (``render.idle_seconds``) or the sound of the reference video.
    audio: Optional[MediaSource]
    render: RenderOptions = RenderOptions()
    # Storage credentials from the payload, or None (environment, else inline result).
    r2: Optional[R2Credentials] = None
    # Random seed; same inputs + same seed = same video. None = a fresh seed per job.
    seed: Optional[int] = None
    # The reference video (ref_video_url / ref_video_base64), or None.
    ref_video: Optional[MediaSource] = None


def parse_job_input(raw: Any) -> JobOptions:
    """Validate the job's ``input`` object and return :class:`JobOptions`. Raises InvalidInput."""
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"job input must be a JSON object, got {_type_name(raw)}")
    _reject_unknown(raw, _ALLOWED_FIELDS, where="input")
    image = _source(raw, "image")
    assert image is not None  # required: _source raised InvalidInput if it was missing
    ref_video = _source(raw, "ref_video", required=False)
    idle_seconds = _optional_number(raw, "idle_seconds", IDLE_SECONDS_RANGE)
    audio = _source(raw, "audio", required=idle_seconds is None and ref_video is None)
    if audio is not None and idle_seconds is not None:
        raise InvalidInput(f"give either {audio.field} or idle_seconds, not both (idle mode animates silence)")
    ref_info = _choice(raw, "ref_info", "pose", REF_INFOS) if ref_video is not None else None
    if ref_video is None and raw.get("ref_info") is not None:
        raise InvalidInput("ref_info needs a reference video: give ref_video_url or ref_video_base64")
    defaults = RenderOptions()
    preprocess = _choice(raw, "preprocess", defaults.preprocess, PREPROCESS_MODES)
    render = RenderOptions(
        still_mode=_bool(raw, "still_mode", defaults.still_mode),
        enhancer=_choice(raw, "enhancer", defaults.enhancer, ENHANCERS),
        preprocess=preprocess,
        size=_int_choice(raw, "size", defaults.size, SIZES),
        expression_scale=_number(raw, "expression_scale", defaults.expression_scale, EXPRESSION_SCALE_RANGE),
        pose_style=_int_range(raw, "pose_style", defaults.pose_style, POSE_STYLE_RANGE),
        upscale=_int_choice(raw, "upscale", None, UPSCALES),
        input_yaw=_angles(raw, "input_yaw"),
        input_pitch=_angles(raw, "input_pitch"),
        input_roll=_angles(raw, "input_roll"),
        pose_scale=_number(raw, "pose_scale", defaults.pose_scale, POSE_SCALE_RANGE),
        use_blink=_bool(raw, "use_blink", defaults.use_blink),
        idle_seconds=idle_seconds,
        ref_info=ref_info,
        paste=_paste(raw, preprocess, defaults.paste),
        fps=_int_range(raw, "fps", defaults.fps, FPS_RANGE),
    )
    return JobOptions(
        image=image, audio=audio, render=render, r2=_r2(raw.get("r2")), seed=_seed(raw.get("seed")), ref_video=ref_video
    )


_ALLOWED_FIELDS = _SOURCE_FIELDS + (
    "still_mode",
    "enhancer",
    "preprocess",
    "size",
    "expression_scale",
    "pose_style",
    "upscale",
    "input_yaw",
    "input_pitch",
    "input_roll",
    "pose_scale",
    "use_blink",
    "idle_seconds",
    "ref_info",
    "paste",
    "fps",
    "r2",
    "seed",
)


def _json_type(value: Any) -> str:
    """The JSON name of a Python value's type with the value, for messages ("boolean true", "string 'abc'").

    Only for fields whose value is no secret: ``r2`` and its fields, and the URL and base64 fields, use
    :func:`_type_name` (a URL may carry credentials or a signed query, an ``r2`` string the secret key)."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    return _type_name(value)


def _type_name(value: Any) -> str:
    """The JSON name of a Python value's type, without its value ("string", "boolean", not "str")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _reject_unknown(raw: Mapping, allowed: tuple, where: str) -> None:
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise InvalidInput(
            f"unknown field(s) in {where}: {', '.join(unknown)}; allowed fields are {', '.join(allowed)}"
        )


def _source(raw: Mapping, kind: str, required: bool = True) -> Optional[MediaSource]:
    url_field, b64_field = f"{kind}_url", f"{kind}_base64"
    given = [name for name in (url_field, b64_field) if raw.get(name) is not None]
    if not given and not required:
        return None
    if len(given) != 1:
        problem = "both were given" if given else "neither was given"
        if kind == "audio" and not given:
            problem += "; without audio, give idle_seconds or a reference video with sound"
        which = "exactly" if required else "at most"
        raise InvalidInput(f"give {which} one of {url_field} or {b64_field} ({problem})")
    name = given[0]
    value = raw[name]
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, got {_type_name(value)}")
    if name == url_field:
        return MediaSource(field=name, url=_url(name, value))
    return MediaSource(field=name, data=_base64(name, value))


def _url(name: str, value: str) -> str:
    value = value.strip()
    if len(value) > MAX_URL_CHARS:
        raise InvalidInput(f"{name} is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- reading it raises ValueError for a bad port
    except ValueError as error:
        raise InvalidInput(f"{name} is not a valid URL ({error})") from None
    if parts.scheme.lower() not in URL_SCHEMES:
        shown = parts.scheme or "none"
        raise InvalidInput(f"{name} must be an http:// or https:// URL (scheme {shown!r} is not allowed)")
    if not parts.hostname:
        raise InvalidInput(f"{name} has no host name")
    return value


def _base64(name: str, value: str) -> bytes:
    payload = _DATA_URI.sub("", value.lstrip(), count=1)
    payload = _WHITESPACE.sub("", payload)
    if not payload:
        raise InvalidInput(f"{name} is empty")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            f"{name} is not valid base64 (standard alphabet A-Z a-z 0-9 + /, '=' padding; "
            "a data:<type>;base64, prefix is allowed)"
        ) from None
    if not data:
        raise InvalidInput(f"{name} decodes to zero bytes")
    return data


def _bool(raw: Mapping, name: str, default: bool) -> bool:
    if name not in raw:
        return default
    value = raw[name]
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false, got {_json_type(value)}")
    return value


def _choice(raw: Mapping, name: str, default: str, allowed: tuple) -> str:
    if name not in raw:
        return default
    value = raw[name]
    if not isinstance(value, str) or value not in allowed:
        shown = _json_type(value)
        if isinstance(value, str):
            shown = repr(value) if len(value) <= 40 else f"{value[:40]!r}..."
        raise InvalidInput(f"{name} must be one of {', '.join(map(repr, allowed))}, got {shown}")
    return value


def _paste(raw: Mapping, preprocess: str, default: str) -> str:
    """``paste``: one of PASTE_METHODS, and only with a preprocess mode that pastes back (full / extfull)."""
    method = _choice(raw, "paste", default, PASTE_METHODS)
    if "paste" in raw and not is_full(preprocess):
        raise InvalidInput(
            f"paste applies only to preprocess 'full' or 'extfull' (the face is pasted back into "
            f"the photo there); with preprocess {preprocess!r} leave it out"
        )
    return method


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_Default = TypeVar("_Default", int, Optional[int])


def _int_choice(raw: Mapping, name: str, default: _Default, allowed: tuple) -> Union[int, _Default]:
    if name not in raw:
        return default
    value = raw[name]
    if not _is_integer(value) or value not in allowed:
        raise InvalidInput(f"{name} must be the integer {' or '.join(map(str, allowed))}, got {_json_type(value)}")
    return value


def _int_range(raw: Mapping, name: str, default: int, bounds: tuple) -> int:
    if name not in raw:
        return default
    return _checked_int(name, raw[name], bounds)


def _checked_int(name: str, value: Any, bounds: tuple) -> int:
    low, high = bounds
    if not _is_integer(value) or not low <= value <= high:
        raise InvalidInput(f"{name} must be an integer from {low} to {high}, got {_json_type(value)}")
    return value


def _number(raw: Mapping, name: str, default: float, bounds: tuple) -> float:
    if name not in raw:
        return default
    value = raw[name]
    low, high = bounds
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or not low <= value <= high:
        raise InvalidInput(f"{name} must be a number from {low:g} to {high:g}, got {_json_type(value)}")
    return float(value)


def _angles(raw: Mapping, name: str) -> Optional[Tuple[float, ...]]:
    """A camera keyframe list: 1 to 16 finite numbers, degrees in [-90, 90]. null or absent = None."""
    value = raw.get(name)
    if value is None:
        return None
    low, high = CAMERA_ANGLE_RANGE
    rule = f"a list of 1 to {CAMERA_KEYFRAMES_MAX} numbers from {low:g} to {high:g} (degrees)"
    if not isinstance(value, (list, tuple)):
        hint = f", e.g. [{value!r}]" if _is_number(value) else ""
        raise InvalidInput(f"{name} must be {rule}, got {_json_type(value)}{hint}")
    if not 1 <= len(value) <= CAMERA_KEYFRAMES_MAX:
        raise InvalidInput(f"{name} must be {rule}, got a list of {len(value)}")
    for index, item in enumerate(value):
        if not _is_number(item) or not math.isfinite(item) or not low <= item <= high:
            raise InvalidInput(f"{name} must be {rule}; item {index} is {_json_type(item)}")
    return tuple(float(item) for item in value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _optional_number(raw: Mapping, name: str, bounds: tuple) -> Optional[float]:
    """A number in ``bounds``, or None when absent or null."""
    if raw.get(name) is None:
        return None
    return _number(raw, name, bounds[0], bounds)


def _seed(value: Any) -> Optional[int]:
    if value is None:
        return None
    return _checked_int("seed", value, SEED_RANGE)


def _r2(value: Any) -> Optional[R2Credentials]:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput(f"r2 must be an object with {', '.join(R2_FIELDS)}, got {_type_name(value)}")
    _reject_unknown(value, R2_FIELDS, where="r2")
    fields = {}
    for name in R2_FIELDS:
        item = value.get(name)
        if item is None:
            continue
        if not isinstance(item, str) or not item.strip():
            shown = "an empty string" if isinstance(item, str) else _type_name(item)
            raise InvalidInput(f"r2.{name} must be a non-empty string, got {shown}")
        fields[name] = item.strip()
    if "endpoint_url" in fields:
        fields["endpoint_url"] = _url("r2.endpoint_url", fields["endpoint_url"])
    return R2Credentials(**fields)
