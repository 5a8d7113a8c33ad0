"""5-point alignment of a face image for ReconNet (Deep3DFaceRecon's ``align_img``), pure numpy + PIL.

From 68 landmarks (image pixels, y down) to the 224x224 ReconNet input and trans_params:

1. flip y (y' = H - 1 - y) and take 5 points: eye centres (means of points 37/40 and 43/46,
   1-based), nose tip 31, mouth corners 49 and 55;
2. fit them by least squares to the 5-point 3D template (x' = s R1.X + tx, y' = s R2.X + ty), so
   s = mean(|R1|, |R2|) and t = (tx, ty); the image scale is 102 / s;
3. resize the image to (int(W*s), int(H*s)) with PIL bicubic and cut 224x224 at
   left = int(w/2 - 112 + (tx - W/2) s), up = int(h/2 - 112 + (H/2 - ty) s) (truncated toward zero,
   as the reference's ``astype(int32)``; PIL fills any part outside the image with black).

trans_params = [W, H, s, tx, ty] (tx, ty in y-flipped coordinates); SadTalker keeps the last three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from sadtalker.core.errors import NoFaceDetected

TARGET_SIZE = 224
RESCALE = 102.0
MAX_SCALED_SIDE = 8192  # a larger rescaled image means the landmarks are nonsense (a face ~100x smaller)

# The 5-point 3D template (left eye, right eye, nose, mouth left, mouth right), x/y/z. Derived by
# Deep3DFaceRecon from its 68-point similarity_Lm3D_all.mat (eye centres = means of two points);
# float32 values, as the reference holds them.
LM3D_TEMPLATE = np.array(
    [
        [-0.3114865720272064, 0.29036077857017517, 0.13377952575683594],
        [0.30979886651039124, 0.289720356464386, 0.1317952573299408],
        [0.003253498813137412, -0.04617932438850403, 0.5524424314498901],
        [-0.25216928124427795, -0.3813391625881195, 0.22405731678009033],
        [0.24846619367599487, -0.38128235936164856, 0.22235769033432007],
    ],
    dtype=np.float32,
)

# 0-based indices into the 68 points: nose tip, left eye (2), right eye (2), mouth corners.
_NOSE, _LEFT_EYE, _RIGHT_EYE, _MOUTH_LEFT, _MOUTH_RIGHT = 30, (36, 39), (42, 45), 48, 54


@dataclass(frozen=True)
class Alignment:
    trans_params: np.ndarray  # (5,) float64: W, H, s, tx, ty
    image: np.ndarray  # (224, 224, 3) uint8 RGB, the ReconNet input


def flip_y(landmarks: np.ndarray, height: int) -> np.ndarray:
    """(68, 2) float32 with y -> H - 1 - y (Deep3DFaceRecon's y-up convention)."""
    lm = np.array(landmarks, dtype=np.float32)
    lm[:, 1] = height - 1 - lm[:, 1]
    return lm


def template_landmarks(width: int, height: int) -> np.ndarray:
    """The 5 template points placed in a W x H image, used when no face is found on the crop."""
    lm = (LM3D_TEMPLATE[:, :2] + 1) / 2.0
    return np.concatenate([lm[:, :1] * width, lm[:, 1:2] * height], axis=1)


def five_points(lm68: np.ndarray) -> np.ndarray:
    """(68, 2) -> (5, 2): left eye, right eye, nose, mouth left, mouth right (float32 means)."""
    lm = np.asarray(lm68)
    return np.stack(
        [
            np.mean(lm[list(_LEFT_EYE)], axis=0),
            np.mean(lm[list(_RIGHT_EYE)], axis=0),
            lm[_NOSE],
            lm[_MOUTH_LEFT],
            lm[_MOUTH_RIGHT],
        ]
    )


def fit_scale_translation(points2d: np.ndarray, points3d: np.ndarray = LM3D_TEMPLATE) -> Tuple[np.ndarray, float]:
    """Least-squares affine projection of 3D to 2D points; returns t (2,) and the mean row norm s."""
    n = points2d.shape[0]
    a = np.zeros((2 * n, 8))
    a[0::2, 0:3] = points3d
    a[0::2, 3] = 1
    a[1::2, 4:7] = points3d
    a[1::2, 7] = 1
    b = np.reshape(points2d, (2 * n, 1))
    k = np.linalg.lstsq(a, b, rcond=None)[0][:, 0]
    s = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2
    return np.array([k[3], k[7]]), float(s)


def align_image(image: np.ndarray, lm: np.ndarray) -> Alignment:
    """Align an (H, W, 3) uint8 RGB image given y-flipped (68, 2) or (5, 2) landmarks."""
    from PIL import Image

    height, width = image.shape[:2]
    lm5 = five_points(lm) if lm.shape[0] != 5 else np.asarray(lm)
    t, s_fit = fit_scale_translation(lm5)
    s = RESCALE / s_fit if s_fit > 0 else float("inf")
    finite = np.isfinite(s) and np.all(np.isfinite(t))
    if not (finite and 0 < width * s <= MAX_SCALED_SIDE and 0 < height * s <= MAX_SCALED_SIDE):
        raise NoFaceDetected("the face landmarks are degenerate (cannot align the face); use a clearer face photo")
    w, h = int(width * s), int(height * s)
    left = int(w / 2 - TARGET_SIZE / 2 + (t[0] - width / 2) * s)
    up = int(h / 2 - TARGET_SIZE / 2 + (height / 2 - t[1]) * s)
    resized = Image.fromarray(image).resize((w, h), resample=Image.Resampling.BICUBIC)
    cropped = resized.crop((left, up, left + TARGET_SIZE, up + TARGET_SIZE))
    trans_params = np.array([width, height, s, t[0], t[1]], dtype=np.float64)
    return Alignment(trans_params=trans_params, image=np.asarray(cropped, dtype=np.uint8))
