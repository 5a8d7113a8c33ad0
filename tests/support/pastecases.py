"""Full-mode paste cases for comparing our Poisson paste with ``cv2.seamlessClone``: golden frames and generated ones.

Used by ``tests/output/test_seamless.py`` and ``bench/paste_speed.py --equality``. A case is a photo, rendered faces
(256 px, as the renderer gives them) and the box they are pasted into; :func:`opencv_paste` is the reference's
``paste_pic`` step for one frame (``cv2.resize`` to the box, then ``cv2.seamlessClone`` with an all-255 mask,
``NORMAL_CLONE``, centred on the box). Arrays are RGB; OpenCV's clone treats the channels alike, so the order
does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np

from sadtalker.face import crop
from tests.support import REPO_ROOT

GOLDEN = REPO_ROOT / "tests" / "golden"
FACE_SIDE = 256
Box = Tuple[int, int, int, int]


@dataclass(frozen=True)
class PasteCase:
    name: str
    photo: np.ndarray  # uint8 (H, W, 3)
    faces: np.ndarray  # uint8 (B, h, w, 3)
    box: Box  # (x1, y1, x2, y2)


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def opencv_paste(face: np.ndarray, photo: np.ndarray, box: Box) -> np.ndarray:
    """The reference's paste of one rendered frame: resize to the box, seamlessClone centred on it."""
    x1, y1, x2, y2 = box
    resized = cv2.resize(face, (x2 - x1, y2 - y1))
    mask = 255 * np.ones(resized.shape, resized.dtype)
    return cv2.seamlessClone(resized, photo, mask, ((x1 + x2) // 2, (y1 + y2) // 2), cv2.NORMAL_CLONE)


def smooth_image(rng: np.random.Generator, height: int, width: int, grey: bool = False) -> np.ndarray:
    """uint8 (height, width, 3): a bicubic-upsampled random colour field plus pixel noise (R = G = B if grey)."""
    coarse = rng.uniform(0, 255, (max(2, height // 16), max(2, width // 16), 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image += np.asarray(rng.normal(0.0, 12.0, image.shape), np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return np.repeat(image[..., :1], 3, axis=2) if grey else image


def golden_cases() -> List[PasteCase]:
    """Golden A's 8 rendered frames into the astronaut photo at the ``full`` box, golden C's 2 at ``extfull``'s.

    The boxes come from our crop of the scenarios' stored landmarks (checked against the reference's crop in
    tests/fidelity): A (134, 16, 316, 198), 182 px; C (116, 0, 333, 215), touching the photo's top edge.
    """
    photo = read_rgb(GOLDEN / "scenario_a" / "input_image.png")
    cases = []
    for scenario, mode, count in (("scenario_a", "full", 8), ("scenario_c", "extfull", 2)):
        landmarks = np.load(GOLDEN / scenario / "crop.npz")["lm68_full"]
        _, info = crop.crop_face(photo, landmarks, mode)
        faces = np.stack([read_rgb(GOLDEN / scenario / f"gen_frame_{i:02d}.png") for i in range(count)])
        cases.append(PasteCase(f"golden {scenario[-1].upper()} ({mode}), {count} frames", photo, faces, info.box))
    return cases


# name, photo (width, height), box, grey
GENERATED = (
    ("odd sizes: 181x97 box in a 301x203 photo", (301, 203), (50, 40, 231, 137), False),
    ("odd sizes, grey photo and faces", (301, 203), (50, 40, 231, 137), True),
    ("box touching the top-left corner", (300, 200), (0, 0, 120, 90), False),
    ("box touching the bottom-right corner", (300, 200), (180, 110, 300, 200), False),
    ("box 1 px past the left and top edges (OpenCV's limit)", (300, 200), (-1, -1, 121, 91), False),
    ("1-px margins: 140x120 box in a 142x122 photo", (142, 122), (1, 1, 141, 121), False),
    ("1-px margins, grey", (142, 122), (1, 1, 141, 121), True),
    ("tiny 9x9 box", (60, 60), (20, 20, 29, 29), False),
    ("tiny 12x10 box, grey", (60, 60), (20, 20, 32, 30), True),
    ("face at the box's size (no resize): 256 box", (400, 300), (70, 20, 326, 276), False),
    ("large: 512 box in a 1920x1080 photo", (1920, 1080), (700, 300, 1212, 812), False),
    ("large, grey: 512 box in a 1920x1080 photo", (1920, 1080), (700, 300, 1212, 812), True),
)
LARGEST = ("largest: 1024 box in a 2048x2160 photo", (2048, 2160), (500, 600, 1524, 1624), False)


def generated_case(spec: tuple, frames: int = 2, seed: int = 21) -> PasteCase:
    name, (width, height), box, grey = spec
    rng = np.random.default_rng(seed)
    photo = smooth_image(rng, height, width, grey)
    faces = np.stack([smooth_image(rng, FACE_SIDE, FACE_SIDE, grey) for _ in range(frames)])
    return PasteCase(name, photo, faces, box)


def share_identical(ours: np.ndarray, reference: np.ndarray, box: Box) -> Tuple[int, float, float]:
    """(max abs difference, share of identical values in the whole frame, the same inside the box)."""
    x1, y1, x2, y2 = box
    diff = np.abs(ours.astype(np.int16) - reference.astype(np.int16))
    inside = diff[..., max(y1, 0) : y2, max(x1, 0) : x2, :]
    return int(diff.max()), float((diff == 0).mean()), float((inside == 0).mean())
