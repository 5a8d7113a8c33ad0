"""Stream RGB frames into ffmpeg and get one browser-ready MP4 with the original audio.

One ffmpeg process per video: raw RGB24 frames arrive on its stdin batch by batch (no PNG, no
intermediate MP4), the audio is read from a file (the caller's recording as sent, or a WAV written from the
decoded 16 kHz array) and encoded once over the whole video. Output: H.264 yuv420p at ``fps`` (25 by default), AAC,
``+faststart`` (the ``moov`` index before ``mdat``, so a browser starts playing before the download ends).

Sound (:func:`aac_layout`): the recording keeps its channels (mono stays mono; two or more channels come out as
stereo, ffmpeg's standard downmix) and its sample rate where AAC has it (else 48 kHz), at a bitrate whose
bandwidth keeps what it holds (ffmpeg's AAC encoder low-passes at 18 kHz at 96 kbit/s per channel).

Length: the video has ``floor(n_samples * fps / 16000)`` frames (at 25 fps the reference's T, one frame per 40
ms of 16 kHz audio). The audio is cut to the same ``frames / fps`` seconds: the last partial frame is dropped from
both, so the video and audio streams end together and the file lasts the audio's duration within one frame.
The writer counts frames and refuses too many or too few.

Even size: yuv420p needs even width and height. Frames with an odd side get one more row/column copied
from their last one (edge padding: no black line, nothing cut off).

Encoder: ``h264_nvenc`` when CUDA is available and a probe encode with it actually succeeds (checked
once per process: many ffmpeg builds list NVENC on machines without the hardware, and data-centre GPUs
like the H100 have no NVENC unit), else ``libx264``.
"""

from __future__ import annotations

import functools
import logging
import queue
import subprocess
import tempfile
import threading
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import IO, List, NoReturn, Optional, Tuple, Union

import numpy as np

from sadtalker.core.constants import MODEL_FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, output_frames
from sadtalker.core.contract import SourceAudio
from sadtalker.core.errors import InternalError

log = logging.getLogger(__name__)

# Sample rates the AAC encoder takes; another rate is resampled to FALLBACK_AUDIO_RATE.
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
FALLBACK_AUDIO_RATE = 48000
AUDIO_BITRATES = {1: "128k", 2: "192k"}  # by output channels
X264_ARGS = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18"]  # visually lossless, fast on CPU
NVENC_ARGS = ["-c:v", "h264_nvenc", "-preset", "p4", "-rc", "vbr", "-cq", "19", "-b:v", "0"]
STDERR_TAIL_CHARS = 3000  # how much of ffmpeg's stderr goes into an error message
PROBE_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 600.0


class EncoderError(InternalError):
    """ffmpeg failed or the frames did not match the plan; the message carries ffmpeg's stderr tail."""


def even_size(width: int, height: int) -> Tuple[int, int]:
    """(width, height) rounded up to even numbers, as yuv420p needs."""
    return width + width % 2, height + height % 2


def pad_to_even(frames: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) frames edge-padded to even H and W (returned as is when already even)."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not pad_h and not pad_w:
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _ffmpeg() -> str:
    from sadtalker.output.ffmpeg import ffmpeg_exe

    return ffmpeg_exe()


@functools.lru_cache(maxsize=None)
def nvenc_works(ffmpeg: str) -> bool:
    """True when CUDA is available and ``ffmpeg`` encodes a few frames with h264_nvenc. Cached per binary."""
    import torch

    if not torch.cuda.is_available():
        return False
    argv = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "color=black:s=256x256:r=25",
        "-frames:v",
        "5",
        *NVENC_ARGS,
        "-pix_fmt",
        "yuv420p",
        "-f",
        "null",
        "-",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.info("h264_nvenc probe could not run (%s); using libx264", exc)
        return False
    if done.returncode != 0:
        log.info(
            "h264_nvenc probe failed (exit %s): %s; using libx264",
            done.returncode,
            done.stderr.decode(errors="replace")[-300:].strip(),
        )
        return False
    return True


def choose_codec(codec: str = "auto") -> str:
    """``"h264_nvenc"`` or ``"libx264"``: ``auto`` picks NVENC only when :func:`nvenc_works`."""
    if codec == "auto":
        return "h264_nvenc" if nvenc_works(_ffmpeg()) else "libx264"
    if codec not in ("h264_nvenc", "libx264"):
        raise ValueError(f"codec must be auto, h264_nvenc or libx264, got {codec!r}")
    return codec


def write_wav(path: Union[str, Path], wav16k: np.ndarray) -> None:
    """Write float mono 16 kHz audio in [-1, 1] as 16-bit PCM WAV (values outside are clipped)."""
    pcm = (np.clip(np.asarray(wav16k, dtype=np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())


def audio_span(wav16k: np.ndarray, start_frame: int, n_frames: int, fps: int = MODEL_FPS) -> Tuple[np.ndarray, int]:
    """The samples a piece of ``n_frames`` frames from ``start_frame`` plays, and the frame ffmpeg then seeks to:
    ``(wav16k[first:last], 0)`` when the piece starts on a sample (``last`` one frame past its end: ffmpeg's ``-t``
    cuts), so a streamed segment's WAV holds its own stretch, not the whole audio; else ``(wav16k, start_frame)``."""
    if start_frame * SAMPLE_RATE % fps:
        return wav16k, start_frame
    first = start_frame * SAMPLE_RATE // fps
    last = -(-(start_frame + n_frames) * SAMPLE_RATE // fps) + SAMPLES_PER_FRAME
    return wav16k[first:last], 0


@dataclass(frozen=True)
class AudioLayout:
    """The video's sound track: AAC at ``rate`` Hz, ``channels`` channels, ``bitrate``."""

    rate: int
    channels: int
    bitrate: str


def aac_layout(rate: int, channels: int) -> AudioLayout:
    """The sound track for a recording of ``rate`` Hz and ``channels`` channels: mono stays mono, more channels
    become stereo, the rate is kept where AAC has it (else :data:`FALLBACK_AUDIO_RATE`)."""
    out_channels = 1 if channels <= 1 else 2
    out_rate = rate if rate in AAC_RATES else FALLBACK_AUDIO_RATE
    return AudioLayout(out_rate, out_channels, AUDIO_BITRATES[out_channels])


MONO_16K = aac_layout(SAMPLE_RATE, 1)  # the models' own audio: 16 kHz mono


def ffmpeg_argv(
    ffmpeg: str,
    path: str,
    width: int,
    height: int,
    n_frames: int,
    audio_path: str,
    codec: str,
    audio: AudioLayout = MONO_16K,
    start_frame: int = 0,
    fps: int = MODEL_FPS,
) -> List[str]:
    """The encoder's argv: raw RGB24 frames at ``fps`` on stdin + the audio from ``start_frame / fps`` s, cut to
    ``n_frames / fps`` s -> MP4 at ``path`` (its frame rate exactly ``fps``)."""
    video_codec = NVENC_ARGS if codec == "h264_nvenc" else X264_ARGS
    seek = ["-ss", f"{start_frame / fps:.6f}"] if start_frame else []
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(fps), "-i", "pipe:0",
        *seek, "-t", f"{n_frames / fps:.6f}", "-i", audio_path,
        "-map", "0:v:0", "-map", "1:a:0",
        *video_codec, "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", audio.bitrate, "-ar", str(audio.rate), "-ac", str(audio.channels),
        "-movflags", "+faststart", path,
    ]  # fmt: skip


@dataclass(frozen=True)
class EncodedVideo:
    """What :meth:`VideoWriter.close` produced."""

    path: str
    width: int
    height: int
    fps: int
    frames: int
    codec: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


class _PipeFeeder:
    """Writes frame buffers to ffmpeg's stdin: in the caller's thread (``depth`` 0), or from a background
    thread fed by a queue of at most ``depth`` batches, so the caller (the GPU loop) does not wait for
    ffmpeg unless it falls that far behind. A write error is kept and raised on the next put/finish."""

    def __init__(self, pipe: IO[bytes], depth: int) -> None:
        self.pipe = pipe
        self.error: Optional[OSError] = None
        self._done = False
        self._queue: Optional[queue.Queue] = queue.Queue(maxsize=depth) if depth > 0 else None
        self._thread: Optional[threading.Thread] = None
        if self._queue is not None:
            self._thread = threading.Thread(target=self._run, name="ffmpeg-feeder", daemon=True)
            self._thread.start()

    @property
    def queued(self) -> bool:
        return self._queue is not None

    def put(self, data: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        if self._queue is None:
            self.pipe.write(data.data.cast("B"))
        else:
            self._queue.put(data)

    def finish(self) -> None:
        """Wait until every queued batch is written (idempotent); raises the write error if there was one."""
        if self._queue is not None and not self._done:
            self._queue.put(None)
            assert self._thread is not None  # started with the queue
            self._thread.join()
        self._done = True
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        assert self._queue is not None  # the thread runs only with a queue
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is None:  # after an error, keep draining so put() never blocks forever
                try:
                    self.pipe.write(memoryview(item).cast("B"))
                except OSError as exc:  # BrokenPipeError: ffmpeg exited
                    self.error = exc


class VideoWriter:
    """Encode ``n_frames`` RGB frames of ``width`` x ``height`` plus audio into an MP4 at ``path``.

    ``audio`` is the caller's recording (:class:`~sadtalker.core.contract.SourceAudio`: any format ffmpeg reads), or
    the decoded float32 16 kHz mono array (the stretch the video plays, :func:`audio_span`, written to a WAV beside
    ``path`` and removed on close). ``fps``: the video's frame rate. ``n_frames`` defaults to the frames the array's
    audio covers at ``fps`` and is required for a recording. ``start_frame`` > 0 makes a piece of a longer video (a
    streamed segment): its sound starts ``start_frame / fps`` s into the audio.
    ``queue_batches`` > 0 hands
    batches to a background thread (a copy each; at most that many waiting), so :meth:`write` returns
    at once while ffmpeg keeps up. Use as a context manager, or call :meth:`close` (which checks the
    frame count) or :meth:`abort` yourself.
    """

    def __init__(
        self,
        path: Union[str, Path],
        width: int,
        height: int,
        audio: Union[SourceAudio, np.ndarray],
        n_frames: Optional[int] = None,
        codec: str = "auto",
        queue_batches: int = 0,
        start_frame: int = 0,
        fps: int = MODEL_FPS,
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        self.path = str(path)
        self.size = (int(width), int(height))
        self.out_size = even_size(*self.size)
        self._wav_path: Optional[Path] = None
        if isinstance(audio, np.ndarray):
            n_frames = output_frames(len(audio), fps) if n_frames is None else n_frames
            self._wav_path = Path(self.path).with_suffix(".audio.wav")
            audio, start_frame = audio_span(audio, start_frame, n_frames, fps)
            write_wav(self._wav_path, audio)
            audio = SourceAudio(str(self._wav_path), SAMPLE_RATE, 1)
        self.audio = aac_layout(audio.sample_rate, audio.channels)
        if n_frames is None or n_frames < 1:
            raise ValueError(f"n_frames must be >= 1 (audio shorter than one frame?), got {n_frames}")
        self.n_frames = int(n_frames)
        self.codec = choose_codec(codec)
        self.fps = fps
        self.written = 0
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        argv = ffmpeg_argv(
            _ffmpeg(), self.path, *self.out_size, self.n_frames, audio.path, self.codec, self.audio, start_frame, fps
        )
        log.debug("ffmpeg argv: %s", argv)
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr)
        except OSError as exc:
            self._cleanup()
            raise EncoderError(f"cannot start ffmpeg ({argv[0]}): {exc}") from exc
        assert self._proc.stdin is not None  # stdin=PIPE
        self._feeder = _PipeFeeder(self._proc.stdin, queue_batches)

    def write(self, frames: np.ndarray) -> None:
        """Append a batch of frames: uint8 (B, height, width, 3) RGB (or one (height, width, 3) frame)."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        width, height = self.size
        if frames.dtype != np.uint8 or frames.shape[1:] != (height, width, 3):
            self.abort()
            raise ValueError(f"expected uint8 frames (B, {height}, {width}, 3), got {frames.dtype} {frames.shape}")
        if self.written + len(frames) > self.n_frames:
            self.abort()
            raise EncoderError(f"got {self.written + len(frames)} frames for a {self.n_frames}-frame video")
        data = np.ascontiguousarray(pad_to_even(frames))
        if self._feeder.queued and data is frames:
            data = data.copy()  # the caller may reuse its buffer before the thread writes it
        try:
            self._feeder.put(data)
        except OSError as exc:  # BrokenPipeError: ffmpeg exited
            self._fail("ffmpeg stopped reading frames", exc)
        self.written += len(frames)

    def _fail(self, what: str, exc: BaseException) -> NoReturn:
        """Abort and raise EncoderError with ffmpeg's exit status and stderr tail."""
        try:
            self._proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            pass  # still running (a write timeout, not an exit): abort kills it
        tail = self._stderr_tail()
        self.abort()
        raise EncoderError(f"{what} (exit {self._proc.returncode}): {tail}") from exc

    def close(self) -> EncodedVideo:
        """Finish the file; raises EncoderError when frames are missing or ffmpeg fails."""
        if self.written != self.n_frames:
            self.abort()
            raise EncoderError(f"got {self.written} frames for a {self.n_frames}-frame video")
        try:
            self._feeder.finish()
            self._feeder.pipe.close()  # ffmpeg's stdin
            code = self._proc.wait(timeout=CLOSE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._fail("ffmpeg did not finish", exc)
        tail = self._stderr_tail()
        self._cleanup()
        if code != 0:
            Path(self.path).unlink(missing_ok=True)
            raise EncoderError(f"ffmpeg failed (exit {code}): {tail}")
        width, height = self.out_size
        return EncodedVideo(self.path, width, height, self.fps, self.written, self.codec)

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial output. Safe to call more than once."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        try:
            self._feeder.finish()  # the thread, if any, sees the broken pipe and drains its queue
        except OSError:
            pass  # expected: ffmpeg was killed
        if self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:
                pass  # ffmpeg is gone: the unflushed frames have nowhere to go
        self._cleanup()
        Path(self.path).unlink(missing_ok=True)

    def _stderr_tail(self) -> str:
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return text[-STDERR_TAIL_CHARS:] or "(no message)"

    def _cleanup(self) -> None:
        self._stderr.close()
        if self._wav_path is not None:
            self._wav_path.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif self._proc.returncode is None:
            self.close()


def mp4_top_level_boxes(path: Union[str, Path]) -> List[str]:
    """Types of the top-level boxes of an MP4 file in order, e.g. ['ftyp', 'moov', 'free', 'mdat']."""
    boxes = []
    with open(path, "rb") as f:
        f.seek(0, 2)
        end = f.tell()
        pos = 0
        while pos + 8 <= end:
            f.seek(pos)
            header = f.read(16)
            size, kind = int.from_bytes(header[:4], "big"), header[4:8].decode("latin-1")
            if size == 1:  # 64-bit size follows the type
                size = int.from_bytes(header[8:16], "big")
            elif size == 0:  # box runs to the end of the file
                size = end - pos
            if size < 8:
                raise ValueError(f"corrupt MP4 box {kind!r} of size {size} at offset {pos}")
            boxes.append(kind)
            pos += size
    return boxes
