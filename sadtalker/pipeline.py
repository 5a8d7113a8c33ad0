"""The order of the stages: photo + 16 kHz speech -> one H.264/AAC MP4 (:func:`animate`).

1. **preprocess** (:mod:`sadtalker.face`): landmarks, crop, 3DMM coefficients of the source, cached per image
   content, ``preprocess`` and ``size`` across the chunks of a job and across jobs on a warm worker;
2. **audio2coeff** (:mod:`sadtalker.motion`): the mel spectrogram once over the whole audio, then per chunk (audio
   longer than ``CHUNK_SECONDS`` is cut at quiet points) blinks, ExpNet and PoseVAE from the same source
   coefficients, the head pose carried across each seam.
   With a reference video (``ref_info``) its frames are preprocessed too (:func:`preprocess_video`) and drive
   ExpNet's reference expressions (blink), the pose delta (pose) or all coefficients (all); idle mode feeds all-zero
   mel windows; ``pose_scale`` scales the generated pose around the source's (docs/controls.md);
3. **render** (:mod:`sadtalker.render`): semantic windows over the whole, continuous coefficient sequence (so no
   window is clamped at a seam), then the face renderer in batches, every frame from the same source image; camera
   keyframes replace the predicted angles (:mod:`sadtalker.render.camera`);
4. **enhance** (:mod:`sadtalker.enhance`) and, in ``full`` mode, **paste** back into the photo
   (:mod:`sadtalker.output.paste`);
5. **encode** (:mod:`sadtalker.output.video`): frames stream into one ffmpeg process, the audio muxed once over the
   whole video.

Randomness: blinks come from ``random.Random`` and PoseVAE z from a ``torch.Generator``, both seeded per chunk from
the request's seed; the enhancer uses stored noise. Same request + same seed = same frames.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from sadtalker.bundle import ModelBundle, SizeModels
from sadtalker.core.constants import FPS, is_full, num_frames
from sadtalker.core.contract import Animation, AnimationRequest, RenderOptions, Segment
from sadtalker.core.errors import InvalidInput, JobCancelled
from sadtalker.core.jobtools import StageTimer, image_key, resolve_seed
from sadtalker.face.stage import Preprocessed, preprocess_image, preprocess_video
from sadtalker.motion.chunking import Chunk, plan_chunks
from sadtalker.motion.mel import fit_to_frames, mel_windows, melspectrogram
from sadtalker.motion.stage import apply_ref_pose, chunked_coefficients, loop_frames, scale_pose
from sadtalker.output.paste import Paster
from sadtalker.output.segments import Segmenter
from sadtalker.output.size import FrameSize, crop_frame_size, photo_frame_size
from sadtalker.output.video import VideoWriter
from sadtalker.render.camera import camera_sequence
from sadtalker.render.stage import render, source_semantics, target_semantics

# progress(stage, chunk, chunks, percent): percent is the pipeline's own, 0-100.
Progress = Callable[..., None]

# Share of the pipeline's progress (0-100) that each stage ends at; rendering fills the span between.
_PERCENT_PREPROCESS = 5.0
_PERCENT_COEFFS = 10.0
_PERCENT_RENDERED = 98.0
# Batches the encoder's feeder thread may hold while the renderer computes the next one.
_ENCODER_QUEUE = 2


def animate(
    bundle: ModelBundle, request: AnimationRequest, workdir: str, progress: Progress,
    stop: Optional[threading.Event] = None, on_segment: Optional[Callable[[Segment], None]] = None,
    segment_seconds: float = 0.0,
) -> Animation:
    """Run one animation; the MP4 is written into ``workdir`` as ``<request.name>.mp4``.

    ``stop``, once set, ends the work with JobCancelled at the next check: between stages, chunks and batches.
    ``segment_seconds`` > 0 with ``on_segment``: the same frames also go into standalone segments of that length,
    each handed to ``on_segment`` as soon as it is encoded (:mod:`sadtalker.output.segments`).
    """
    options = request.options
    check = _stop_check(stop)
    timer = StageTimer()
    seed = resolve_seed(request.seed)
    frames_total = num_frames(len(request.wav16k))
    if frames_total < 1:
        raise InvalidInput("the audio is shorter than one video frame (40 ms)")
    models = bundle.for_size(options.size)
    if options.enhancer == "restoreformer" and bundle.restoreformer is None:
        _FramePost(bundle, options, None, request.image_rgb)  # refuses before any model work

    progress("preprocess", 0, 0, 0.0)
    with timer.stage("preprocess"):
        pre = _preprocess(bundle, models, options, request.image_rgb)
    check()
    reference = None
    if options.ref_info is not None and request.ref_frames is not None:
        with timer.stage("ref_video"):
            reference = preprocess_video(request.ref_frames, bundle.face_finder, models.recon_net, options.preprocess)
        check()
    chunks = plan_chunks(request.wav16k, bundle.settings.chunk_seconds)
    progress("audio2coeff", 0, len(chunks), _PERCENT_PREPROCESS)
    with timer.stage("audio2coeff"):
        if options.idle_seconds is not None:  # the reference's idle mode: all-zero mel windows, not silence's mel
            windows = np.zeros((frames_total, 80, 16), dtype=np.float32)
        else:
            windows = mel_windows(melspectrogram(fit_to_frames(request.wav16k, frames_total)), frames_total)
        def chunk_done(done: int) -> None:
            check()
            progress("audio2coeff", done, len(chunks), _coeff_percent(done, len(chunks)))

        ref_blink = reference is not None and options.ref_info in ("blink", "pose+blink")
        coeffs = chunked_coefficients(
            models.audio2exp, models.audio2pose, windows, pre.coeff_3dmm, chunks, seed, options.pose_style, chunk_done,
            use_blink=options.use_blink and not ref_blink,
            ref_exp=loop_frames(reference.coeff_3dmm[:, :64], frames_total) if ref_blink else None,
        )
        coeffs = scale_pose(coeffs, pre.coeff_3dmm[64:70], options.pose_scale)
        if reference is not None and options.ref_info in ("pose", "pose+blink"):
            coeffs = apply_ref_pose(coeffs, reference.coeff_3dmm[:, 64:70])
        if reference is not None and options.ref_info == "all":  # the web demo: the video's coefficients as they are
            coeffs = loop_frames(reference.coeff_3dmm[:, :70], frames_total).astype(np.float32)
        targets = target_semantics(
            coeffs, pre.coeff_3dmm, options.expression_scale, options.still_mode, options.preprocess
        )
        sources = source_semantics(pre.coeff_3dmm, options.preprocess)

    post = _FramePost(bundle, options, pre, request.image_rgb)
    batches = render(
        models.renderer, bundle.mapping(options.preprocess), _source_for(models, pre), sources, targets,
        bundle.settings.render_batch_for(bundle.device.type), precision=bundle.settings.render_dtype,
        camera=camera_sequence(options.input_yaw, options.input_pitch, options.input_roll, frames_total),
    )
    width, height = post.size
    path = os.path.join(workdir, f"{request.name}.mp4")
    audio = request.wav16k if request.source_audio is None else request.source_audio
    writer = VideoWriter(path, width, height, audio, n_frames=frames_total, queue_batches=_ENCODER_QUEUE)
    segments = None
    if on_segment is not None and segment_seconds > 0:
        segment_frames = max(1, round(segment_seconds * FPS))
        segments = Segmenter(workdir, request.name, width, height, audio, frames_total, segment_frames, on_segment)
    try:
        with writer:
            _stream(_timed(batches, timer, "render"), post, [writer] + ([segments] if segments else []), chunks,
                    timer, progress, check)
            progress("encode", len(chunks), len(chunks), _PERCENT_RENDERED)
            with timer.stage("encode"):
                video = writer.close()
    finally:
        if segments is not None:
            segments.abort()  # an open segment after a failure or a cancel
    warnings = post.warnings
    if reference is not None and reference.filled:
        warnings += (f"the face was not found on {reference.filled} of {len(request.ref_frames)} reference video "
                     "frames; they took the motion of the nearest frame with a face",)
    return Animation(
        path=video.path, width=video.width, height=video.height, fps=video.fps, frames=video.frames,
        chunks=len(chunks), duration_seconds=round(frames_total / FPS, 3), seed=seed, timings=timer.rounded(),
        warnings=warnings,
    )


def _coeff_percent(done: int, total: int) -> float:
    return _PERCENT_PREPROCESS + (_PERCENT_COEFFS - _PERCENT_PREPROCESS) * done / total


class _FramePost:
    """Per-batch work after the renderer: enhancer, resize to the output size, full-mode paste-back."""

    def __init__(self, bundle: ModelBundle, options: RenderOptions, pre: Preprocessed, image_rgb: np.ndarray) -> None:
        self.enhancer = {"gfpgan": bundle.enhancer, "restoreformer": bundle.restoreformer}.get(options.enhancer)
        if options.enhancer == "gfpgan" and bundle.enhancer is None:
            raise InvalidInput('the enhancer is not available on this worker; use "enhancer": "none"')
        if options.enhancer == "restoreformer" and bundle.restoreformer is None:
            raise InvalidInput('the restoreformer enhancer is not available on this worker (its optional weights '
                               'file RestoreFormer.pth is not installed); use "enhancer": "gfpgan" or "none"')
        max_side = bundle.settings.max_output_side
        self.paster = None
        if is_full(options.preprocess):
            height, width = image_rgb.shape[:2]
            frame = photo_frame_size((width, height), options.output_scale, max_side)
            self.paster = Paster(*_scaled_photo(image_rgb, pre.crop_info.box, frame), bundle.device,
                                 method=options.paste)
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


def _timed(iterator: Iterator[np.ndarray], timer: StageTimer, name: str) -> Iterator[np.ndarray]:
    """Yield from ``iterator``, adding the time spent producing each item to ``timer``'s stage ``name``."""
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        timer.add(name, time.perf_counter() - start)
        yield item


def _source_for(models: SizeModels, pre: Preprocessed) -> np.ndarray:
    """The source image at the renderer's resolution (differs only for small test networks)."""
    side = models.image_size
    if pre.source_image.shape[0] == side:
        return pre.source_image
    return cv2.resize(pre.source_image, (side, side), interpolation=cv2.INTER_AREA)


def _preprocess(bundle: ModelBundle, models: SizeModels, options: RenderOptions, image_rgb: np.ndarray) -> Preprocessed:
    key = image_key(image_rgb, options.preprocess, options.size, bundle.settings.face_detector)
    return bundle.cache.get_or_create(
        key, lambda: preprocess_image(image_rgb, bundle.face_finder, models.recon_net, options.preprocess, options.size)
    )


def _stop_check(stop: Optional[threading.Event]) -> Callable[[], None]:
    def check() -> None:
        if stop is not None and stop.is_set():
            raise JobCancelled("the job was cancelled")

    return check


def _stream(
    batches: Iterator[np.ndarray], post: _FramePost, writers: List, chunks: List[Chunk], timer: StageTimer,
    progress: Progress, check: Callable[[], None],
) -> None:
    """Post-process every rendered batch and hand the same frames to each writer (the video, the segments),
    reporting progress as frames cross chunk boundaries; ``check`` runs before each batch."""
    done, chunk_index = 0, 0
    total = chunks[-1].end_frame
    for frames in batches:
        check()
        frames = post(frames, timer)
        with timer.stage("encode"):
            for writer in writers:
                writer.write(frames)
        done += len(frames)
        while chunk_index < len(chunks) - 1 and done >= chunks[chunk_index].end_frame:
            chunk_index += 1
        percent = _PERCENT_COEFFS + (_PERCENT_RENDERED - _PERCENT_COEFFS) * done / total
        progress("render", chunk_index + 1, len(chunks), percent)
