"""Renderer stage: 3DMM coefficients + source image -> video frames (uint8), batch by batch.

Steps (as the reference's ``get_facerender_data`` + ``make_animation``):

1. :func:`target_coefficients`: the generated (T, 70) coefficients with ``expression_scale`` applied to
   the 64 expression columns; for preprocess ``full`` the source's 3 crop parameters are appended
   (73 columns); ``still_mode`` replaces every frame's pose (and crop) columns by the source's.
2. :func:`semantic_windows`: each frame gets the coefficients of frames i-13 .. i+13 (clamped), (T, C, 27).
   :func:`source_semantics`: the source coefficients repeated 27 times, (C, 27). At another output rate than
   25 fps, :func:`resampled_windows` gives each output frame the window around its own instant, interpolated
   between the 25 fps rows (:mod:`sadtalker.core.timeline`).
3. :func:`render`: canonical keypoints and the source pose once; per batch of windows MappingNet gives
   the driving pose, the keypoint transform gives driving keypoints, and the generator renders the frames.
   Frames come out in time order as uint8 (rint(x * 255)). Every frame is computed independently of the
   others, so the batch size changes speed and memory, never the frames.
"""

from __future__ import annotations

from typing import Iterator, Optional, Protocol, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from sadtalker.core.constants import EXPRESSION_COLUMNS, MOTION_COEFFS, SOURCE_COEFFS, is_full
from sadtalker.core.precision import precision_context
from sadtalker.core.timeline import Timeline
from sadtalker.render.keypoints import transform_keypoints
from sadtalker.render.mapping import MappingNet
from sadtalker.render.models import RendererModels

SEMANTIC_RADIUS = 13  # window of 2 * 13 + 1 = 27 frames around each frame


class WindowSource(Protocol):
    """Target windows read one batch at a time: ``len`` frames, a slice of frames -> (B, C, 27)."""

    def __len__(self) -> int: ...

    def __getitem__(self, frames: slice) -> np.ndarray: ...


def semantic_windows(coeffs: np.ndarray, radius: int = SEMANTIC_RADIUS) -> np.ndarray:
    """(T, C) -> (T, C, 2*radius+1) float32: frame i's window holds frames i-radius..i+radius, clamped."""
    coeffs = np.asarray(coeffs, dtype=np.float32)
    if coeffs.ndim != 2 or coeffs.shape[0] == 0:
        raise ValueError(f"coefficients must be (T, C) with T >= 1, got shape {coeffs.shape}")
    t = coeffs.shape[0]
    return window_range(coeffs, t, 0, t, radius)


def window_range(coeffs: np.ndarray, total: int, start: int, stop: int, radius: int = SEMANTIC_RADIUS) -> np.ndarray:
    """Frames ``start..stop-1`` of :func:`semantic_windows` over a ``total``-frame sequence of which ``coeffs``
    (K, C) holds the first K rows, K >= min(stop + radius, total): (stop - start, C, 2*radius+1) float32, clamped at
    the ends of the whole sequence, so the renderer can start before the last rows exist."""
    index = np.clip(np.arange(start, stop)[:, None] + np.arange(-radius, radius + 1)[None, :], 0, total - 1)
    if index.size and index.max() >= len(coeffs):
        raise ValueError(f"frames {start}..{stop - 1} need rows up to {index.max()}, only {len(coeffs)} exist")
    return np.ascontiguousarray(np.asarray(coeffs, dtype=np.float32)[index].transpose(0, 2, 1))


def resampled_windows(
    coeffs: np.ndarray, timeline: Timeline, start: int, stop: int, radius: int = SEMANTIC_RADIUS
) -> np.ndarray:
    """Output frames ``start..stop-1`` of ``timeline``: each frame's window of 2*radius+1 coefficient rows, spaced
    40 ms apart (the models' rate) around the frame's own instant, (stop - start, C, 2*radius+1) float32.

    At 25 fps this is :func:`window_range`. At another rate a window's rows sit at fractional positions and are
    interpolated linearly between the two rows around them; positions are clamped to the sequence first, as
    :func:`window_range` clamps rows. ``coeffs`` (K, C) holds the first K rows of ``timeline.model_frames``.
    """
    if timeline.native:
        return window_range(coeffs, timeline.model_frames, start, stop, radius)
    row, fraction = timeline.positions(start, stop)
    rows = row[:, None] + np.arange(-radius, radius + 1)[None, :]
    windows = resample_rows(coeffs, timeline.model_frames, rows, fraction[:, None])
    return np.ascontiguousarray(windows.transpose(0, 2, 1))


def resample_rows(values: np.ndarray, total: int, rows: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    """``values`` (K, C), the first K rows of a ``total``-row sequence, at positions ``rows + fraction`` (any
    shapes that broadcast together; clamped to 0..total-1) -> (*shape, C) float32, linear between neighbouring rows.
    A position with fraction 0 is its row's values exactly."""
    low = np.clip(rows, 0, total - 1)
    high = np.where(fraction > 0, np.clip(rows + 1, 0, total - 1), low)
    if high.size and high.max() >= len(values):
        raise ValueError(f"positions up to row {high.max()} need more rows than the {len(values)} that exist")
    table = np.asarray(values, dtype=np.float32)
    below, above = table[low], table[high]
    return below + fraction.astype(np.float32)[..., None] * (above - below)


def source_semantics(source_coeff: np.ndarray, preprocess: str, radius: int = SEMANTIC_RADIUS) -> np.ndarray:
    """Source coefficients (73,) -> (C, 2*radius+1) float32, C = 73 for full modes else 70."""
    n = SOURCE_COEFFS if is_full(preprocess) else MOTION_COEFFS
    column = np.asarray(source_coeff, dtype=np.float32).reshape(-1)[:n]
    return np.repeat(column[:, None], 2 * radius + 1, axis=1)


def target_coefficients(
    coeffs: np.ndarray,
    source_coeff: np.ndarray,
    expression_scale: float = 1.0,
    still_mode: bool = False,
    preprocess: str = "crop",
) -> np.ndarray:
    """Generated (T, >=70) + source (73,) -> driving coefficients (T, 70 or 73) float32."""
    target = np.array(coeffs, dtype=np.float32)[:, :MOTION_COEFFS]
    source = np.asarray(source_coeff, dtype=np.float32).reshape(-1)
    target[:, EXPRESSION_COLUMNS] = target[:, EXPRESSION_COLUMNS] * np.float32(expression_scale)
    if is_full(preprocess):  # the source's crop columns on every frame
        target = np.concatenate([target, np.repeat(source[None, MOTION_COEFFS:SOURCE_COEFFS], len(target), 0)], axis=1)
    if still_mode:  # pose (and crop) held at the source's
        pose_and_crop = slice(EXPRESSION_COLUMNS.stop, target.shape[1])
        target[:, pose_and_crop] = source[pose_and_crop]
    return target


def target_semantics(
    coeffs: np.ndarray,
    source_coeff: np.ndarray,
    expression_scale: float = 1.0,
    still_mode: bool = False,
    preprocess: str = "crop",
    radius: int = SEMANTIC_RADIUS,
) -> np.ndarray:
    """:func:`target_coefficients` then :func:`semantic_windows`: (T, C, 27) float32."""
    return semantic_windows(target_coefficients(coeffs, source_coeff, expression_scale, still_mode, preprocess), radius)


def image_to_tensor(image: np.ndarray, device: torch.device, dtype: torch.dtype) -> Tensor:
    """uint8 (S, S, 3) -> (1, 3, S, S) in [0, 1], as skimage's img_as_float32 (x * float32(1/255))."""
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)
    scaled = pixels.to(torch.float32) * torch.tensor(1 / 255, dtype=torch.float32)
    return scaled.to(device=device, dtype=dtype)


def frames_to_uint8_tensor(frames: Tensor) -> Tensor:
    """(B, 3, S, S) in [0, 1] -> (B, S, S, 3) uint8 on the same device, by rint(x * 255) (skimage's img_as_ubyte)."""
    scaled = torch.round(frames.float().clamp(0, 1) * 255)
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def frames_to_uint8(frames: Tensor) -> np.ndarray:
    """(B, 3, S, S) in [0, 1] -> (B, S, S, 3) uint8 numpy (see :func:`frames_to_uint8_tensor`)."""
    return frames_to_uint8_tensor(frames).cpu().numpy()


def render(
    models: RendererModels,
    mapping: MappingNet,
    source_image: np.ndarray,
    source_semantics: np.ndarray,
    target_windows: Union[np.ndarray, WindowSource],
    batch_size: int,
    precision: str = "fp32",
    camera: Optional[np.ndarray] = None,
) -> Iterator[np.ndarray]:
    """Yield frames (B, S, S, 3) uint8 in time order, ``batch_size`` frames per batch (the last may be shorter).

    source_image: (S, S, 3) uint8 at the render size; source_semantics: (C, 27); target_windows: (T, C, 27), an
    array or any sequence whose slices are such arrays, read one batch at a time (the pipeline's windows are
    computed as the coefficients come, :class:`sadtalker.pipeline.TargetWindows`).
    ``camera``: optional (T, 3) (yaw, pitch, roll) degrees per frame replacing MappingNet's angles, NaN = keep
    (:func:`sadtalker.render.camera.camera_sequence`).
    Runs on the device and dtype of ``models``; ``precision`` (fp32, tf32, fp16, bf16) sets the arithmetic of the
    whole region (:func:`precision_context`).
    On CUDA each batch's frames travel to pinned host memory asynchronously while the next batch renders.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device, dtype = models.device, models.dtype
    downloads = FrameDownloads(device)
    # The precision region is entered per step and left before each yield, so the caller's code between
    # batches (enhancer, paste-back) never runs under the renderer's autocast or TF32 setting.
    with torch.inference_mode(), precision_context(device, precision):
        source = image_to_tensor(source_image, device, dtype)
        kp_canonical = models.kp_extractor(source)  # (1, K, 3)
        semantics = torch.from_numpy(np.asarray(source_semantics, dtype=np.float32))[None].to(device, dtype)
        kp_source = transform_keypoints(kp_canonical, mapping(semantics))
        feature = models.generator.encode(source)  # the source's appearance volume, shared by all frames
    for start in range(0, len(target_windows), batch_size):
        windows = torch.from_numpy(np.asarray(target_windows[start : start + batch_size], dtype=np.float32))
        if device.type == "cuda":
            windows = windows.pin_memory()
        with torch.inference_mode(), precision_context(device, precision):
            batch = windows.to(device, dtype, non_blocking=True)
            n = batch.shape[0]
            angles = None if camera is None else torch.from_numpy(np.asarray(camera[start : start + n], np.float32))
            kp_driving = transform_keypoints(kp_canonical.expand(n, -1, -1), mapping(batch), angles)
            ready = list(downloads.push(render_frames(models, feature, kp_source, kp_driving)))
        yield from ready
    yield from downloads.drain()


class FrameDownloads:
    """Frames (B, 3, S, S) in [0, 1] on the device -> uint8 (B, S, S, 3) numpy, in order.

    On CUDA the uint8 conversion runs on the GPU and the copy goes to a pinned host buffer without
    blocking; a batch is handed out only after the next one was queued, so the copy and the CPU's
    encoding overlap the GPU's rendering. On CPU every batch comes out at once.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.pending: Optional[Tuple[Tensor, "torch.cuda.Event"]] = None

    def push(self, frames: Tensor) -> Iterator[np.ndarray]:
        if not self.cuda:
            yield frames_to_uint8(frames)
            return
        pixels = frames_to_uint8_tensor(frames)
        host = torch.empty(pixels.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(pixels, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        previous, self.pending = self.pending, (host, event)
        if previous is not None:
            yield self._ready(previous)

    def drain(self) -> Iterator[np.ndarray]:
        previous, self.pending = self.pending, None
        if previous is not None:
            yield self._ready(previous)

    @staticmethod
    def _ready(item: Tuple[Tensor, "torch.cuda.Event"]) -> np.ndarray:
        host, event = item
        event.synchronize()
        return host.numpy()


def render_frames(models: RendererModels, feature: Tensor, kp_source: Tensor, kp_driving: Tensor) -> Tensor:
    """One batch: source volume (1, C, D, H, W), kp_source (1, K, 3), kp_driving (B, K, 3) -> (B, 3, S, S)."""
    n = kp_driving.shape[0]
    feature = feature.expand(n, *feature.shape[1:])
    motion = models.generator.motion(feature, kp_source.expand(n, -1, -1), kp_driving)
    return models.generator.decode(feature, motion)
