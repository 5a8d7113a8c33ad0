"""The typed stage contract: what :func:`sadtalker.pipeline.animate` takes and what it returns.

A request carries only what rendering needs: the decoded photo and audio, the render options and the seed. Where
the inputs came from and where the video goes (URLs, R2 credentials) stay with the worker. The caller follows and
steers the work through :class:`AnimationHooks`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from sadtalker.core.constants import MODEL_FPS
from sadtalker.core.errors import JobCancelled


@dataclass(frozen=True)
class RenderOptions:
    """How to animate. Defaults are the API's defaults; ``sadtalker.worker.options`` checks every value."""

    # Less head motion (pose held at the source's).
    still_mode: bool = False
    # Face restoration after rendering: "gfpgan", "restoreformer" (optional weights) or "none".
    enhancer: str = "gfpgan"
    # "crop" (animate the face crop), "resize" (whole image as the face), "full" (crop, then paste back);
    # "extcrop" / "extfull": the same with the wider border crop around the face square.
    preprocess: str = "crop"
    # Face render resolution, 256 or 512.
    size: int = 256
    # Multiplies the predicted expression coefficients, 0 to 3.
    expression_scale: float = 1.0
    # Pose style index of the pose VAE, 0 to 45.
    pose_style: int = 0
    # Output size factor, 1 or 2 (the reference's GFPGANer(upscale=2)). None: 2 with an enhancer, 1 without.
    upscale: Optional[int] = None
    # Camera keyframes in degrees (1 to 16 values each), spread over the video as the reference's
    # gen_camera_pose; they replace the renderer's predicted angle. None: the angle stays predicted.
    input_yaw: Optional[Tuple[float, ...]] = None
    input_pitch: Optional[Tuple[float, ...]] = None
    input_roll: Optional[Tuple[float, ...]] = None
    # Scales the generated head motion around the source pose, 0 to 2 (0 = still head). Our addition.
    pose_scale: float = 1.0
    # Random blinks (the web demo's use_blink switch); False = none.
    use_blink: bool = True
    # Idle mode: no audio, this many seconds of blinks and head motion over silence (1 to 60). None: audio.
    idle_seconds: Optional[float] = None
    # What a reference video drives: "pose", "blink", "pose+blink" or "all"; None when there is no video.
    ref_info: Optional[str] = None
    # full / extfull: how the face goes back into the photo, "seamless" (the reference's Poisson paste) or
    # "feather" (an alpha blend keeping the render's colours). Refused with the other preprocess modes.
    paste: str = "seamless"
    # Output frames per second, 20 to 60. The models make 25 per second; other rates read the motion at each
    # frame's own instant (sadtalker.core.timeline).
    fps: int = MODEL_FPS

    @property
    def output_scale(self) -> int:
        """``upscale``, or its default for the enhancer."""
        if self.upscale is not None:
            return self.upscale
        return 1 if self.enhancer == "none" else 2


@dataclass(frozen=True)
class SourceAudio:
    """The caller's recording as it was sent, muxed into the video in place of the models' 16 kHz mono input."""

    path: str  # the file as received, in the job's work folder
    sample_rate: int  # its rate and channel count, as ffmpeg decodes it
    channels: int


@dataclass(frozen=True)
class AnimationRequest:
    """One animation: a photo, speech, options and a seed."""

    image_rgb: np.ndarray = field(repr=False)  # (H, W, 3) uint8 RGB
    wav16k: np.ndarray = field(repr=False)  # (n,) float32 mono at 16 kHz
    options: RenderOptions = RenderOptions()
    # Same inputs + same seed = same video. None draws a fresh one (returned in the Animation).
    seed: Optional[int] = None
    # File name of the MP4 inside the work folder, without ".mp4".
    name: str = "video"
    # The recording to put in the video; None muxes ``wav16k`` (16 kHz mono).
    source_audio: Optional[SourceAudio] = None
    # The reference video's frames at 25 fps (the models' rate, whatever the output's), (N, H, W, 3) uint8 RGB,
    # when ``options.ref_info`` is set.
    ref_frames: Optional[np.ndarray] = field(default=None, repr=False)


@dataclass(frozen=True)
class Segment:
    """One streamed piece of the video: a standalone MP4 of frames ``[start_frame, start_frame + frames)``."""

    index: int
    path: str
    start_frame: int
    frames: int
    start_seconds: float
    duration_seconds: float


@dataclass(frozen=True)
class Animation:
    """The finished MP4 and its description."""

    path: str
    width: int
    height: int
    fps: int
    frames: int
    chunks: int  # chunks the audio was cut into
    duration_seconds: float  # frames / fps
    seed: int  # the seed used
    timings: Dict[str, float]  # seconds per pipeline stage
    warnings: Tuple[str, ...] = ()  # what the caller should know about the result


def _no_progress(stage: str, chunk: int = 0, chunks: int = 0, percent: float = 0.0) -> None:
    """The default ``progress``: nobody is listening."""


@dataclass(frozen=True)
class AnimationHooks:
    """How the caller follows and steers one animation; every hook is optional."""

    # progress(stage, chunk, chunks, percent): after each stage, chunk and batch; percent is the pipeline's, 0-100.
    progress: Callable[[str, int, int, float], None] = _no_progress
    # Once set, the work ends with JobCancelled at the next check: between stages, chunks and batches.
    stop: Optional[threading.Event] = None
    # With segment_seconds > 0: the same frames also go into standalone segments of that length, each handed to
    # on_segment as soon as it is encoded (sadtalker.output.segments).
    on_segment: Optional[Callable[[Segment], None]] = None
    segment_seconds: float = 0.0
    # The first segment's length (0: segment_seconds); the renderer starts as soon as its coefficients exist.
    first_segment_seconds: float = 0.0

    @property
    def streaming(self) -> bool:
        """Whether the frames also go into streamed segments (``on_segment`` and ``segment_seconds`` > 0)."""
        return self.on_segment is not None and self.segment_seconds > 0

    def check(self) -> None:
        """Raise JobCancelled once ``stop`` is set."""
        if self.stop is not None and self.stop.is_set():
            raise JobCancelled("the job was cancelled")


NO_HOOKS = AnimationHooks()  # nobody listens, nothing stops the work, no segments
