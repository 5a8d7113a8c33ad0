"""Lip sync at 24, 25 and 30 fps: where the mouth starts to move after each tone burst's onset, in seconds.

A recording of silence with four 0.4 s tone bursts (sharp 5 ms onsets, tests/support/lipsync.py) goes through the
coefficient stage at each rate; the expression coefficient that moves most into the first burst is followed frame by
frame (each frame's coefficients at its own instant), and the instants it passes halfway to its loud level
(between the two frames around the crossing) are printed beside the bursts' with the
difference from 25 fps in output frames. The real-format coefficient networks with generated weights (what the
tests use): their mouth is not SadTalker's, their timing is.

    python -m bench.lip_sync
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from tests.support import REPO_ROOT
from tests.support.lipsync import BURSTS_S, mouth_column, mouth_track, onsets, tone_bursts
from tests.support.smallbundle import small_bundle


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default=str(REPO_ROOT / ".cache" / "test_checkpoints"))
    parser.add_argument("--rates", type=int, nargs="+", default=[24, 25, 30])
    args = parser.parse_args(argv)
    bundle = small_bundle(args.checkpoints)
    wav = tone_bursts()
    tracks = {fps: mouth_track(bundle, wav, fps) for fps in sorted(set(args.rates) | {25})}
    column = mouth_column(tracks[25])
    found = {fps: onsets(track, column, fps) for fps, track in tracks.items()}
    print(f"expression coefficient {column}; onsets in seconds (difference from 25 fps, in output frames)")
    print("| burst starts | " + " | ".join(f"{fps} fps" for fps in args.rates) + " |")
    print("|---|" + "---|" * len(args.rates))
    for index, burst in enumerate(BURSTS_S):
        cells = []
        for fps in args.rates:
            onset = found[fps][index]
            cells.append(f"{onset:.3f} s ({(onset - found[25][index]) * fps:+.2f})")
        print(f"| {burst:.2f} s | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
