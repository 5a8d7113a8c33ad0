"""Print the AAC bitrate ffprobe shows for the worker's sound track, by sample rate and channels.

The worker asks ffmpeg's AAC encoder for 128 kbit/s (mono) or 192 kbit/s (stereo) (``sadtalker.output.video``);
that is a ceiling, and speech at a low sample rate gets less. This encodes ``assets/speech.wav`` (the speech of
``test_input.json``) resampled to each layout, with the worker's own ffmpeg arguments (:func:`ffmpeg_argv`, black
64 x 64 frames), and prints what ffprobe reports.

    .venv/bin/python -m bench.aac_bitrates
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from sadtalker.core.constants import MODEL_FPS
from sadtalker.output.ffmpeg import ffmpeg_exe
from sadtalker.output.video import aac_layout, ffmpeg_argv

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO / "assets" / "speech.wav"
LAYOUTS = [(16000, 1), (22050, 1), (24000, 1), (44100, 1), (48000, 1), (16000, 2), (48000, 2)]
SIDE = 64


def probe(path: Path, entries: str, stream: str) -> str:
    """One ffprobe value of the first ``stream`` ("a" or "v") stream."""
    ffprobe = str(Path(ffmpeg_exe()).with_name("ffprobe"))
    return subprocess.run(
        [
            ffprobe,
            "-v",
            "error",
            "-select_streams",
            f"{stream}:0",
            "-show_entries",
            f"{entries}",
            "-of",
            "csv=p=0",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def encoded_bitrate(folder: Path, rate: int, channels: int) -> str:
    """kbit/s of the sound track the worker writes for a recording of ``rate`` Hz and ``channels`` channels."""
    source = folder / f"speech_{rate}_{channels}.wav"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(SPEECH),
            "-ar",
            str(rate),
            "-ac",
            str(channels),
            str(source),
        ],
        check=True,
    )
    seconds = float(probe(source, "stream=duration", "a"))
    frames = int(seconds * MODEL_FPS)
    video = folder / f"out_{rate}_{channels}.mp4"
    argv = ffmpeg_argv(ffmpeg_exe(), str(video), SIDE, SIDE, frames, str(source), "libx264", aac_layout(rate, channels))
    subprocess.run(argv, input=bytes(SIDE * SIDE * 3 * frames), check=True)
    return f"{int(probe(video, 'stream=bit_rate', 'a')) / 1000:.0f}"


def main() -> int:
    sys.stdout.write("| recording | asked (-b:a) | ffprobe bit_rate (kbit/s) |\n|---|---|---|\n")
    with tempfile.TemporaryDirectory() as folder:
        for rate, channels in LAYOUTS:
            layout = aac_layout(rate, channels)
            shown = encoded_bitrate(Path(folder), rate, channels)
            kind = "mono" if channels == 1 else "stereo"
            sys.stdout.write(f"| {rate} Hz {kind} | {layout.bitrate} | {shown} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
