"""Camera angles: keyframe lists (``input_yaw`` / ``input_pitch`` / ``input_roll``) -> per-frame degrees.

The reference's ``gen_camera_pose`` (``src/generate_facerender_batch.py``) spreads the keyframes over the T frames at
one constant speed: ``step = sum |k[i+1] - k[i]| / (T - 1)`` degrees per frame, signed per segment; each segment is
``np.arange(k[i], k[i+1], step)`` (its end excluded), the segments are concatenated, then cut to T frames or padded
with the last value. So the last keyframe is never quite reached (yaw [0, 15] over 75 frames ends at 14.797), and
an interior keyframe is hit exactly at its segment's start. :func:`camera_degrees` reproduces that arithmetic
(float64, the same operations in the same order), with two differences where the reference crashes:

- two equal consecutive keyframes (``[0, 0, 10]``, ``[7, 7]``): the reference divides by zero
  (``abs(0) / 0``). Here such a segment HOLDS the angle: it gets ``(T - 1) // segments`` frames at that value, and
  the moving segments share the remaining frames at the reference's constant speed. A list without equal
  neighbours is unchanged; a list of only equal values holds it for every frame;
- T = 1 with several keyframes (the reference divides by T - 1 = 0): the first keyframe.

The degrees replace MappingNet's predicted angle for every frame (the reference's ``yaw_in`` etc.); an angle
without a list stays predicted. A single-value list is that value on every frame.
"""

from __future__ import annotations

import itertools
from typing import List, Optional, Sequence

import numpy as np


def camera_degrees(keyframes: Sequence[float], frames: int) -> np.ndarray:
    """Keyframes (1..16 values, degrees) -> (frames,) float64 degrees per video frame."""
    keys = list(keyframes)
    if not keys:
        raise ValueError("a camera keyframe list needs at least one value")
    if frames < 1:
        return np.zeros((0,), dtype=np.float64)
    segments = list(itertools.pairwise(keys))
    moving = [(a, b) for a, b in segments if b != a]
    if not moving or frames == 1:
        return np.full((frames,), keys[0], dtype=np.float64)
    holds = len(segments) - len(moving)
    hold_frames = (frames - 1) // len(segments) if holds else 0
    moving_frames = max(frames - holds * hold_frames, 2)
    degree_sum = 0.0
    for a, b in segments:
        degree_sum += abs(b - a)
    degree_per_frame = degree_sum / (moving_frames - 1)
    values: List[float] = []
    for a, b in segments:
        if b == a:
            values.extend([a] * hold_frames)
            continue
        step = degree_per_frame * abs(b - a) / (b - a)
        values.extend(np.arange(a, b, step).tolist())
    if len(values) >= frames:
        values = values[:frames]
    else:
        values.extend([values[-1]] * (frames - len(values)))
    return np.asarray(values, dtype=np.float64)


def camera_sequence(
    yaw: Optional[Sequence[float]], pitch: Optional[Sequence[float]], roll: Optional[Sequence[float]], frames: int
) -> Optional[np.ndarray]:
    """(frames, 3) float32 (yaw, pitch, roll) degrees with NaN for an angle left to MappingNet; None when no list."""
    if yaw is None and pitch is None and roll is None:
        return None
    out = np.full((frames, 3), np.nan, dtype=np.float32)
    for column, keys in enumerate((yaw, pitch, roll)):
        if keys is not None:
            out[:, column] = camera_degrees(keys, frames).astype(np.float32)
    return out
