"""Face finders: one RGB image -> 68 facial landmarks (x, y in pixels), or NoFaceDetected.

Two providers, chosen by the setting ``FACE_DETECTOR``:

- ``retinaface`` (default, the reference's path): facexlib's RetinaFace-ResNet50
  (``detection_Resnet50_Final.pth``) gives face boxes; the first box scoring above 0.97 is cut out and
  run through the 98-point AWing FAN (``alignment_WFLW_4HG.pth``, facexlib's architecture). Its
  heatmaps are decoded here (facexlib's own decoding breaks on numpy 2 and indexes past the heatmap
  at the border) and the 98 WFLW points are turned into the 68-point layout.
- ``dlib``: dlib's HOG face detector and its 68-point shape predictor, shipped inside the
  ``dlib-bin`` and ``face-recognition-models`` packages (no downloaded weights).

Whatever a detector returns is checked; boxes or landmarks that cannot be a face (empty,
non-finite, far outside the image, collapsed) end in NoFaceDetected, never in a crash later on.
"""

from __future__ import annotations

import logging
from typing import Optional, Protocol, Sequence, Tuple

import numpy as np

from sadtalker.core.errors import NoFaceDetected

log = logging.getLogger(__name__)

DETECTION_THRESHOLD = 0.97  # the reference's detect_faces(img, 0.97)
FAN_INPUT = 256  # the face box is resized to 256x256 for the FAN
HEATMAP = 64  # FAN heatmaps are 64x64
MIN_FACE_SIDE = 8  # pixels; a smaller box is not a usable face
MAX_BOX_ASPECT = 3.0  # a face box is never longer than 3:1
MIN_BOX_INSIDE = 0.5  # fraction of a face box that must lie inside the image
DLIB_UPSAMPLE = 1  # detector(img, 1): one upsampling, finds faces down to ~40 px

NO_FACE_MESSAGE = "no face was found in the image; use a photo with one clearly visible, roughly frontal face"

# 68-point layout from the 98 WFLW points: each 68-point landmark is the mean of these 98-point
# indices (single index = copied). Jaw = every second contour point; brows average upper and lower
# brow contours; eyes drop the WFLW mid-lid points; nose and mouth are copied in order.
WFLW98_TO_68: Tuple[Tuple[int, ...], ...] = (
    *((i,) for i in range(0, 33, 2)),  # 0-16 jaw
    (33,),
    (34, 41),
    (35, 40),
    (36, 39),
    (37, 38),  # 17-21 left brow
    (42, 50),
    (43, 49),
    (44, 48),
    (45, 47),
    (46,),  # 22-26 right brow
    *((i,) for i in range(51, 60)),  # 27-35 nose bridge and nostrils
    (60,),
    (61,),
    (63,),
    (64,),
    (65,),
    (67,),  # 36-41 left eye
    (68,),
    (69,),
    (71,),
    (72,),
    (73,),
    (75,),  # 42-47 right eye
    *((i,) for i in range(76, 96)),  # 48-67 mouth
)


class FaceFinder(Protocol):
    def landmarks(self, image_rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (68, 2) float32 (x, y); raises NoFaceDetected."""


def wflw98_to_68(points98: np.ndarray) -> np.ndarray:
    """(98, 2) WFLW points -> (68, 2) float32 in the iBUG 68-point layout."""
    pts = np.asarray(points98, dtype=np.float64)
    return np.stack([pts[list(group)].sum(axis=0) / len(group) for group in WFLW98_TO_68]).astype(np.float32)


def decode_heatmaps(heatmaps: np.ndarray) -> np.ndarray:
    """(N, 64, 64) heatmaps -> (N, 2) points in heatmap pixels (x, y), centre-of-pixel convention.

    Each point is the argmax, moved 0.25 px toward the larger of its two neighbours in x and in y,
    plus 0.5. At the border the missing neighbour counts as smaller than any value.
    """
    n, height, width = heatmaps.shape
    flat = heatmaps.reshape(n, -1).argmax(axis=1)
    ys, xs = np.divmod(flat, width)
    padded = np.pad(heatmaps.astype(np.float64), ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    rows, py, px = np.arange(n), ys + 1, xs + 1
    dx = 0.25 * np.sign(padded[rows, py, px + 1] - padded[rows, py, px - 1])
    dy = 0.25 * np.sign(padded[rows, py + 1, px] - padded[rows, py - 1, px])
    return np.stack([xs + dx + 0.5, ys + dy + 0.5], axis=1)


def clamp_box(box: Sequence[float], width: int, height: int) -> Optional[Tuple[int, int, int, int]]:
    """Integer (x1, y1, x2, y2) inside the image, or None when the box cannot be a face.

    A face box is finite, at least 8 px a side, no more than 3:1 in either direction, and at least
    half inside the image (detectors with garbage weights return boxes kilometres long).
    """
    values = np.asarray(box[:4], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        return None
    raw_w, raw_h = values[2] - values[0], values[3] - values[1]
    if raw_w <= 0 or raw_h <= 0 or not (1 / MAX_BOX_ASPECT <= raw_w / raw_h <= MAX_BOX_ASPECT):
        return None
    x1, y1 = max(int(values[0]), 0), max(int(values[1]), 0)
    x2, y2 = min(int(values[2]), width), min(int(values[3]), height)
    if x2 - x1 < MIN_FACE_SIDE or y2 - y1 < MIN_FACE_SIDE:
        return None
    if (x2 - x1) * (y2 - y1) < MIN_BOX_INSIDE * raw_w * raw_h:
        return None
    return x1, y1, x2, y2


def check_landmarks(lm: np.ndarray, width: int, height: int) -> np.ndarray:
    """Return ``lm`` as (68, 2) float32 if it can be a face in a W x H image, else NoFaceDetected.

    Requires finite values, points within the image widened by half its size on each side, and
    distinct eyes and mouth (the crop needs a non-zero eye-to-eye and eye-to-mouth distance).
    """
    lm = np.asarray(lm, dtype=np.float32)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise NoFaceDetected(NO_FACE_MESSAGE)
    inside_x = (lm[:, 0] >= -0.5 * width) & (lm[:, 0] <= 1.5 * width)
    inside_y = (lm[:, 1] >= -0.5 * height) & (lm[:, 1] <= 1.5 * height)
    eyes_l, eyes_r = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    mouth = (lm[48] + lm[54]) / 2
    if not (inside_x.all() and inside_y.all()):
        raise NoFaceDetected(NO_FACE_MESSAGE)
    if np.hypot(*(eyes_r - eyes_l)) < 1.0 or np.hypot(*(mouth - (eyes_l + eyes_r) / 2)) < 1.0:
        raise NoFaceDetected(NO_FACE_MESSAGE)
    return lm


class RetinaFaceFinder:
    """RetinaFace box + AWing FAN 98 points -> 68 points (the reference's face finder)."""

    def __init__(self, detector, fan, device) -> None:
        self.detector = detector
        self.fan = fan
        self.device = device

    def face_box(self, image_rgb: np.ndarray) -> Tuple[int, int, int, int]:
        """The highest-scoring plausible face box (after NMS) above 0.97, clamped to the image.

        The reference takes the first box as is; with real weights that is the same box.
        """
        import torch

        # The reference hands RGB to detect_faces (which documents BGR); kept for identical boxes.
        with torch.no_grad():
            dets = self.detector.detect_faces(image_rgb, DETECTION_THRESHOLD)
        height, width = image_rgb.shape[:2]
        for det in dets:
            box = clamp_box(det, width, height)
            if box is not None:
                return box
        raise NoFaceDetected(NO_FACE_MESSAGE)

    def fan_points(self, face_rgb: np.ndarray) -> np.ndarray:
        """(h, w, 3) face crop -> (98, 2) points in crop pixels."""
        import cv2
        import torch

        height, width = face_rgb.shape[:2]
        bgr = cv2.resize(face_rgb, (FAN_INPUT, FAN_INPUT))[..., ::-1]
        x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1))).float().div(255.0).unsqueeze(0)
        with torch.no_grad():
            outputs, _ = self.fan(x.to(self.device))
        heatmaps = outputs[-1][0, :-1].float().cpu().numpy()  # the last channel is the boundary map
        if not np.all(np.isfinite(heatmaps)):
            raise NoFaceDetected(NO_FACE_MESSAGE)
        return decode_heatmaps(heatmaps) * (width / HEATMAP, height / HEATMAP)

    def landmarks(self, image_rgb: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = self.face_box(image_rgb)
        lm = wflw98_to_68(self.fan_points(image_rgb[y1:y2, x1:x2]))
        lm[:, 0] += x1
        lm[:, 1] += y1
        return check_landmarks(lm, image_rgb.shape[1], image_rgb.shape[0])


class DlibFinder:
    """dlib HOG detector (largest box) + 68-point shape predictor, from registry packages."""

    def __init__(self, detector, predictor) -> None:
        self.detector = detector  # dlib.get_frontal_face_detector()
        self.predictor = predictor  # dlib shape predictor of the 68-point model

    def landmarks(self, image_rgb: np.ndarray) -> np.ndarray:
        image = np.ascontiguousarray(image_rgb, dtype=np.uint8)
        boxes = list(self.detector(image, DLIB_UPSAMPLE))
        if not boxes:
            raise NoFaceDetected(NO_FACE_MESSAGE)
        box = max(boxes, key=lambda r: r.width() * r.height())
        shape = self.predictor(image, box)
        lm = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        return check_landmarks(lm, image.shape[1], image.shape[0])
