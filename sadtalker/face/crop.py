"""Face crop from 68 landmarks (FFHQ-style oriented square), as SadTalker's preprocess computes it.

Pure functions on numpy arrays, as the reference's ``Preprocesser.crop``. The arithmetic keeps
the reference's dtypes where they change the result: landmark means stay float32, the oriented
axes become float64 (numpy promotes float32 * int list), and the crop box uses the reference's
floor/ceil/rint/int steps. Known reference quirks reproduced on purpose:

- the inner box's right and bottom bounds are both clamped with the image *width*;
- the quad is in border-crop coordinates, but clamped with the full (possibly shrunk) image width.

Where the reference crashes (a face wider than about 2048 px, which makes it call Pillow's removed
``Image.ANTIALIAS``), the image is shrunk with OpenCV bilinear as its frame resize does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from sadtalker.core.constants import PREPROCESS_MODES
from sadtalker.core.errors import NoFaceDetected

CROP_OUTPUT_SIZE = 512  # the reference's align_face output_size (only used for the shrink factor)

Box = Tuple[int, int, int, int]


@dataclass(frozen=True)
class CropInfo:
    """Where the animated face sits in the original image.

    ``box`` = (x1, y1, x2, y2) in ORIGINAL image pixels: the region the source image was cut from
    and where full mode pastes frames back (resize mode: the whole image). ``size`` = (x2-x1, y2-y1).
    The other fields record the reference's intermediate values (None in resize mode).
    """

    original_size: Tuple[int, int]  # (W, H) of the input image
    box: Box
    rsize: Tuple[int, int]  # (W, H) after the optional shrink
    border_crop: Optional[Box] = None  # (clx, cly, crx, cry) in shrunk-image pixels
    quad: Optional[Tuple[float, float, float, float]] = None  # (lx, ly, rx, ry) inside border_crop
    # extcrop/extfull: the inner square's integer size (rx - lx, ry - ly), which the reference's crop_info
    # carries even though the source is the wider border crop; it sets the shape of extcrop's output frames.
    quad_size: Optional[Tuple[int, int]] = None

    @property
    def size(self) -> Tuple[int, int]:
        return (self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def frame_size(self) -> Tuple[int, int]:
        """(w, h) whose aspect the output frames take in the crop modes: the quad's in ext modes, else the box's."""
        return self.quad_size if self.quad_size is not None else self.size


@dataclass(frozen=True)
class FaceQuad:
    rsize: Tuple[int, int]
    border_crop: Box
    quad: Tuple[float, float, float, float]


def _oriented_axes(lm: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre c, half-axis x, half-axis y) of the face square from 68 float32 landmarks."""
    eye_left = np.mean(lm[36:42], axis=0)
    eye_right = np.mean(lm[42:48], axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    flip = np.array([-1, 1])  # an int array: float32 * int64 promotes to float64, as in the reference
    x = eye_to_eye - np.flipud(eye_to_mouth) * flip
    norm = np.hypot(*x)
    if not np.isfinite(norm) or norm <= 0:
        raise NoFaceDetected("the face landmarks are degenerate (eyes and mouth coincide); use a clearer face photo")
    x = x / norm
    x = x * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * flip
    c = eye_avg + eye_to_mouth * 0.1
    return c, x, y


def face_quad(landmarks: np.ndarray, image_size: Tuple[int, int], output_size: int = CROP_OUTPUT_SIZE) -> FaceQuad:
    """The reference's ``align_face``: shrink factor, border crop and inner square (lx, ly, rx, ry).

    landmarks: (68, 2) x, y in image pixels (cast to float32); image_size: (W, H).
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    width, height = image_size
    c, x, y = _oriented_axes(lm)
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    qsize = np.hypot(*x) * 2
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(width) / shrink)), int(np.rint(float(height) / shrink)))
        quad = quad / shrink
        qsize = qsize / shrink
    else:
        rsize = (int(np.rint(float(width))), int(np.rint(float(height))))
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (
        max(int(np.floor(min(quad[:, 0]))) - border, 0),
        max(int(np.floor(min(quad[:, 1]))) - border, 0),
        min(int(np.ceil(max(quad[:, 0]))) + border, rsize[0]),
        min(int(np.ceil(max(quad[:, 1]))) + border, rsize[1]),
    )
    if crop[2] - crop[0] < rsize[0] or crop[3] - crop[1] < rsize[1]:
        quad = quad - crop[0:2]
    q = (quad + 0.5).flatten()
    inner = (
        float(max(min(q[0], q[2]), 0)),
        float(max(min(q[1], q[7]), 0)),
        float(min(max(q[4], q[6]), rsize[0])),
        float(min(max(q[3], q[5]), rsize[0])),  # the reference clamps y with the width too
    )
    return FaceQuad(rsize=rsize, border_crop=crop, quad=inner)


def _resize(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    import cv2

    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    return cv2.resize(image, tuple(size))


def crop_face(image: np.ndarray, landmarks: Optional[np.ndarray], preprocess: str) -> Tuple[np.ndarray, CropInfo]:
    """Cut the face region for ``crop``/``full`` (the same square), ``extcrop``/``extfull`` (the wider border crop
    around it, the reference's ``crop(..., still=True)``), or take the whole image (``resize``).

    image: (H, W, 3) uint8 RGB; landmarks (68, 2), unused (may be None) for ``resize``. Returns the region
    (h, w, 3) uint8 and its :class:`CropInfo`.
    Raises NoFaceDetected when the landmarks give an empty region.
    """
    if preprocess not in PREPROCESS_MODES:
        raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, got {preprocess!r}")
    height, width = image.shape[:2]
    if preprocess == "resize":
        return image, CropInfo(original_size=(width, height), box=(0, 0, width, height), rsize=(width, height))
    if landmarks is None:
        raise ValueError(f"crop_face needs landmarks for preprocess {preprocess!r}")
    fq = face_quad(landmarks, (width, height))
    clx, cly, crx, cry = fq.border_crop
    lx, ly, rx, ry = (int(v) for v in fq.quad)
    extended = preprocess.startswith("ext")
    region = _resize(image, fq.rsize)[cly:cry, clx:crx]
    quad_size = (rx - lx, ry - ly) if extended else None
    if extended:
        lx, ly = 0, 0  # the border crop itself: its box starts at (clx, cly)
    else:
        region = region[ly:ry, lx:rx]
    if region.shape[0] < 2 or region.shape[1] < 2:
        raise NoFaceDetected("the detected face region is empty; use a photo with one clearly visible face")
    scale_x, scale_y = width / fq.rsize[0], height / fq.rsize[1]  # 1.0 unless the image was shrunk
    box = (
        int(round((clx + lx) * scale_x)),
        int(round((cly + ly) * scale_y)),
        int(round((clx + lx + region.shape[1]) * scale_x)),
        int(round((cly + ly + region.shape[0]) * scale_y)),
    )
    info = CropInfo(
        original_size=(width, height),
        box=box,
        rsize=fq.rsize,
        border_crop=fq.border_crop,
        quad=fq.quad,
        quad_size=quad_size,
    )
    return region, info


def resize_source(region: np.ndarray, size: int) -> np.ndarray:
    """The renderer's source image: the region resized to size x size with OpenCV bilinear."""
    import cv2

    return cv2.resize(region, (size, size))
