"""Decode a job's image and audio into arrays, refusing what the pipeline cannot use.

Image: PNG, JPEG or WebP (the first frame of an animated file), EXIF orientation applied, alpha dropped, returned
as RGB uint8 (H, W, 3). Sides from :data:`MIN_IMAGE_SIDE` to the ``MAX_IMAGE_SIDE`` setting, checked from the
header before the pixels are decoded. Other formats and corrupt data are ``unsupported_media``; a size outside
the range is ``invalid_input``.

Audio: anything ffmpeg decodes. ffmpeg (argv list, no shell) writes float32 WAV at the file's own rate to a pipe,
channels are averaged and the signal is resampled to 16 kHz with soxr "HQ", the way ``librosa.load(sr=16000)``
does it in the reference, so a 16 kHz file passes through untouched. That is what the models hear; the file
itself stays in the job's work folder (:class:`~sadtalker.core.contract.SourceAudio`) and goes into the video.
ffmpeg stops decoding a little after the ``MAX_AUDIO_SECONDS`` limit, so an hours-long file costs neither the time
nor the memory to decode it all.
Undecodable data is ``unsupported_media`` with ffmpeg's stderr; too long is ``audio_too_long``; less than one
video frame of audio (40 ms) is ``invalid_input``. Silent audio is accepted on purpose (it gives a video of
the face at rest: blinks and head motion, closed mouth) and logged.
"""

from __future__ import annotations

import io
import logging
import struct
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sadtalker.core.constants import MODEL_FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from sadtalker.core.contract import SourceAudio
from sadtalker.core.errors import AudioTooLong, InvalidInput, UnsupportedMedia
from sadtalker.output.ffmpeg import ffmpeg_exe
from sadtalker.worker.download import DownloadLimits, fetch
from sadtalker.worker.options import MediaSource

logger = logging.getLogger(__name__)

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
MIN_IMAGE_SIDE = 256  # the renderer's smallest face size

MIN_AUDIO_SAMPLES = SAMPLES_PER_FRAME  # one video frame of audio
SILENCE_PEAK = 1e-4  # about -80 dBFS: below this the whole track is treated as silence
DECODE_MARGIN_S = 1.0  # decode this much past the limit, enough to know the file is longer
STDERR_TAIL_CHARS = 1500
FFMPEG_TIMEOUT_S = 600.0

_WAVE_FLOAT = 3
_WAVE_EXTENSIBLE = 0xFFFE


@dataclass(frozen=True)
class DecodedAudio:
    """Mono audio at 16 kHz for the models, and the recording as it was sent."""

    # (N,) float32, nominally in [-1, 1].
    samples: np.ndarray = field(repr=False)
    # N / 16000: the exact length of what the pipeline animates.
    duration_s: float
    # Largest absolute sample value.
    peak: float
    # The caller's file, its rate and channels.
    source: SourceAudio

    @property
    def silent(self) -> bool:
        return self.peak < SILENCE_PEAK


def source_bytes(source: MediaSource, limits: DownloadLimits) -> bytes:
    """The raw bytes of an input: downloaded from its URL, or its decoded base64 (same size cap for both)."""
    if source.data is None:
        return fetch(source.url or "", limits, what=source.field)
    if len(source.data) > limits.max_bytes:
        raise InvalidInput(f"{source.field} is {len(source.data)} bytes, above the {limits.max_bytes} byte limit")
    return source.data


def decode_image(data: bytes, max_side: int) -> np.ndarray:
    """Decode PNG/JPEG/WebP bytes to RGB uint8 (H, W, 3), upright per EXIF. Raises UnsupportedMedia/InvalidInput."""
    try:
        with warnings.catch_warnings():
            # A huge pixel count is refused below by its side lengths; make Pillow's own warning an error here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            _check_image_header(image, max_side)
            image.load()
            image = ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise UnsupportedMedia("the image is not a format we can read; send PNG, JPEG or WebP") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInput(f"the image has too many pixels; the largest side allowed is {max_side}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UnsupportedMedia(f"the image data is corrupt or truncated ({error})") from None
    return _to_rgb(image)


def _check_image_header(image: Image.Image, max_side: int) -> None:
    if image.format not in IMAGE_FORMATS:
        raise UnsupportedMedia(f"the image is {image.format or 'of an unknown format'}; send PNG, JPEG or WebP")
    width, height = image.size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InvalidInput(f"the image is {width}x{height}; it must be at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    if max(width, height) > max_side:
        raise InvalidInput(f"the image is {width}x{height}; the largest side allowed is {max_side} (MAX_IMAGE_SIDE)")


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> RGB uint8; alpha is dropped, 16-bit grey is scaled down (not clipped)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        grey = np.asarray(image).astype(np.float64)
        scale = 257.0 if grey.max(initial=0) > 255 else 1.0
        grey8 = np.clip(np.round(grey / scale), 0, 255).astype(np.uint8)
        return np.repeat(grey8[:, :, None], 3, axis=2)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def decode_audio(data: bytes, workdir: Union[str, Path], max_seconds: float) -> DecodedAudio:
    """Decode any ffmpeg-readable audio to 16 kHz mono float32. Raises UnsupportedMedia/AudioTooLong/InvalidInput.

    The bytes are kept as ``<workdir>/audio.input`` for the video's sound track (gone with the work folder).
    """
    path = Path(workdir) / "audio.input"
    path.write_bytes(data)
    rate, channels, interleaved = parse_float_wav(_ffmpeg_to_wav(str(path), max_seconds + DECODE_MARGIN_S))
    samples = interleaved.reshape(-1, channels).mean(axis=1, dtype=np.float32) if channels > 1 else interleaved
    samples = resample_to_16k(samples, rate)
    duration_s = samples.shape[0] / SAMPLE_RATE
    if duration_s > max_seconds:
        raise AudioTooLong(
            f"the audio is longer than the {max_seconds:g} s limit (MAX_AUDIO_SECONDS); send a shorter recording"
        )
    if samples.shape[0] < MIN_AUDIO_SAMPLES:
        raise InvalidInput(
            f"the audio lasts {duration_s:.3f} s; at least {MIN_AUDIO_SAMPLES / SAMPLE_RATE:g} s "
            "(one video frame) is needed"
        )
    peak = float(np.max(np.abs(samples)))
    if peak < SILENCE_PEAK:
        logger.warning("the audio is silent (peak %.2e); the face will not speak", peak)
    source = SourceAudio(path=str(path), sample_rate=rate, channels=channels)
    return DecodedAudio(samples=samples, duration_s=duration_s, peak=peak, source=source)


def _ffmpeg_to_wav(path: str, max_seconds: float) -> bytes:
    """Run ffmpeg on ``path``: the first audio stream as float32 WAV on stdout, at most ``max_seconds``."""
    argv = [
        ffmpeg_exe(),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        path,
        "-map",
        "0:a:0",
        "-vn",
        "-t",
        f"{max_seconds:.3f}",
        "-c:a",
        "pcm_f32le",
        "-f",
        "wav",
        "pipe:1",
    ]
    return _run_ffmpeg(argv, path, "the audio file has no audio stream", "decode the audio")


def _run_ffmpeg(argv: list, path: str, no_stream: str, what: str) -> bytes:
    """ffmpeg's stdout; every failure is UnsupportedMedia with its stderr tail (``path`` shown as ``<input>``)."""
    try:
        return subprocess.run(argv, capture_output=True, check=True, timeout=FFMPEG_TIMEOUT_S).stdout
    except subprocess.CalledProcessError as error:
        stderr = error.stderr.decode("utf-8", "replace").replace(path, "<input>")
        stderr = "; ".join(line.strip() for line in stderr.splitlines() if line.strip())[-STDERR_TAIL_CHARS:]
        if "matches no streams" in stderr:
            raise UnsupportedMedia(f"{no_stream} (ffmpeg found none to decode)") from None
        raise UnsupportedMedia(f"ffmpeg could not {what}: {stderr or 'no message'}") from None
    except subprocess.TimeoutExpired:
        raise UnsupportedMedia(f"ffmpeg took longer than {FFMPEG_TIMEOUT_S:g} s to {what}") from None


def parse_float_wav(wav: bytes) -> Tuple[int, int, np.ndarray]:
    """(sample rate, channels, interleaved float32 samples) of a float32 WAV as ffmpeg writes it to a pipe.

    A pipe cannot be rewound, so ffmpeg leaves the size fields unset: the data chunk is taken to run to the end.
    """
    if len(wav) < 12 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise UnsupportedMedia("ffmpeg produced no audio (is there an audio stream?)")
    offset, rate, channels = 12, 0, 0
    while offset + 8 <= len(wav):
        chunk_id, size = wav[offset : offset + 4], struct.unpack_from("<I", wav, offset + 4)[0]
        body = offset + 8
        if chunk_id == b"fmt ":
            fmt_tag, channels, rate = struct.unpack_from("<HHI", wav, body)
            bits = struct.unpack_from("<H", wav, body + 14)[0]
            if fmt_tag not in (_WAVE_FLOAT, _WAVE_EXTENSIBLE) or bits != 32:
                raise UnsupportedMedia(f"unexpected decoder output (format {fmt_tag}, {bits} bits)")
        elif chunk_id == b"data":
            if not rate or not channels:
                raise UnsupportedMedia("unexpected decoder output (data before format)")
            payload = wav[body:]
            payload = payload[: len(payload) - len(payload) % (4 * channels)]
            return rate, channels, np.frombuffer(payload, dtype="<f4").astype(np.float32)
        offset = body + size + (size & 1)
    raise UnsupportedMedia("ffmpeg produced no audio samples")


def resample_to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Resample mono float32 to 16 kHz like ``librosa.resample(res_type="soxr_hq")``: soxr HQ, length ceil(n*ratio)."""
    if rate == SAMPLE_RATE:
        return np.ascontiguousarray(samples, dtype=np.float32)
    import soxr  # only needed when the file is not 16 kHz already

    resampled = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ")
    target = int(np.ceil(samples.shape[0] * SAMPLE_RATE / rate))
    if resampled.shape[0] < target:
        resampled = np.pad(resampled, (0, target - resampled.shape[0]))
    return np.ascontiguousarray(resampled[:target], dtype=np.float32)


# --- reference video -------------------------------------------------------------------------------

REF_VIDEO_FPS = MODEL_FPS  # the models' rate the video is resampled to, by time (one frame per coefficient row)
REF_VIDEO_MAX_PIXELS = 2 * 1024**3 // 3  # decoded frames held at once: 2 GiB of RGB


def silent_audio(seconds: float, workdir: Union[str, Path]) -> DecodedAudio:
    """Idle mode's sound track: ``seconds`` of 16 kHz mono silence (written as a WAV for the muxer)."""
    import wave

    samples = np.zeros(int(round(seconds * SAMPLE_RATE)), dtype=np.float32)
    path = Path(workdir) / "idle.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(b"\0\0" * samples.size)
    source = SourceAudio(path=str(path), sample_rate=SAMPLE_RATE, channels=1)
    return DecodedAudio(samples=samples, duration_s=samples.size / SAMPLE_RATE, peak=0.0, source=source)


def decode_video(data: bytes, workdir: Union[str, Path], max_seconds: float, max_side: int) -> np.ndarray:
    """A reference video -> (N, H, W, 3) uint8 RGB frames at 25 fps.

    Any container and codec ffmpeg decodes. A video at another rate is resampled to 25 fps by time (ffmpeg's
    ``fps`` filter: for each 40 ms output slot the frame shown at that time), not one input frame per output
    frame. The bytes stay in the work folder as ``ref_video.input`` (its sound may become the job's audio).
    No video stream, or not decodable: ``unsupported_media``; longer than ``max_seconds``, a side above
    ``max_side``, or too many pixels to hold: ``invalid_input``.
    """
    path = Path(workdir) / "ref_video.input"
    path.write_bytes(data)
    first = _ffmpeg_video(str(path), ["-frames:v", "1", "-f", "image2pipe", "-c:v", "png"], "read")
    try:
        width, height = Image.open(io.BytesIO(first)).size
    except (UnidentifiedImageError, OSError):
        raise UnsupportedMedia("ffmpeg could not decode a frame of the reference video") from None
    if max(width, height) > max_side:
        raise InvalidInput(
            f"the reference video is {width}x{height}; the largest side allowed is {max_side} (MAX_IMAGE_SIDE)"
        )
    limit_frames = int(np.floor(max_seconds * REF_VIDEO_FPS + 1e-9))
    if limit_frames * width * height > REF_VIDEO_MAX_PIXELS:
        limit_frames = REF_VIDEO_MAX_PIXELS // (width * height)
    raw = _ffmpeg_video(
        str(path),
        ["-vf", f"fps={REF_VIDEO_FPS}", "-frames:v", str(limit_frames + 1), "-f", "rawvideo", "-pix_fmt", "rgb24"],
        "decode",
    )
    frame_bytes = width * height * 3
    count = len(raw) // frame_bytes
    if count == 0:
        raise UnsupportedMedia("the reference video has no frame ffmpeg could decode")
    if count > limit_frames:
        seconds = limit_frames / REF_VIDEO_FPS
        raise InvalidInput(
            f"the reference video is longer than {seconds:g} s at {width}x{height} (MAX_REF_VIDEO_SECONDS is "
            f"{max_seconds:g}); send a shorter or smaller video"
        )
    return np.frombuffer(raw[: count * frame_bytes], dtype=np.uint8).reshape(count, height, width, 3).copy()


def _ffmpeg_video(path: str, output_args: list, what: str) -> bytes:
    argv = [
        ffmpeg_exe(),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        path,
        "-map",
        "0:v:0",
        "-an",
        *output_args,
        "pipe:1",
    ]
    stdout = _run_ffmpeg(argv, path, "the reference video has no video stream", f"{what} the reference video")
    if not stdout:
        raise UnsupportedMedia("the reference video has no frame ffmpeg could decode")
    return stdout


def job_audio(
    audio_bytes: Optional[bytes],
    video_bytes: Optional[bytes],
    idle_seconds: Optional[float],
    workdir: Union[str, Path],
    max_seconds: float,
) -> DecodedAudio:
    """The job's sound: the caller's audio; else idle mode's silence; else the reference video's own sound."""
    if audio_bytes is not None:
        return decode_audio(audio_bytes, workdir, max_seconds)
    if idle_seconds is not None:
        return silent_audio(idle_seconds, workdir)
    if video_bytes is None:
        raise InvalidInput("give audio_url or audio_base64, idle_seconds, or a reference video with sound")
    try:
        return decode_audio(video_bytes, Path(workdir), max_seconds)
    except UnsupportedMedia:
        raise InvalidInput(
            "the reference video has no sound to use as the job's audio; send audio_url / audio_base64 or idle_seconds"
        ) from None
