"""Keep chunk seams invisible: carry the head pose across a cut, and measure the jump.

Why the pose jumps: every chunk's pose curve comes from its own PoseVAE run, which starts at the
source image's pose (motion 0 at the chunk's first frame), while the previous chunk ended wherever its
motion had wandered. Without care the head snaps back to the source pose at every seam.

The choice: **pose carry-over**, not a cross-fade. Chunk k+1's pose (``POSE_COLUMNS``, 64:70: 3 angles,
3 translations) is offset so that its first frame continues chunk k's last frame at chunk k's last
velocity (``prev[-1] + (prev[-1] - prev[-2])``); the offset then decays to zero with a half-cosine, so
the chunk returns to its own curve. The decay is long enough that the added motion per frame stays at
most ``RATE_FRACTION`` of the curves' own typical (95th percentile) frame-to-frame step, and at least
``MIN_DECAY_FRAMES``; a half-cosine over D frames adds at most ``|offset| * pi / (2 D)`` per frame.
A cross-fade would need the two chunks to overlap (frames rendered twice, audio shared by both) and
still leaves a blend of two different head paths; carry-over needs no overlap and no extra rendering.

Only the pose is touched. The expression (0:64) follows the audio frame by frame (ExpNet has no state
across frames), so it is continuous across a seam when the mel windows come from the whole audio, and
the chunk planner puts the cut in a pause (mouth at rest). All functions are pure: arrays in, new arrays out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sadtalker.core.constants import MOTION_COEFFS, POSE_COLUMNS, SOURCE_COEFFS

POSE = POSE_COLUMNS  # angles (pitch, yaw, roll in radians) then translation, in a (T, 70) coefficient row
MIN_DECAY_FRAMES = 12  # 0.48 s: the shortest return to the chunk's own pose curve
RATE_FRACTION = 0.5  # the decay adds at most this fraction of the typical frame-to-frame step
STEP_PERCENTILE = 95.0  # "typical step": this percentile of |pose[t+1] - pose[t]|, per coordinate
_EPS = 1e-12


def _pose(coeffs: np.ndarray) -> np.ndarray:
    """(T, 6) pose from (T, 70|73) coefficients, or a (T, 6) pose as given."""
    coeffs = np.asarray(coeffs)
    if coeffs.ndim != 2 or coeffs.shape[1] not in (6, MOTION_COEFFS, SOURCE_COEFFS):
        raise ValueError(f"expected (T, 70), (T, 73) or (T, 6) pose/coefficients, got shape {coeffs.shape}")
    return coeffs if coeffs.shape[1] == 6 else coeffs[:, POSE]


def _typical_step(*poses: np.ndarray) -> np.ndarray:
    """(6,) typical frame-to-frame step per pose coordinate over the given curves."""
    steps = [np.abs(np.diff(p, axis=0)) for p in poses if len(p) > 1]
    if not steps:
        return np.zeros(6)
    return np.percentile(np.concatenate(steps), STEP_PERCENTILE, axis=0)


def decay_frames(offset: np.ndarray, typical_step: np.ndarray, n_frames: int) -> int:
    """Frames D for a half-cosine decay of ``offset`` whose per-frame change stays <= RATE_FRACTION * step.

    Clamped to ``[MIN_DECAY_FRAMES, n_frames]``; a coordinate that does not move (step 0) and needs no
    offset does not lengthen it.
    """
    need = np.abs(offset) * math.pi / 2 / np.maximum(RATE_FRACTION * typical_step, _EPS)
    need = np.where(np.abs(offset) < _EPS, 0.0, need)
    frames = int(math.ceil(float(need.max()))) if need.size else 0
    return max(1, min(max(frames, MIN_DECAY_FRAMES), n_frames))


def carry_pose(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Chunk ``nxt`` (T, 70|73) with its pose continuing from ``prev`` (P >= 1 rows, the previous chunk).

    ``prev`` must be the previous chunk as it was rendered (after its own carry-over). Returns a new
    array; the expression columns and any crop columns (70:73) are unchanged.
    """
    prev_pose, next_pose = _pose(prev), _pose(nxt)
    if len(prev_pose) == 0 or len(next_pose) == 0:
        raise ValueError("carry_pose needs at least one frame in each chunk")
    velocity = prev_pose[-1] - prev_pose[-2] if len(prev_pose) > 1 else np.zeros(6)
    offset = prev_pose[-1] + velocity - next_pose[0]
    n = len(next_pose)
    d = decay_frames(offset, _typical_step(prev_pose, next_pose), n)
    t = np.arange(n)
    weight = np.where(t < d, 0.5 * (1.0 + np.cos(np.pi * t / d)), 0.0)  # 1 at t=0, 0 from t=d on
    out = np.array(nxt, copy=True)
    carried = next_pose + weight[:, None] * offset[None, :]
    if out.shape[1] == 6:
        out[:] = carried
    else:
        out[:, POSE] = carried
    return out


@dataclass(frozen=True)
class SeamJumps:
    """Largest |pose[t] - pose[t-1]| per pose coordinate (6,), across seams and inside chunks."""

    seam: np.ndarray
    inside: np.ndarray

    @property
    def worst_ratio(self) -> float:
        """max over coordinates of seam / inside jump; 1.0 means a seam moves like the largest inside step."""
        still = self.inside <= _EPS  # a coordinate that never moves inside: any seam jump is infinite
        ratio = np.where(still, np.where(self.seam > _EPS, np.inf, 0.0), self.seam / np.maximum(self.inside, _EPS))
        return float(ratio.max())


def seam_jumps(coeffs: np.ndarray, seams: Sequence[int]) -> SeamJumps:
    """Measure the pose jumps of a whole video's coefficients (T, 70|73|6) at the given seams.

    ``seams`` are the first frames of chunks 1.. (``chunk.start_frame``): the jump at seam s is the step
    from frame s-1 to frame s; every other step counts as inside a chunk.
    """
    curve = _pose(coeffs)
    steps = np.abs(np.diff(curve, axis=0))  # steps[i] = |frame i+1 - frame i|
    at_seam = np.zeros(len(steps), dtype=bool)
    for s in seams:
        if not 0 < s < len(curve):
            raise ValueError(f"seam {s} outside 1..{len(curve) - 1}")
        at_seam[s - 1] = True
    zero = np.zeros(curve.shape[1])
    seam = steps[at_seam].max(axis=0) if at_seam.any() else zero
    inside = steps[~at_seam].max(axis=0) if (~at_seam).any() else zero
    return SeamJumps(seam=seam, inside=inside)
