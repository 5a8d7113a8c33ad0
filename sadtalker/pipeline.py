"""The pipeline: face photo + 16 kHz speech -> one H.264/AAC MP4, every model loaded once per worker.

Stages of :func:`animate`, in order (each timed, each reported through ``progress``):

1. **preprocess**: face landmarks, crop, 3DMM coefficients of the source (cached per image content,
   ``preprocess`` and ``size``, across the chunks of a job and across jobs on a warm worker);
2. **audio2coeff**: the mel spectrogram once over the whole audio, then per chunk (audio longer than
   ``CHUNK_SECONDS`` is cut at quiet points) blinks, ExpNet and PoseVAE from the same source
   coefficients, with the head pose carried across each seam (``sadtalker.seams``);
3. **render**: semantic windows over the whole, continuous coefficient sequence (so no window is
   clamped at a seam), then the face renderer in batches, every frame from the same source image;
4. **enhance** (GFPGAN on the face, no per-frame detection) and, in ``full`` mode, **paste** back into
   the photo;
5. **encode**: frames stream straight into one ffmpeg process (no intermediate files), the original
   audio muxed once over the whole video.

Randomness: blinks come from ``random.Random`` and PoseVAE z from a ``torch.Generator``, both seeded per
chunk from the job's seed; the enhancer uses stored noise. Same inputs + same seed = same frames.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np
import torch

from sadtalker.allocator import reuse_freed_memory
from sadtalker.audio import FPS, fit_to_frames, mel_windows, melspectrogram, num_frames
from sadtalker.chunking import Chunk, plan_chunks
from sadtalker.coeffs import audio_to_coeffs, blink_sequence, load_audio_models
from sadtalker.errors import InvalidInput
from sadtalker.jobtools import LRUCache, StageTimer, chunk_seed, image_key, resolve_seed
from sadtalker.options import JobOptions
from sadtalker.paste import Paster
from sadtalker.preprocess import FaceFinder, Preprocessed, load_recon_net, make_face_finder, preprocess_image
from sadtalker.renderer.models import RendererModels
from sadtalker.renderer.fast import compile_generator, prepare_renderer
from sadtalker.renderer.stage import render, source_semantics, target_semantics
from sadtalker.seams import carry_pose, seam_jumps
from sadtalker.settings import Settings
from sadtalker.video import VideoWriter

log = logging.getLogger(__name__)

Progress = Callable[..., None]

# Share of the pipeline's progress (0-100) that each stage ends at; rendering fills the span between.
_PERCENT_PREPROCESS = 5.0
_PERCENT_COEFFS = 10.0
_PERCENT_RENDERED = 98.0
# Batches the encoder's feeder thread may hold while the renderer computes the next one.
_ENCODER_QUEUE = 2


@dataclass
class SizeModels:
    """Everything that comes from one ``SadTalker_V0.0.2_<size>.safetensors`` file."""

    renderer: RendererModels
    recon_net: torch.nn.Module
    audio2exp: torch.nn.Module
    audio2pose: torch.nn.Module
    # Side of the renderer's input and output. Equals the job's size for the official networks;
    # plumbing tests use small networks on small images.
    image_size: int


@dataclass
class ModelBundle:
    """Every model a job needs, built once per worker by :func:`load_models`."""

    settings: Settings
    device: torch.device
    sizes: Dict[int, SizeModels]
    mappings: Dict[str, torch.nn.Module]  # "crop" (70 inputs, crop/resize) and "full" (73 inputs)
    face_finder: FaceFinder
    enhancer: Optional[object]  # sadtalker.enhancer.FaceEnhancer; None refuses enhancer="gfpgan"
    cache: LRUCache = field(default_factory=lambda: LRUCache(16))
    # Loads a missing size on first use (the 512 set when LOAD_512=lazy); None = not available.
    load_size: Optional[Callable[[int], SizeModels]] = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def for_size(self, size: int) -> SizeModels:
        with self._lock:
            if size not in self.sizes:
                if self.load_size is None:
                    raise InvalidInput(f"size {size} is not available on this worker; use size 256")
                self.sizes[size] = self.load_size(size)
            return self.sizes[size]

    def mapping(self, preprocess: str) -> torch.nn.Module:
        return self.mappings["full" if preprocess == "full" else "crop"]


def pick_device(setting: str) -> torch.device:
    """``DEVICE`` -> a torch device: ``auto`` takes CUDA when there is one."""
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def enhancer_precision(settings: Settings, device: torch.device) -> str:
    """``ENHANCER_DTYPE``; ``auto`` is fp16 on CUDA (1 level from fp32 at most, measured) and fp32 on CPU, whose
    fp16 arithmetic is emulated and slow."""
    if settings.enhancer_dtype != "auto":
        return settings.enhancer_dtype
    return "fp16" if device.type == "cuda" else "fp32"


def load_size_models(checkpoints_dir: str, size: int, device: torch.device, torch_compile: bool = False) -> SizeModels:
    """The renderer and the three coefficient networks of one size, strictly loaded, eval, on ``device``.

    The renderer's fused inference layers are built here (and compiled with ``torch_compile``), so the first job
    does not pay for them.
    """
    from sadtalker.loading import load_renderer, read_coefficient_state_dicts, sadtalker_file_name

    renderer = load_renderer(checkpoints_dir, size, device)
    prepare_renderer(renderer.generator)
    if torch_compile:
        compile_generator(renderer.generator)
    states = read_coefficient_state_dicts(checkpoints_dir, size)
    name = sadtalker_file_name(size)
    audio2exp, audio2pose = load_audio_models(states["audio2exp"], states["audio2pose"], name, device)
    recon_net = load_recon_net(states["face_3drecon"], name, device)
    return SizeModels(renderer, recon_net, audio2exp, audio2pose, image_size=size)


def load_models(settings: Settings) -> ModelBundle:
    """Build the worker's :class:`ModelBundle` from ``settings.checkpoints_dir`` (start-up, once)."""
    from sadtalker.enhancer import load_enhancer
    from sadtalker.loading import load_mapping

    start = time.monotonic()
    if settings.reuse_freed_memory:  # before the first large tensor
        reuse_freed_memory()
    device = pick_device(settings.device)

    def load_size(size: int) -> SizeModels:
        return load_size_models(settings.checkpoints_dir, size, device, settings.torch_compile)

    sizes = {256: load_size(256)}
    if settings.load_512 == "startup":
        sizes[512] = load_size(512)
    bundle = ModelBundle(
        settings=settings,
        device=device,
        sizes=sizes,
        mappings={p: load_mapping(settings.checkpoints_dir, p, device) for p in ("crop", "full")},
        face_finder=make_face_finder(settings, device),
        enhancer=load_enhancer(settings.checkpoints_dir, device, precision=enhancer_precision(settings, device)),
        cache=LRUCache(settings.preprocess_cache_size),
        load_size=load_size,
    )
    log.info("models loaded in %.2f s on %s (sizes %s)", time.monotonic() - start, device, sorted(sizes))
    return bundle


def output_size(render_size: int, crop_size: Tuple[int, int]) -> Tuple[int, int]:
    """(width, height) of crop/resize-mode frames: the reference restores the crop's aspect ratio,
    (size, int(size * h / w)). (Full mode outputs the photo's own size, rounded to even by the paster.)"""
    width, height = crop_size
    return render_size, int(render_size * height / width)


def chunk_coefficients(
    models: SizeModels, options: JobOptions, pre: Preprocessed, windows: np.ndarray, chunks: List[Chunk], seed: int,
    progress: Progress,
) -> np.ndarray:
    """(T, 70) coefficients: each chunk from the source coefficients, its pose carried across the seam."""
    parts: List[np.ndarray] = []
    for chunk in chunks:
        cseed = chunk_seed(seed, chunk.index)
        blink = blink_sequence(chunk.n_frames, random.Random(cseed))
        generator = torch.Generator().manual_seed(cseed)
        coeffs = audio_to_coeffs(
            models.audio2exp, models.audio2pose, windows[chunk.start_frame : chunk.end_frame], pre.coeff_3dmm,
            blink, options.pose_style, generator,
        )
        parts.append(coeffs if not parts else carry_pose(parts[-1], coeffs))
        percent = _PERCENT_PREPROCESS + (_PERCENT_COEFFS - _PERCENT_PREPROCESS) * (chunk.index + 1) / len(chunks)
        progress("audio2coeff", chunk.index + 1, len(chunks), percent)
    coeffs = np.concatenate(parts, axis=0)
    if len(chunks) > 1:
        jumps = seam_jumps(coeffs, [c.start_frame for c in chunks[1:]])
        log.info("pose jump at seams / inside chunks: %.3f", jumps.worst_ratio)
    return coeffs


class _FramePost:
    """Per-batch work after the renderer: enhancer, resize to the output size, full-mode paste-back."""

    def __init__(self, bundle: ModelBundle, options: JobOptions, pre: Preprocessed, image_rgb: np.ndarray) -> None:
        self.enhancer = bundle.enhancer if options.enhancer == "gfpgan" else None
        if options.enhancer == "gfpgan" and bundle.enhancer is None:
            raise InvalidInput('the enhancer is not available on this worker; use "enhancer": "none"')
        self.paster = Paster(image_rgb, pre.crop_info.box, bundle.device) if options.preprocess == "full" else None
        self.size = self.paster.size if self.paster is not None else output_size(options.size, pre.crop_info.size)

    def __call__(self, frames: np.ndarray, timer: StageTimer) -> np.ndarray:
        if self.enhancer is not None:
            with timer.stage("enhance"):
                frames = self.enhancer.restore(frames)
        if self.paster is not None:
            with timer.stage("paste"):
                return self.paster.paste(frames)  # resizes the face to its box
        if frames.shape[1:3] != (self.size[1], self.size[0]):
            frames = _resize_frames(frames, self.size)
        return frames


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


def _preprocess(bundle: ModelBundle, models: SizeModels, options: JobOptions, image_rgb: np.ndarray) -> Preprocessed:
    key = image_key(image_rgb, options.preprocess, options.size, bundle.settings.face_detector)
    return bundle.cache.get_or_create(
        key, lambda: preprocess_image(image_rgb, bundle.face_finder, models.recon_net, options.preprocess, options.size)
    )


def animate(
    bundle: ModelBundle,
    options: JobOptions,
    image_rgb: np.ndarray,
    wav16k: np.ndarray,
    job_id: str,
    workdir: str,
    progress: Progress,
) -> dict:
    """Run one job; the MP4 is written into ``workdir``. Returns the video's path and its description."""
    timer = StageTimer()
    seed = resolve_seed(options.seed)
    frames_total = num_frames(len(wav16k))
    if frames_total < 1:
        raise InvalidInput("the audio is shorter than one video frame (40 ms)")
    models = bundle.for_size(options.size)

    progress("preprocess", 0, 0, 0.0)
    with timer.stage("preprocess"):
        pre = _preprocess(bundle, models, options, image_rgb)
    chunks = plan_chunks(wav16k, bundle.settings.chunk_seconds)
    progress("audio2coeff", 0, len(chunks), _PERCENT_PREPROCESS)
    with timer.stage("audio2coeff"):
        windows = mel_windows(melspectrogram(fit_to_frames(wav16k, frames_total)), frames_total)
        coeffs = chunk_coefficients(models, options, pre, windows, chunks, seed, progress)
        targets = target_semantics(
            coeffs, pre.coeff_3dmm, options.expression_scale, options.still_mode, options.preprocess
        )
        sources = source_semantics(pre.coeff_3dmm, options.preprocess)

    post = _FramePost(bundle, options, pre, image_rgb)
    path = os.path.join(workdir, f"{job_id}.mp4")
    batches = render(
        models.renderer, bundle.mapping(options.preprocess), _source_for(models, pre), sources, targets,
        bundle.settings.render_batch_for(bundle.device.type), precision=bundle.settings.render_dtype,
    )
    width, height = post.size
    with VideoWriter(path, width, height, wav16k, n_frames=frames_total, queue_batches=_ENCODER_QUEUE) as writer:
        _stream(_timed(batches, timer, "render"), post, writer, chunks, timer, progress)
        progress("encode", len(chunks), len(chunks), _PERCENT_RENDERED)
        with timer.stage("encode"):
            video = writer.close()
    return {
        "video_path": video.path,
        "width": video.width,
        "height": video.height,
        "fps": video.fps,
        "frames": video.frames,
        "chunks_processed": len(chunks),
        "duration_seconds": round(frames_total / FPS, 3),
        "timings": timer.rounded(),
        "seed": seed,
    }


def _stream(
    batches: Iterator[np.ndarray], post: _FramePost, writer: VideoWriter, chunks: List[Chunk], timer: StageTimer,
    progress: Progress,
) -> None:
    """Post-process and encode every rendered batch, reporting progress as frames cross chunk boundaries."""
    done, chunk_index = 0, 0
    total = chunks[-1].end_frame
    for frames in batches:
        frames = post(frames, timer)
        with timer.stage("encode"):
            writer.write(frames)
        done += len(frames)
        while chunk_index < len(chunks) - 1 and done >= chunks[chunk_index].end_frame:
            chunk_index += 1
        percent = _PERCENT_COEFFS + (_PERCENT_RENDERED - _PERCENT_COEFFS) * done / total
        progress("render", chunk_index + 1, len(chunks), percent)
