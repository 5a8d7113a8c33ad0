"""Time the work on the audio that a job does before its first frame, by audio length: the whole-audio way and now.

What a job does with the audio before the first streamed segment, each step timed alone (the fastest of
``--repeat`` runs, so that other processes on a shared machine bend it least), for speech of 10, 60 and 300 s
(``assets/speech.wav`` looped, as in ``bench.benchmark``):

- the mel windows: the whole audio's spectrogram and windows (``melspectrogram`` + ``mel_windows``, what the job
  computed first before), against the windows of the first chunk's head (frames 0..64, ``MelWindows``, now);
- the chunk plan: every cut scoring its search range on its own running sum of the whole audio's squares (before),
  against one running sum for all the cuts (``plan_chunks``, now);
- the first segment's WAV: the whole audio (before) against its own second of it (``audio_span``, now);
- the main encoder's WAV, the whole audio in both.

    .venv/bin/python -m bench.first_segment_audio
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Sequence

import numpy as np

from bench.benchmark import speech
from sadtalker.core.constants import MODEL_FPS, num_frames
from sadtalker.motion.chunking import SEARCH_SECONDS, plan_chunks, quietest_boundary
from sadtalker.motion.mel import MelWindows, fit_to_frames, mel_windows, melspectrogram
from sadtalker.output.video import audio_span, write_wav

HEAD_FRAMES = 65  # the first chunk's head for a 1 s first segment: 2 PoseVAE windows + frame 0
CHUNK_SECONDS = 45.0


def fastest(work: Callable[[], object], repeat: int) -> float:
    """The fewest seconds ``work`` took over ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def cuts_each_on_its_own_sum(wav: np.ndarray) -> List[int]:
    """The chunk plan's cuts as they were found before: each cut summed the whole audio's squares again."""
    total, limit_frames = num_frames(len(wav)), int(CHUNK_SECONDS * MODEL_FPS)
    search, start, cuts = int(SEARCH_SECONDS * MODEL_FPS), 0, []
    while total - start > limit_frames:
        limit = start + limit_frames
        start = quietest_boundary(wav, max(start + 1, limit - search), limit)
        cuts.append(start)
    return cuts


def rows_for(seconds: float, repeat: int, folder: Path) -> List[tuple]:
    """(step, before s, now s) for ``seconds`` of speech."""
    wav = speech(seconds)
    frames = num_frames(len(wav))
    fitted = fit_to_frames(wav, frames)
    assert cuts_each_on_its_own_sum(wav) == [c.end_frame for c in plan_chunks(wav, CHUNK_SECONDS)[:-1]]
    head = MelWindows(fitted, frames)[:HEAD_FRAMES]
    np.testing.assert_array_equal(np.asarray(head), mel_windows(melspectrogram(fitted), frames)[:HEAD_FRAMES])
    wav_path = folder / "audio.wav"
    first = audio_span(wav, 0, MODEL_FPS)[0]
    return [
        (
            "mel windows",
            fastest(lambda: mel_windows(melspectrogram(fitted), frames), repeat),
            fastest(lambda: np.asarray(head), repeat),
        ),
        (
            "chunk plan",
            fastest(lambda: cuts_each_on_its_own_sum(wav), repeat),
            fastest(lambda: plan_chunks(wav, CHUNK_SECONDS), repeat),
        ),
        (
            "first segment's WAV",
            fastest(lambda: write_wav(wav_path, wav), repeat),
            fastest(lambda: write_wav(wav_path, first), repeat),
        ),
        ("main encoder's WAV", *[fastest(lambda: write_wav(wav_path, wav), repeat)] * 2),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_segment_audio", description=__doc__)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0, 300.0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per step; the fastest is reported (default 5)")
    args = parser.parse_args(argv)
    print("audio | step | before s | now s")
    with tempfile.TemporaryDirectory() as folder:
        for seconds in args.seconds:
            rows = rows_for(seconds, args.repeat, Path(folder))
            for step, before, now in rows:
                print(f"{seconds:g} | {step} | {before:.4f} | {now:.4f}")
            total_before, total_now = sum(r[1] for r in rows), sum(r[2] for r in rows)
            print(f"{seconds:g} | all | {total_before:.4f} | {total_now:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
