"""Image preprocessing: face photo -> renderer source image + source 3DMM coefficients + crop info.

The reference's ``CropAndExtract.generate`` without its files:

1. landmarks on the photo (skipped in ``resize`` mode, which uses the whole image);
2. crop (``crop``/``full``: the face square; ``extcrop``/``extfull``: the border crop around it) and resize
   to size x size (OpenCV bilinear): the source image;
3. landmarks again on the source image; if none are found there, the 5-point template stands in
   (the reference's fallback) in crop/full mode, while ``resize`` mode, which found no face anywhere,
   raises NoFaceDetected;
4. 5-point alignment to a 224x224 image and ReconNet -> coeff_3dmm (73,) =
   exp 64 | angle 3 | trans 3 | crop scale s, tx, ty (``EXPRESSION_COLUMNS``, ``POSE_COLUMNS`` and ``CROP_COLUMNS``
   of :mod:`sadtalker.core.constants`).

Landmarks for either pass can be passed in (tests, callers with their own detector).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from sadtalker.core.errors import NoFaceDetected
from sadtalker.face import align3dmm
from sadtalker.face.crop import CropInfo, crop_face, resize_source
from sadtalker.face.finders import FaceFinder
from sadtalker.face.reconnet import ReconNet, select_coeff_70

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preprocessed:
    source_image: np.ndarray  # (size, size, 3) uint8 RGB, the renderer's source
    coeff_3dmm: np.ndarray  # (73,) float32: exp 64 | angle 3 | trans 3 | s, tx, ty
    crop_info: CropInfo  # where the face came from in the original image (full-mode paste-back)


@dataclass(frozen=True)
class Reconstruction:
    coeff_3dmm: np.ndarray  # (73,) float32
    full_3dmm: np.ndarray  # (257,) float32, all ReconNet outputs
    alignment: align3dmm.Alignment  # trans_params and the 224x224 ReconNet input


def _finder(finder: Optional[FaceFinder]) -> FaceFinder:
    """``finder``, which may be None only when every landmark set it would compute is given."""
    if finder is None:
        raise ValueError("a face finder is needed: landmarks were not given")
    return finder


def crop_landmarks_for_alignment(
    finder: Optional[FaceFinder], source: np.ndarray, lm: Optional[np.ndarray]
) -> np.ndarray:
    """Landmarks on the source image in y-up coordinates, or the 5-point template when none are found."""
    height, width = source.shape[:2]
    if lm is None:
        try:
            lm = _finder(finder).landmarks(source)
        except NoFaceDetected:
            log.warning("no face found on the %dx%d crop; aligning with the 5-point template", width, height)
            return align3dmm.template_landmarks(width, height)
    return align3dmm.flip_y(lm, height)


@torch.no_grad()
def reconstruct(recon_net: ReconNet, source: np.ndarray, lm_yup: np.ndarray) -> Reconstruction:
    """Align ``source`` with y-up landmarks (68 or 5 points) and run ReconNet."""
    param = next(recon_net.parameters())
    alignment = align3dmm.align_image(source, lm_yup)
    image = torch.tensor(alignment.image / 255.0, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0)
    full = recon_net(image.to(device=param.device, dtype=param.dtype)).float().cpu()
    coeff = np.concatenate([select_coeff_70(full)[0].numpy(), alignment.trans_params[2:5].astype(np.float32)]).astype(
        np.float32
    )
    return Reconstruction(coeff_3dmm=coeff, full_3dmm=full[0].numpy(), alignment=alignment)


def crop_source(
    image_rgb: np.ndarray,
    finder: Optional[FaceFinder],
    preprocess: str,
    size: int,
    landmarks: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, CropInfo]:
    """Steps 1-2: the size x size source image and its crop info."""
    if preprocess != "resize" and landmarks is None:
        landmarks = _finder(finder).landmarks(image_rgb)
    region, info = crop_face(image_rgb, landmarks, preprocess)
    return resize_source(region, size), info


def preprocess_image(
    image_rgb: np.ndarray,
    finder: Optional[FaceFinder],
    recon_net: ReconNet,
    preprocess: str,
    size: int,
    *,
    landmarks: Optional[np.ndarray] = None,
    crop_landmarks: Optional[np.ndarray] = None,
) -> Preprocessed:
    """Photo -> :class:`Preprocessed`.

    Parameters
    ----------
    image_rgb : (H, W, 3) uint8 RGB photo.
    finder : a face finder; may be None when both landmark sets are given.
    recon_net : ReconNet, already on its device (tensors follow the network's parameters).
    preprocess : "crop", "resize", "full", "extcrop" or "extfull".
    size : 256 or 512.
    landmarks, crop_landmarks : optional (68, 2) landmarks (x, y, y down) on the photo and on the
        size x size source image, used instead of running the finder.
    """
    source, info = crop_source(image_rgb, finder, preprocess, size, landmarks)
    if preprocess == "resize" and crop_landmarks is None:
        crop_landmarks = _finder(finder).landmarks(source)  # no face anywhere: NoFaceDetected
    lm_yup = crop_landmarks_for_alignment(finder, source, crop_landmarks)
    recon = reconstruct(recon_net, source, lm_yup)
    return Preprocessed(source_image=source, coeff_3dmm=recon.coeff_3dmm, crop_info=info)


# --- reference video -------------------------------------------------------------------------------

VIDEO_SIZE = 256  # the reference preprocesses a video at 256 whatever the job's size
RECON_BATCH = 16  # ReconNet frames per call


@dataclass(frozen=True)
class VideoCoefficients:
    coeff_3dmm: np.ndarray  # (N, 73) float32 per frame: exp 64 | angle 3 | trans 3 | s, tx, ty
    full_3dmm: np.ndarray  # (N, 257) float32
    filled: int  # frames without a face on the crop, given the nearest frame's coefficients
    crop_info: CropInfo  # the crop of frame 0, applied to every frame


@torch.no_grad()
def preprocess_video(
    frames: np.ndarray,
    finder: Optional[FaceFinder],
    recon_net: ReconNet,
    preprocess: str,
    *,
    landmarks: Optional[np.ndarray] = None,
    crop_landmarks: Optional[np.ndarray] = None,
) -> VideoCoefficients:
    """Reference video frames (N, H, W, 3) uint8 RGB -> per-frame 3DMM coefficients, as the reference's
    ``CropAndExtract.generate(video, source_image_flag=False)`` builds them:

    1. landmarks on frame 0 only; its crop box (mode ``preprocess``) cuts EVERY frame;
    2. each crop resized to 256 x 256 (the reference passes no size for videos);
    3. landmarks per frame on the 256 crops, 5-point alignment, and ReconNet in batches of 16 on the network's device.

    No face on frame 0: NoFaceDetected. A frame whose crop shows no face gets the coefficients of the nearest frame
    that has one (counted in ``filled``); no face on any crop: NoFaceDetected.
    ``landmarks`` (68, 2) on frame 0 and ``crop_landmarks`` (N, 68, 2) on the crops may be injected (tests).
    """
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ValueError(f"frames must be (N, H, W, 3) with N >= 1, got {frames.shape}")
    if preprocess != "resize" and landmarks is None:
        try:
            landmarks = _finder(finder).landmarks(frames[0])
        except NoFaceDetected:
            raise NoFaceDetected("no face was found on the first frame of the reference video") from None
    _, info = crop_face(frames[0], landmarks, preprocess)
    aligned, found = [], []
    for index, frame in enumerate(frames):
        region, _ = crop_face(frame, landmarks, preprocess)
        crop = resize_source(region, VIDEO_SIZE)
        if crop_landmarks is not None:
            lm = crop_landmarks[index]
        else:
            try:
                lm = _finder(finder).landmarks(crop)
            except NoFaceDetected:
                continue
        aligned.append(align3dmm.align_image(crop, align3dmm.flip_y(lm, VIDEO_SIZE)))
        found.append(index)
    if not found:
        raise NoFaceDetected("no face was found on the reference video's frames")
    param = next(recon_net.parameters())
    full_parts = []
    for start in range(0, len(aligned), RECON_BATCH):
        batch = np.stack([a.image for a in aligned[start : start + RECON_BATCH]])
        tensor = torch.tensor(batch / 255.0, dtype=torch.float32).permute(0, 3, 1, 2)
        full_parts.append(recon_net(tensor.to(device=param.device, dtype=param.dtype)).float().cpu())
    full = torch.cat(full_parts)
    crop_params = np.stack([a.trans_params[2:5] for a in aligned]).astype(np.float32)
    coeff = np.concatenate([select_coeff_70(full).numpy(), crop_params], axis=1).astype(np.float32)
    nearest = _nearest(np.asarray(found), len(frames))
    return VideoCoefficients(
        coeff_3dmm=coeff[nearest], full_3dmm=full.numpy()[nearest], filled=len(frames) - len(found), crop_info=info
    )


def _nearest(found: np.ndarray, count: int) -> np.ndarray:
    """For each of ``count`` frames, the position in ``found`` (sorted frame indices) of the nearest found frame
    (the earlier one on a tie)."""
    position = np.searchsorted(found, np.arange(count))
    before = np.clip(position - 1, 0, len(found) - 1)
    after = np.clip(position, 0, len(found) - 1)
    frames = np.arange(count)
    return np.where(np.abs(found[after] - frames) < np.abs(frames - found[before]), after, before)
