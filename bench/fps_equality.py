"""Frames at instants shared with 25 fps against the 25 fps frames: the largest difference, per rate and batch size.

The same request and seed at 25 fps and at each other rate, on the small renderer with the real-format coefficient
networks (tests/support/smallbundle.py); the frames are taken from the renderer before encoding. At 50 fps every
second frame shares its instant with a 25 fps frame, at 30 every sixth, at 60 every twelfth. With a render batch of 1
each frame is computed alone; with a larger batch a frame's place in its batch changes (batched convolutions may
round differently, tests/render/test_stage.py), so the difference shows what batching adds.

    python -m bench.fps_equality
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from math import gcd
from typing import Optional, Sequence

import numpy as np

from sadtalker.core.constants import MODEL_FPS
from sadtalker.core.contract import AnimationRequest, RenderOptions
from tests.support import REPO_ROOT
from tests.support.rendertap import render_job
from tests.support.smallbundle import astronaut, small_bundle, small_settings, speech_like


def rendered(bundle, settings, fps: int, wav: np.ndarray) -> np.ndarray:
    """The frames the renderer makes for the request at ``fps``, in order."""
    request = AnimationRequest(astronaut(), wav, RenderOptions(enhancer="none", fps=fps), seed=5, name=f"f{fps}")
    with tempfile.TemporaryDirectory() as workdir:
        return render_job(bundle, settings, request, workdir)[1]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default=str(REPO_ROOT / ".cache" / "test_checkpoints"))
    parser.add_argument("--rates", type=int, nargs="+", default=[50, 30, 60])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 8])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    bundle = small_bundle(args.checkpoints)
    wav = speech_like(args.seconds)
    print("| fps | shared instants | render batch | frames compared | max abs diff | identical values |")
    print("|---|---|---|---|---|---|")
    for batch in args.batches:
        settings = dataclasses.replace(small_settings(args.checkpoints), render_batch_size=batch)
        today = rendered(bundle, settings, MODEL_FPS, wav)
        for fps in args.rates:
            step = fps // gcd(fps, MODEL_FPS)  # frames between shared instants at fps ...
            rows = MODEL_FPS // gcd(fps, MODEL_FPS)  # ... and at 25 fps
            frames = rendered(bundle, settings, fps, wav)[::step]
            frames = frames[: (len(today) + rows - 1) // rows]
            diff = np.abs(frames.astype(int) - today[::rows][: len(frames)].astype(int))
            print(
                f"| {fps} | every {step} | {batch} | {len(frames)} | {diff.max()} | {np.mean(diff == 0) * 100:.3f} % |"
            )


if __name__ == "__main__":
    main()
