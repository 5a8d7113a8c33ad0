"""The video's frames in time: which instant each output frame shows, and where that falls among the coefficients.

The motion networks work at their native 25 fps (:data:`~sadtalker.core.constants.MODEL_FPS`): one coefficient row
per 40 ms of audio, the reference's T rows. A video at another rate (the request's ``fps``, 20 to 60) shows frame j
at the instant ``j / fps`` seconds, which is the fractional coefficient position ``j * 25 / fps``; the renderer
draws it from coefficients interpolated there (:func:`sadtalker.render.stage.resampled_windows`). Positions are
kept as an integer row plus a fraction computed from integers, so an instant the two rates share (every frame at
25 fps, every second frame at 50, every sixth at 30) lands exactly on a row with fraction 0 and gets that row's
coefficients bit for bit.

Frame count: ``floor(samples * fps / 16000)``, the largest number of whole frames the audio covers. At 25 fps that
is the reference's ``floor(samples / 640)``, so 25 fps jobs keep their frame count; the video ends less than one
frame before the audio at every rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from sadtalker.core.constants import MODEL_FPS, num_frames, output_frames


@dataclass(frozen=True)
class Timeline:
    """A job's ``frames`` output frames at ``fps`` over ``model_frames`` coefficient rows at 25 fps."""

    fps: int
    model_frames: int
    frames: int

    @classmethod
    def of_audio(cls, n_samples: int, fps: int = MODEL_FPS) -> "Timeline":
        """The timeline of ``n_samples`` of 16 kHz audio shown at ``fps``."""
        return cls(fps, num_frames(n_samples), output_frames(n_samples, fps))

    @property
    def native(self) -> bool:
        """True at 25 fps: output frame j is coefficient row j."""
        return self.fps == MODEL_FPS

    def positions(self, start: int, stop: int) -> Tuple[np.ndarray, np.ndarray]:
        """Output frames ``start..stop-1`` on the coefficient rows: (row int64, fraction float64 in [0, 1)).

        Frame j's instant is row ``j * 25 // fps`` plus ``(j * 25 % fps) / fps`` of the way to the next row; the row
        may pass the last one (the video's last frames can start after the last row's instant), callers clamp.
        """
        scaled = np.arange(start, stop, dtype=np.int64) * MODEL_FPS
        return scaled // self.fps, (scaled % self.fps) / float(self.fps)

    def rows_for(self, stop: int, radius: int = 0) -> int:
        """Coefficient rows that output frames ``0..stop-1`` read with ``radius`` rows on each side (the rows
        interpolated between included), clamped to the rows there are."""
        if stop <= 0:
            return 0
        row, fraction = self.positions(stop - 1, stop)
        last = int(row[0]) + radius + (1 if fraction[0] > 0 else 0)
        return min(last + 1, self.model_frames)

    def first_frame_at(self, row: int) -> int:
        """The first output frame whose instant is at or after coefficient row ``row``'s: ceil(row * fps / 25)."""
        return -(-row * self.fps // MODEL_FPS)

    def seconds(self, frames: int) -> float:
        """``frames`` output frames in seconds."""
        return frames / self.fps
