"""Time the reference-video preprocessing of a synthetic 10 s, 25 fps, 512x512 video on this machine.

    .venv/bin/python -m bench.ref_video_timing [--seconds 10] [--finder dlib|retinaface] [--threads 2]

The video is the astronaut photo moving slightly (H.264, made with ffmpeg). Timed: decoding to 25 fps frames
(``decode_video``) and ``preprocess_video`` (frame-0 landmarks and crop, 250 crops, per-frame landmarks, alignment
and ReconNet in batches of 16). ReconNet and the finders are the real-size networks, with the generated test weights
(``.cache/test_checkpoints``); dlib uses its real 68-point model. With random RetinaFace weights the retinaface finder
may find no face; its timing is only meaningful with the official weights (CHECKPOINTS_DIR).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.support import REPO_ROOT


def make_video(path: Path, seconds: float) -> None:
    import cv2
    from PIL import Image

    from sadtalker.output.ffmpeg import ffmpeg_exe

    image = np.array(Image.open(REPO_ROOT / "tests" / "golden" / "scenario_a" / "input_image.png").convert("RGB"))
    frames = int(seconds * 25)
    argv = [
        ffmpeg_exe(),
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        "512x512",
        "-r",
        "25",
        "-i",
        "pipe:0",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        str(path),
    ]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE)
    assert proc.stdin is not None  # stdin=PIPE
    for i in range(frames):
        phi = 2 * np.pi * i / 50
        m = cv2.getRotationMatrix2D((225.0, 125.0), 3 * np.sin(phi), 1.0)
        m[0, 2] += 4 * np.sin(phi + 0.8)
        m[1, 2] += 2.5 * np.sin(phi + 1.6)
        proc.stdin.write(cv2.warpAffine(image, m, (512, 512), borderMode=cv2.BORDER_REPLICATE).tobytes())
    proc.stdin.close()
    proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ref_video_timing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the video (default 10)")
    parser.add_argument("--finder", default="dlib", choices=("dlib", "retinaface"), help="the face finder timed")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument(
        "--checkpoints",
        help="weights folder (default: CHECKPOINTS_DIR, else .cache/test_checkpoints)",
        default=os.environ.get("CHECKPOINTS_DIR") or str(REPO_ROOT / ".cache" / "test_checkpoints"),
    )
    args = parser.parse_args()

    import torch

    from sadtalker.face.stage import preprocess_video
    from sadtalker.weights.loader import load_face_finder, load_recon_net, read_components, sadtalker_file_name
    from sadtalker.worker.media import decode_video

    torch.set_num_threads(args.threads)
    path = Path(args.checkpoints) / sadtalker_file_name(256)
    recon = load_recon_net(read_components(str(path), ["face_3drecon"])["face_3drecon"], path.name, torch.device("cpu"))
    finder = load_face_finder(args.checkpoints, args.finder, "cpu")
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "ref.mp4"
        make_video(video, args.seconds)
        start = time.perf_counter()
        frames = decode_video(video.read_bytes(), folder, 60, 4096)
        decoded = time.perf_counter()
        out = preprocess_video(frames, finder, recon, "crop")
        done = time.perf_counter()
    print(
        f"{args.seconds:g} s video, {len(frames)} frames 512x512, finder {args.finder}, {args.threads} threads, "
        f"{torch.get_num_threads()} torch threads"
    )
    print(
        f"decode {decoded - start:.2f} s, preprocess {done - decoded:.2f} s "
        f"({(done - decoded) / len(frames) * 1000:.0f} ms/frame), total {done - start:.2f} s, filled {out.filled}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
