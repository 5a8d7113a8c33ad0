"""The order of the stages: photo + 16 kHz speech -> one H.264/AAC MP4 (:func:`animate`).

1. **preprocess** (:mod:`sadtalker.face`): landmarks, crop, 3DMM coefficients of the source, cached per image
   content, ``preprocess`` and ``size`` across the chunks of a job and across jobs on a warm worker;
2. **audio2coeff** (:mod:`sadtalker.motion`): per chunk (audio longer than ``CHUNK_SECONDS`` is cut at quiet
   points) the mel windows of the frames at hand, blinks, ExpNet and PoseVAE from the same source coefficients, the
   head pose carried across each seam.
   With a reference video (``ref_info``) its frames are preprocessed too (:func:`preprocess_video`) and drive
   ExpNet's reference expressions (blink), the pose delta (pose) or all coefficients (all); idle mode feeds all-zero
   mel windows; ``pose_scale`` scales the generated pose around the source's (docs/controls.md);
3. **render** (:mod:`sadtalker.render`): semantic windows over the whole, continuous coefficient sequence (so no
   window is clamped at a seam), then the face renderer in batches, every frame from the same source image; camera
   keyframes replace the predicted angles (:mod:`sadtalker.render.camera`). At another ``fps`` than the models'
   25, each output frame's window is read at its own instant between the 25 fps rows (:mod:`sadtalker.core.timeline`),
   so the coefficients, and everything made from them, are resampled in time, not frames repeated or dropped.
   The windows are built batch by batch
   (:class:`TargetWindows`): a batch pulls stage 2's coefficients in pieces until the rows it needs exist, so the
   first frames (the first streamed segment) do not wait for the whole audio's coefficients (docs/streaming.md);
4. **enhance** (:mod:`sadtalker.enhance`) and, in ``full`` mode, **paste** back into the photo
   (:mod:`sadtalker.output.paste`);
5. **encode** (:mod:`sadtalker.output.video`): frames stream into one ffmpeg process, the audio muxed once over the
   whole video.

:func:`animate` runs them as named steps: :func:`enhancer_for` (the request's checks, before any model work),
:func:`prepare_sources` (1), :func:`coefficients` (2 and the render's inputs), :func:`open_writers` and
:func:`render_loop` (3 to 5). The caller's settings come in as an argument and its callbacks as one
:class:`~sadtalker.core.contract.AnimationHooks`.

Randomness: blinks come from ``random.Random`` and PoseVAE z from a ``torch.Generator``, both seeded per chunk from
the request's seed; the enhancer uses stored noise. Same request + same seed = same frames.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Callable, Iterator, List, Optional, Tuple, Union

import cv2
import numpy as np

from sadtalker.bundle import ModelBundle, SizeModels
from sadtalker.core.constants import EXPRESSION_COLUMNS, MOTION_COEFFS, POSE_COLUMNS, is_full, num_frames
from sadtalker.core.contract import NO_HOOKS, Animation, AnimationHooks, AnimationRequest, RenderOptions
from sadtalker.core.errors import InvalidInput, NoFaceDetected
from sadtalker.core.jobtools import StageTimer, image_key, resolve_seed
from sadtalker.core.timeline import Timeline
from sadtalker.enhance.stage import FaceEnhancer
from sadtalker.face.stage import Preprocessed, VideoCoefficients, preprocess_image, preprocess_video
from sadtalker.motion.chunking import Chunk, plan_chunks
from sadtalker.motion.mel import Mels, MelWindows, fit_to_frames
from sadtalker.motion.stage import apply_ref_pose, coefficient_pieces, loop_frames, scale_pose
from sadtalker.output.paste import Paster
from sadtalker.output.segments import Segmenter
from sadtalker.output.size import FrameSize, crop_frame_size, photo_frame_size
from sadtalker.output.video import VideoWriter
from sadtalker.render.camera import camera_sequence
from sadtalker.render.stage import (
    SEMANTIC_RADIUS,
    render,
    resample_rows,
    resampled_windows,
    source_semantics,
    target_coefficients,
)
from sadtalker.weights.loader import ALIGNMENT_FILE, DETECTION_FILE
from sadtalker.worker.settings import Settings

# The RetinaFace finder's two weight files (FACE_DETECTOR=retinaface).
RETINAFACE_FILES = (DETECTION_FILE, ALIGNMENT_FILE)

log = logging.getLogger(__name__)

# Share of the pipeline's progress (0-100) that each stage ends at; rendering fills the span between.
_PERCENT_PREPROCESS = 5.0
_PERCENT_COEFFS = 10.0
_PERCENT_RENDERED = 98.0
# Batches the encoder's feeder thread may hold while the renderer computes the next one.
_ENCODER_QUEUE = 2


def animate(
    bundle: ModelBundle, settings: Settings, request: AnimationRequest, workdir: str, hooks: AnimationHooks = NO_HOOKS
) -> Animation:
    """Run one animation with ``bundle``'s models under the worker's ``settings``; the MP4 is written into
    ``workdir`` as ``<request.name>.mp4``. ``hooks``: progress, the stop flag and streamed segments."""
    options = request.options
    timeline = Timeline.of_audio(len(request.wav16k), options.fps)
    if timeline.model_frames < 1 or timeline.frames < 1:
        raise InvalidInput(
            f"the audio is shorter than one video frame at {timeline.fps} fps (and than 40 ms, one coefficient frame)"
        )
    hooks = dataclasses.replace(hooks, progress=_never_falling(hooks.progress))
    models = bundle.for_size(options.size)
    enhancer_for(bundle, options.enhancer)  # refuses before any model work
    timer, seed = StageTimer(), resolve_seed(request.seed)
    pre, reference = prepare_sources(bundle, settings, models, request, timer, hooks)
    chunks = plan_chunks(request.wav16k, settings.chunk_seconds)
    batch = settings.render_batch_for(bundle.device.type)
    sources, targets = coefficients(
        models,
        request,
        pre,
        reference,
        chunks,
        seed,
        timer,
        hooks,
        timeline,
        max(batch, first_segment_frames(hooks, timeline.fps)),
    )
    post = _FramePost(bundle, settings, options, pre, request.image_rgb)
    batches = render(
        models.renderer,
        bundle.mapping(options.preprocess),
        _source_for(models, pre),
        sources,
        targets,
        batch,
        precision=settings.render_dtype,
        camera=camera_for(options, timeline),
    )
    writer, segments = open_writers(request, workdir, post.size, timeline, hooks)
    try:
        with writer:
            outputs: List[Union[VideoWriter, Segmenter]] = [writer] + ([segments] if segments else [])
            render_loop(
                _timed(batches, timer, "render", inside="audio2coeff"), post, outputs, chunks, timeline, timer, hooks
            )
            hooks.progress("encode", len(chunks), len(chunks), _PERCENT_RENDERED)
            with timer.stage("encode"):
                video = writer.close()
    finally:
        if segments is not None:
            segments.abort()  # an open segment after a failure or a cancel
    return Animation(
        path=video.path,
        width=video.width,
        height=video.height,
        fps=video.fps,
        frames=video.frames,
        chunks=len(chunks),
        duration_seconds=round(timeline.seconds(video.frames), 3),
        seed=seed,
        timings=timer.rounded(),
        warnings=post.warnings + _reference_warnings(reference, request) + _weights_warnings(bundle, settings),
    )


def enhancer_for(bundle: ModelBundle, enhancer: str) -> Optional[FaceEnhancer]:
    """The bundle's restorer for the request's ``enhancer`` ("none": None); InvalidInput when this worker lacks it."""
    if enhancer == "gfpgan" and bundle.enhancer is None:
        raise InvalidInput('the enhancer is not available on this worker; use "enhancer": "none"')
    if enhancer == "restoreformer" and bundle.restoreformer is None:
        raise InvalidInput(
            "the restoreformer enhancer is not available on this worker (its optional weights "
            'file RestoreFormer.pth is not installed); use "enhancer": "gfpgan" or "none"'
        )
    return {"gfpgan": bundle.enhancer, "restoreformer": bundle.restoreformer}.get(enhancer)


def prepare_sources(
    bundle: ModelBundle,
    settings: Settings,
    models: SizeModels,
    request: AnimationRequest,
    timer: StageTimer,
    hooks: AnimationHooks,
) -> Tuple[Preprocessed, Optional[VideoCoefficients]]:
    """Stage 1: the photo's crop and 3DMM coefficients (cached), and a reference video's per-frame coefficients."""
    options = request.options
    hooks.progress("preprocess", 0, 0, 0.0)
    with timer.stage("preprocess"):
        pre = _preprocess(bundle, settings, models, options, request.image_rgb)
    hooks.check()
    reference = None
    if options.ref_info is not None and request.ref_frames is not None:
        with timer.stage("ref_video"):
            reference = preprocess_video(request.ref_frames, bundle.face_finder, models.recon_net, options.preprocess)
        hooks.check()
    return pre, reference


def coefficients(
    models: SizeModels,
    request: AnimationRequest,
    pre: Preprocessed,
    reference: Optional[VideoCoefficients],
    chunks: List[Chunk],
    seed: int,
    timer: StageTimer,
    hooks: AnimationHooks,
    timeline: Timeline,
    head_frames: int = 0,
) -> Tuple[np.ndarray, "TargetWindows"]:
    """Stage 2: the renderer's inputs, source semantics (C, 27) and every output frame's target windows
    (frames, C, 27), computed as the renderer reads them; the first ``head_frames`` output frames' windows come
    before the rest of the first chunk (:func:`~sadtalker.motion.stage.coefficient_pieces`)."""
    options = request.options
    hooks.progress("audio2coeff", 0, len(chunks), _PERCENT_PREPROCESS)
    with timer.stage("audio2coeff"):
        head_rows = timeline.rows_for(head_frames, SEMANTIC_RADIUS)
        pieces = _motion_pieces(models, request, pre, reference, chunks, seed, hooks, head_rows)
        sources = source_semantics(pre.coeff_3dmm, options.preprocess)
    return sources, TargetWindows(pieces, timeline, pre.coeff_3dmm, options, timer)


class TargetWindows:
    """The renderer's target windows, (frames, C, 27) at the output rate, as a sequence read in slices: a slice
    pulls coefficient pieces (25 fps rows) until the rows its windows need (13 past its last frame's instant,
    clamped at the end) exist; time spent there counts as ``audio2coeff``."""

    def __init__(
        self,
        pieces: Iterator[np.ndarray],
        timeline: Timeline,
        source_coeff: np.ndarray,
        options: RenderOptions,
        timer: StageTimer,
    ) -> None:
        self.pieces, self.timeline, self.timer = pieces, timeline, timer
        self.source, self.options = source_coeff, options
        self.parts: List[np.ndarray] = []  # driving coefficients (K, C) so far, piece by piece
        self.known = 0

    def __len__(self) -> int:
        return self.timeline.frames

    def __getitem__(self, frames: slice) -> np.ndarray:
        start, stop, _ = frames.indices(self.timeline.frames)
        self.fill(self.timeline.rows_for(stop, SEMANTIC_RADIUS))
        return resampled_windows(self.coefficients(), self.timeline, start, stop)

    def fill(self, rows: int) -> None:
        """Pull pieces until ``rows`` rows exist."""
        with self.timer.stage("audio2coeff"):
            while self.known < rows:
                piece = next(self.pieces)
                self.parts.append(
                    target_coefficients(
                        piece,
                        self.source,
                        self.options.expression_scale,
                        self.options.still_mode,
                        self.options.preprocess,
                    )
                )
                self.known += len(piece)

    def coefficients(self) -> np.ndarray:
        """The driving coefficients (K, C) computed so far."""
        if len(self.parts) > 1:
            self.parts = [np.concatenate(self.parts)]
        return self.parts[0]


def _motion_pieces(
    models: SizeModels,
    request: AnimationRequest,
    pre: Preprocessed,
    reference: Optional[VideoCoefficients],
    chunks: List[Chunk],
    seed: int,
    hooks: AnimationHooks,
    head_rows: int,
) -> Iterator[np.ndarray]:
    """(K, 70) expression and pose rows in time order: ExpNet and PoseVAE piece by piece, then the pose and
    reference-video controls, which work row by row."""
    options = request.options
    frames_total = num_frames(len(request.wav16k))
    windows: Mels  # the mel windows, computed piece by piece as the coefficients need them
    if options.idle_seconds is not None:  # the reference's idle mode: all-zero mel windows, not silence's mel
        windows = np.zeros((frames_total, 80, 16), dtype=np.float32)
    else:
        windows = MelWindows(fit_to_frames(request.wav16k, frames_total), frames_total)

    def chunk_done(done: int) -> None:
        hooks.check()
        hooks.progress("audio2coeff", done, len(chunks), _coeff_percent(done, len(chunks)))

    ref_exp = None  # the reference video's expressions drive ExpNet (its blinks) instead of random blinks
    if reference is not None and options.ref_info in ("blink", "pose+blink"):
        ref_exp = loop_frames(reference.coeff_3dmm[:, EXPRESSION_COLUMNS], frames_total)
    pieces = coefficient_pieces(
        models.audio2exp,
        models.audio2pose,
        windows,
        pre.coeff_3dmm,
        chunks,
        seed,
        options.pose_style,
        chunk_done,
        use_blink=options.use_blink and ref_exp is None,
        ref_exp=ref_exp,
        head_rows=head_rows,
    )
    return _controlled(pieces, pre, reference, options)


def _controlled(
    pieces: Iterator[np.ndarray], pre: Preprocessed, reference: Optional[VideoCoefficients], options: RenderOptions
) -> Iterator[np.ndarray]:
    """``pose_scale``, the reference video's pose delta and ``ref_info: all`` on each piece (rows ``start..``)."""
    start = 0
    for coeffs in pieces:
        rows = np.arange(start, start + len(coeffs))
        coeffs = scale_pose(coeffs, pre.coeff_3dmm[POSE_COLUMNS], options.pose_scale)
        if reference is not None and options.ref_info in ("pose", "pose+blink"):
            coeffs = apply_ref_pose(coeffs, reference.coeff_3dmm[:, POSE_COLUMNS], rows)
        if reference is not None and options.ref_info == "all":  # the web demo: the video's coefficients as they are
            coeffs = reference.coeff_3dmm[rows % len(reference.coeff_3dmm), :MOTION_COEFFS].astype(np.float32)
        start += len(coeffs)
        yield coeffs


def open_writers(
    request: AnimationRequest, workdir: str, size: Tuple[int, int], timeline: Timeline, hooks: AnimationHooks
) -> Tuple[VideoWriter, Optional[Segmenter]]:
    """Stage 5's writers: the MP4's, and when the hooks stream, the segmenter that encodes the same frames into
    standalone segments (:mod:`sadtalker.output.segments`)."""
    width, height = size
    path = os.path.join(workdir, f"{request.name}.mp4")
    audio = request.wav16k if request.source_audio is None else request.source_audio
    fps = timeline.fps
    writer = VideoWriter(path, width, height, audio, n_frames=timeline.frames, queue_batches=_ENCODER_QUEUE, fps=fps)
    if hooks.on_segment is None or hooks.segment_seconds <= 0:
        return writer, None
    segments = Segmenter(
        workdir,
        request.name,
        width,
        height,
        audio,
        timeline.frames,
        max(1, round(hooks.segment_seconds * fps)),
        hooks.on_segment,
        first_frames=first_segment_frames(hooks, fps),
        fps=fps,
    )
    return writer, segments


def first_segment_frames(hooks: AnimationHooks, fps: int) -> int:
    """Frames at ``fps`` of the first streamed segment (``first_segment_seconds``, 0: as long as the others); 0 when
    the hooks do not stream."""
    if not hooks.streaming:
        return 0
    seconds = hooks.first_segment_seconds if hooks.first_segment_seconds > 0 else hooks.segment_seconds
    return max(1, round(seconds * fps))


def camera_for(options: RenderOptions, timeline: Timeline) -> Optional[np.ndarray]:
    """The camera keyframes spread over the 25 fps rows as the reference spreads them, then read at each output
    frame's instant: (frames, 3) degrees, or None without keyframes."""
    camera = camera_sequence(options.input_yaw, options.input_pitch, options.input_roll, timeline.model_frames)
    if camera is None or timeline.native:
        return camera
    row, fraction = timeline.positions(0, timeline.frames)
    return resample_rows(camera, timeline.model_frames, row, fraction)


def _reference_warnings(reference: Optional[VideoCoefficients], request: AnimationRequest) -> Tuple[str, ...]:
    if reference is None or not reference.filled or request.ref_frames is None:
        return ()
    return (
        f"the face was not found on {reference.filled} of {len(request.ref_frames)} reference video frames; "
        "they took the motion of the nearest frame with a face",
    )


def _never_falling(progress: Callable[[str, int, int, float], None]) -> Callable[[str, int, int, float], None]:
    """``progress`` with a percent that never falls: later chunks' coefficients are computed while frames render."""
    highest = [0.0]

    def report(stage: str, chunk: int = 0, chunks: int = 0, percent: float = 0.0) -> None:
        highest[0] = max(highest[0], percent)
        progress(stage, chunk, chunks, highest[0])

    return report


def _coeff_percent(done: int, total: int) -> float:
    return _PERCENT_PREPROCESS + (_PERCENT_COEFFS - _PERCENT_PREPROCESS) * done / total


class _FramePost:
    """Per-batch work after the renderer: enhancer, resize to the output size, full-mode paste-back."""

    def __init__(
        self, bundle: ModelBundle, settings: Settings, options: RenderOptions, pre: Preprocessed, image_rgb: np.ndarray
    ) -> None:
        self.enhancer = enhancer_for(bundle, options.enhancer)
        max_side = settings.max_output_side
        self.paster = None
        if is_full(options.preprocess):
            height, width = image_rgb.shape[:2]
            frame = photo_frame_size((width, height), options.output_scale, max_side)
            self.paster = Paster(
                *_scaled_photo(image_rgb, pre.crop_info.box, frame), bundle.device, method=options.paste
            )
        else:
            frame = crop_frame_size(options.size, pre.crop_info.frame_size, options.output_scale, max_side)
        self.size = (frame.width, frame.height)
        self.warnings = () if frame.warning is None else (frame.warning,)

    def __call__(self, frames: np.ndarray, timer: StageTimer) -> np.ndarray:
        # The face goes straight to the size it is shown at: the enhancer's 512 face is never shrunk below it.
        face_w, face_h = self.paster.box_size if self.paster is not None else self.size
        if self.enhancer is not None:
            with timer.stage("enhance"):
                frames = self.enhancer.restore(frames, size=(face_h, face_w))
        if self.paster is not None:
            with timer.stage("paste"):
                return self.paster.paste(frames)  # resizes the face to its box
        if frames.shape[1:3] != (face_h, face_w):
            frames = _resize_frames(frames, (face_w, face_h))
        return frames


def _scaled_photo(image_rgb: np.ndarray, box, frame: FrameSize) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """The photo resized to the frame size (Lanczos, as the reference's upscaled background) and the face box on it."""
    height, width = image_rgb.shape[:2]
    if (frame.width, frame.height) == (width + width % 2, height + height % 2):
        return image_rgb, box  # the paster pads an odd side itself
    sx, sy = frame.width / width, frame.height / height
    scaled = cv2.resize(image_rgb, (frame.width, frame.height), interpolation=cv2.INTER_LANCZOS4)
    x1, y1, x2, y2 = box
    return scaled, (round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy))


def _resize_frames(frames: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """uint8 (B, h, w, 3) -> (B, H, W, 3) with OpenCV bilinear, size = (W, H)."""
    return np.stack([cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR) for frame in frames])


def _timed(iterator: Iterator[np.ndarray], timer: StageTimer, name: str, inside: str = "") -> Iterator[np.ndarray]:
    """Yield from ``iterator``, adding the time spent producing each item to ``timer``'s stage ``name``, less what
    the stage ``inside`` (timed within the iterator: the coefficients the renderer pulls) took meanwhile."""
    while True:
        start, before = time.perf_counter(), timer.seconds.get(inside, 0.0)
        try:
            item = next(iterator)
        except StopIteration:
            return
        timer.add(name, time.perf_counter() - start - (timer.seconds.get(inside, 0.0) - before))
        yield item


def _source_for(models: SizeModels, pre: Preprocessed) -> np.ndarray:
    """The source image at the renderer's resolution (differs only for small test networks)."""
    side = models.image_size
    if pre.source_image.shape[0] == side:
        return pre.source_image
    return cv2.resize(pre.source_image, (side, side), interpolation=cv2.INTER_AREA)


def _preprocess(
    bundle: ModelBundle, settings: Settings, models: SizeModels, options: RenderOptions, image_rgb: np.ndarray
) -> Preprocessed:
    key = image_key(image_rgb, options.preprocess, options.size, settings.face_detector)
    try:
        return bundle.cache.get_or_create(
            key,
            lambda: preprocess_image(image_rgb, bundle.face_finder, models.recon_net, options.preprocess, options.size),
        )
    except NoFaceDetected as error:
        detector = _unofficial_detector(bundle, settings)
        if not detector:
            raise
        log.warning(
            "no face found by RetinaFace with weights that are not the official files (%s): fetch the "
            "official weights or set FACE_DETECTOR=dlib, which needs none",
            ", ".join(detector),
        )
        raise NoFaceDetected(
            f"{error.message} (this worker's face detector runs on weights that are not the "
            "official files, so it may miss faces)"
        ) from None


def _unofficial_detector(bundle: ModelBundle, settings: Settings) -> Tuple[str, ...]:
    """The RetinaFace finder's weight files that are not the official ones (none with FACE_DETECTOR=dlib)."""
    if settings.face_detector != "retinaface":
        return ()
    return tuple(name for name in bundle.unofficial_weights if name in RETINAFACE_FILES)


def _weights_warnings(bundle: ModelBundle, settings: Settings) -> Tuple[str, ...]:
    """A result made with weights that are not the official ones says so (CHECK_WEIGHT_SIZES=false)."""
    if not bundle.unofficial_weights:
        return ()
    text = (
        f"made with {len(bundle.unofficial_weights)} weight file(s) that are not the official ones (their sizes "
        "differ; CHECK_WEIGHT_SIZES=false): sizes, sound and timing are real, the picture is not SadTalker's"
    )
    detector = _unofficial_detector(bundle, settings)
    if detector:
        text += f"; the face was found by RetinaFace running on such weights ({', '.join(detector)})"
    return (text,)


def render_loop(
    batches: Iterator[np.ndarray],
    post: _FramePost,
    writers: List[Union[VideoWriter, Segmenter]],
    chunks: List[Chunk],
    timeline: Timeline,
    timer: StageTimer,
    hooks: AnimationHooks,
) -> None:
    """Stages 3 to 5: post-process every rendered batch and hand the same frames to each writer (the video, the
    segments), reporting progress as frames cross chunk boundaries (chunks end on 25 fps rows, counted here in
    output frames); the stop flag is checked before each batch."""
    done, chunk_index = 0, 0
    total = timeline.frames
    chunk_ends = [timeline.first_frame_at(chunk.end_frame) for chunk in chunks]
    for frames in batches:
        hooks.check()
        frames = post(frames, timer)
        with timer.stage("encode"):
            for writer in writers:
                writer.write(frames)
        done += len(frames)
        while chunk_index < len(chunks) - 1 and done >= chunk_ends[chunk_index]:
            chunk_index += 1
        percent = _PERCENT_COEFFS + (_PERCENT_RENDERED - _PERCENT_COEFFS) * done / total
        hooks.progress("render", chunk_index + 1, len(chunks), percent)
