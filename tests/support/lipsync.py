"""Lip sync across frame rates: a recording with sharp loudness onsets, and where the mouth starts to move.

The expression each output frame is drawn with is the centre of its window (the coefficients at the frame's own
instant); :func:`onsets` finds, near each tone burst's start, the instant a chosen expression coefficient passes
halfway between its silent and its loud level, between the two frames around the crossing.
Used by tests/test_pipeline_fps.py and bench/lip_sync.py.
"""

from __future__ import annotations

import numpy as np

from sadtalker import pipeline
from sadtalker.bundle import ModelBundle
from sadtalker.core.constants import EXPRESSION_COLUMNS, SAMPLE_RATE
from sadtalker.core.contract import NO_HOOKS, AnimationRequest, RenderOptions
from sadtalker.core.jobtools import StageTimer
from sadtalker.core.timeline import Timeline
from sadtalker.face.stage import preprocess_image
from sadtalker.motion.chunking import plan_chunks
from sadtalker.render.stage import SEMANTIC_RADIUS
from tests.support.smallbundle import astronaut

SEED = 5
BURSTS_S = (0.62, 1.9, 3.13, 4.41)  # tone bursts in silence, 0.4 s each
BURST_LENGTH_S = 0.4
ONSET_RATES = (24, 25, 30)
ONSET_SEARCH_S = 0.25  # the onset is looked for this close to each burst's start (the mel window spans 0.2 s)


def tone_bursts(seconds: float = 5.2) -> np.ndarray:
    """Silence with a loud 220 Hz + harmonics burst at each of :data:`BURSTS_S`, sharp onsets (5 ms ramps)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220, 440, 660, 1320), start=1))
    envelope = np.zeros_like(t)
    for start in BURSTS_S:
        envelope += np.clip((t - start) / 0.005, 0, 1) * np.clip((start + BURST_LENGTH_S - t) / 0.005, 0, 1)
    return (0.3 * tone * envelope + 1e-4 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)


def mouth_track(bundle: ModelBundle, wav: np.ndarray, fps: int) -> np.ndarray:
    """(frames, 64) the expression each output frame is drawn with: the centre of its window."""
    models = bundle.for_size(256)
    image = astronaut()
    pre = preprocess_image(image, bundle.face_finder, models.recon_net, "crop", 256)
    timeline = Timeline.of_audio(len(wav), fps)
    request = AnimationRequest(image, wav, RenderOptions(enhancer="none", use_blink=False, fps=fps), seed=SEED)
    chunks = plan_chunks(wav, 45.0)
    _, targets = pipeline.coefficients(
        models, request, pre, None, chunks, SEED, StageTimer(), NO_HOOKS, timeline, timeline.frames
    )
    return targets[0 : timeline.frames][:, EXPRESSION_COLUMNS, SEMANTIC_RADIUS]


def onsets(track: np.ndarray, column: int, fps: int) -> np.ndarray:
    """Seconds at which ``column`` crosses halfway from its silent level toward its level during the bursts, near
    each burst's start: the first crossing, placed between the frame before it and the frame after it by linear
    interpolation (the frames are the curve's samples at the output rate; NaN where it does not cross)."""
    values = track[:, column].astype(np.float64)
    silent = np.median(values[: int(BURSTS_S[0] * fps) - 2])
    loud = np.median(np.concatenate([values[int(s * fps) + 3 : int((s + BURST_LENGTH_S) * fps) - 2] for s in BURSTS_S]))
    level = (values - silent) * np.sign(loud - silent) - abs(loud - silent) / 2  # > 0: past halfway
    found = []
    for start in BURSTS_S:
        near = np.arange(int((start - ONSET_SEARCH_S) * fps), int((start + ONSET_SEARCH_S) * fps))
        crossing = near[(level[near] > 0) & (level[near - 1] <= 0)]
        if not len(crossing):
            found.append(np.nan)
            continue
        after = crossing[0]
        share = -level[after - 1] / (level[after] - level[after - 1])  # of the way from frame after-1 to after
        found.append((after - 1 + share) / fps)
    return np.array(found)


def mouth_column(native: np.ndarray) -> int:
    """The expression coefficient that moves most from silence (0.4 s) into the first burst (0.75 s) at 25 fps."""
    return int(np.argmax(np.abs(native[int(0.75 * 25)] - native[int(0.4 * 25)])))
