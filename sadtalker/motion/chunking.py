"""Split long audio into chunks cut at quiet points, on the video frame grid.

Long audio is rendered in chunks (each from the same source image, which stops drift). A chunk holds
at most ``chunk_seconds`` of audio; its end is moved back to the quietest point within the last
``search_seconds`` before that limit, so a seam falls in a pause (mouth closed, head at rest) rather
than mid-word.

Every cut sits on a coefficient frame boundary (640 samples at 16 kHz and the models' 25 fps), so the chunks'
frame counts add up to exactly the whole audio's ``T = floor(n_samples / 640)`` rows: one continuous coefficient
sequence as long as the audio. The samples after the last whole row (less than 40 ms) get none. The video's own
frames, at the request's fps, are read from that sequence (:mod:`sadtalker.core.timeline`).

How "quietest" is scored: every candidate boundary gets the RMS of the 20 ms window centred on it; the
lowest wins. Exact ties (digital silence) go to the middle of the longest run of tied boundaries, so
the cut falls in the middle of a silent pause, not at its edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from sadtalker.core.constants import MODEL_FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, num_frames

QUIET_WINDOW = SAMPLE_RATE // 50  # 320 samples = the 20 ms window whose RMS scores a cut
SEARCH_SECONDS = 5.0  # a cut is searched within this many seconds before the chunk limit
ENERGY_BLOCK = 1 << 16  # samples squared and summed at a time (prefix_energy)


@dataclass(frozen=True)
class Chunk:
    """Frames ``[start_frame, end_frame)`` of the whole video; audio samples ``[start_sample, end_sample)``."""

    index: int
    start_frame: int
    end_frame: int

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def start_sample(self) -> int:
        return self.start_frame * SAMPLES_PER_FRAME

    @property
    def end_sample(self) -> int:
        return self.end_frame * SAMPLES_PER_FRAME


def prefix_energy(wav: np.ndarray) -> np.ndarray:
    """(n + 1,) float64 running sum of the squared samples, from 0: a window's energy is a difference of two.

    Summed ``ENERGY_BLOCK`` samples at a time into one array, each block's first square taking the sum before it: the
    same additions in the same order as one ``cumsum`` over the whole audio (the same floats), without its
    whole-length float64 temporaries."""
    out = np.empty(len(wav) + 1, dtype=np.float64)
    out[0] = 0.0
    for start in range(0, len(wav), ENERGY_BLOCK):
        squares = wav[start : start + ENERGY_BLOCK].astype(np.float64)
        squares *= squares
        squares[0] += out[start]
        np.cumsum(squares, out=out[start + 1 : start + 1 + len(squares)])
    return out


def _window_rms(wav: np.ndarray, centres: np.ndarray, width: int, energy: Optional[np.ndarray] = None) -> np.ndarray:
    """RMS of the ``width``-sample windows centred on each sample index in ``centres`` (clipped to the signal);
    ``energy``: :func:`prefix_energy` of ``wav`` when already computed."""
    energy = prefix_energy(wav) if energy is None else energy
    lo = np.clip(centres - width // 2, 0, len(wav))
    hi = np.clip(centres + width - width // 2, 0, len(wav))
    count = np.maximum(hi - lo, 1)
    return np.sqrt((energy[hi] - energy[lo]) / count)


def quietest_boundary(
    wav16k: np.ndarray, first_frame: int, last_frame: int, energy: Optional[np.ndarray] = None
) -> int:
    """The frame boundary in ``[first_frame, last_frame]`` at the quietest 20 ms of ``wav16k``.

    Boundary ``f`` sits at sample ``f * 640``. Exact ties go to the middle of the longest tied run. ``energy``:
    :func:`prefix_energy` of ``wav16k``, computed once for all the cuts of a long audio.
    """
    if last_frame < first_frame:
        raise ValueError(f"empty search range [{first_frame}, {last_frame}]")
    frames = np.arange(first_frame, last_frame + 1)
    quiet = _window_rms(wav16k, frames * SAMPLES_PER_FRAME, QUIET_WINDOW, energy)
    tied = np.flatnonzero(quiet == quiet.min())
    runs = np.split(tied, np.flatnonzero(np.diff(tied) > 1) + 1)
    longest = max(runs, key=len)  # the first of equally long runs
    return int(frames[longest[len(longest) // 2]])


def plan_chunks(wav16k: np.ndarray, chunk_seconds: float = 45.0, search_seconds: float = SEARCH_SECONDS) -> List[Chunk]:
    """Contiguous chunks covering all ``num_frames(len(wav16k))`` frames, each at most ``chunk_seconds`` long.

    Audio no longer than ``chunk_seconds`` gives one chunk. Otherwise each chunk ends at the quietest
    frame boundary within the last ``search_seconds`` before its limit (see the module docstring).
    """
    if chunk_seconds <= 0 or search_seconds < 0:
        raise ValueError(f"chunk_seconds must be > 0 and search_seconds >= 0, got {chunk_seconds}, {search_seconds}")
    wav = np.asarray(wav16k)
    if wav.ndim != 1:
        raise ValueError(f"expected mono audio (n,), got shape {wav.shape}")
    total = num_frames(len(wav))
    max_frames = max(1, int(chunk_seconds * MODEL_FPS))
    search_frames = int(search_seconds * MODEL_FPS)
    chunks: List[Chunk] = []
    start = 0
    energy = prefix_energy(wav) if total > max_frames else None  # once, not once per cut
    while total - start > max_frames:
        limit = start + max_frames
        cut = quietest_boundary(wav, max(start + 1, limit - search_frames), limit, energy)
        chunks.append(Chunk(len(chunks), start, cut))
        start = cut
    if total > start or not chunks:
        chunks.append(Chunk(len(chunks), start, total))
    return chunks
