"""Measure the preprocessing stages against golden scenario A: max abs error per stage and CPU time.

Usage: ``python -m bench.preprocess_fidelity CHECKPOINTS_DIR [--threads 2] [--repeat 3]``
(CHECKPOINTS_DIR holds generated test weights: ``python -m tests.support.checkpoints DIR``).
Prints one table: stage, max abs error vs golden A, the tolerance of tests/golden/README.md, median seconds.
Speed is reported, never asserted; tests/fidelity/test_golden_a_face.py and test_golden_a_motion.py assert the
tolerances.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import soundfile
import torch

from sadtalker.core.constants import EXPRESSION_COLUMNS, POSE_COLUMNS
from sadtalker.face import align3dmm, crop
from sadtalker.face import stage as face_stage
from sadtalker.motion import mel
from sadtalker.motion import stage as motion_stage
from sadtalker.weights.loader import (
    load_audio_models,
    load_face_finder,
    load_recon_net,
    read_components,
    sadtalker_file_name,
)
from tests.support import REPO_ROOT

GOLDEN = REPO_ROOT / "tests" / "golden" / "scenario_a"
log = logging.getLogger("bench.preprocess_fidelity")


def timed(fn, repeat):
    """(result of the last call, median seconds over ``repeat`` calls after one warm-up)."""
    fn()
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def rgb(name):
    return cv2.cvtColor(cv2.imread(str(GOLDEN / name)), cv2.COLOR_BGR2RGB)


def measure_image(g, recon, row, repeat) -> None:
    """Landmarks (dlib), crop, source, alignment, ReconNet, preprocess_image."""
    args = argparse.Namespace(repeat=repeat)
    image = rgb("input_image.png")
    finder = load_face_finder("unused", "dlib", "cpu")
    lm, secs = timed(lambda: finder.landmarks(image), args.repeat)
    row("dlib landmarks, 512x512 photo", np.abs(lm - g["crop"]["lm68_full"]).max(), 0, secs)
    (region, info), secs = timed(lambda: crop.crop_face(image, g["crop"]["lm68_full"], "crop"), args.repeat)
    quad_err = np.abs(np.array(info.quad) - g["crop"]["quad"]).max()
    row("crop quad (lx, ly, rx, ry)", quad_err, 1e-4, secs)
    row(
        "crop box / crop_info size (int)",
        float(info.border_crop != tuple(g["crop"]["crop"]) or info.size != (182, 182)),
        0,
        None,
    )
    row("crop image 182x182 (uint8)", np.abs(region.astype(int) - rgb("crop_face.png")).max(), 0, None)
    source, secs = timed(lambda: crop.resize_source(region, 256), args.repeat)
    row("source 256x256 (uint8)", np.abs(source.astype(int) - rgb("source_256.png")).max(), 0, secs)
    lm2, secs = timed(lambda: finder.landmarks(source), args.repeat)
    row("dlib landmarks, 256x256 crop", np.abs(lm2 - g["align3dmm"]["lm68_crop"]).max(), 0, secs)
    lm_yup = align3dmm.flip_y(g["align3dmm"]["lm68_crop"], 256)
    al, secs = timed(lambda: align3dmm.align_image(source, lm_yup), args.repeat)
    rel = np.abs(al.trans_params - g["align3dmm"]["trans_params"]) / np.abs(g["align3dmm"]["trans_params"])
    row("trans_params (relative)", rel.max(), 1e-6, secs)
    row("ReconNet input 224x224 (uint8)", np.abs(al.image.astype(int) - rgb("recon_input_224.png")).max(), 0, None)
    rec, secs = timed(lambda: face_stage.reconstruct(recon, source, lm_yup), args.repeat)
    row("ReconNet full_3dmm (align + forward)", np.abs(rec.full_3dmm - g["align3dmm"]["full_3dmm"]).max(), 1e-4, secs)
    row("coeff_3dmm (73)", np.abs(rec.coeff_3dmm - g["align3dmm"]["coeff_3dmm"]).max(), 1e-4, None)
    _, secs = timed(lambda: face_stage.preprocess_image(image, finder, recon, "crop", 256), args.repeat)
    row("preprocess_image total (2 dlib passes, crop, align, ReconNet)", None, None, secs)


def measure_audio(g, exp_net, pose_vae, row, repeat) -> np.ndarray:
    """Mel, windows, blinks, z, ExpNet, PoseVAE, smoothing, final coefficients; returns the windows."""
    args = argparse.Namespace(repeat=repeat)
    wav, _ = soundfile.read(str(GOLDEN / "scenario_a.wav"), dtype="float32")
    frames = mel.num_frames(len(wav))
    spectrogram, secs = timed(lambda: mel.melspectrogram(mel.fit_to_frames(wav, frames)), args.repeat)
    row("mel spectrogram", np.abs(spectrogram - g["audio"]["mel"]).max(), 1e-4, secs)
    win, secs = timed(lambda: mel.mel_windows(spectrogram, frames), args.repeat)
    row("mel windows", np.abs(win - g["audio"]["indiv_mels"]).max(), 1e-4, secs)

    blink = g["expnet"]["blink_ratio"]
    row(
        "blinks, random.Random(0)", np.abs(motion_stage.blink_sequence(frames, random.Random(0)) - blink).max(), 0, None
    )
    z = motion_stage.draw_pose_z(3, torch.Generator().manual_seed(0))
    row("PoseVAE z, Generator seed 0", np.abs(z.numpy() - g["posevae"]["z"]).max(), 0, None)
    coeff = g["align3dmm"]["coeff_3dmm"]
    exp, secs = timed(lambda: motion_stage.predict_exp(exp_net, win, coeff[EXPRESSION_COLUMNS], blink), args.repeat)
    row("ExpNet exp (75x64)", np.abs(exp - g["expnet"]["exp"]).max(), 1e-4, secs)
    zt = torch.from_numpy(g["posevae"]["z"])
    pose = coeff[POSE_COLUMNS]
    motion, secs = timed(lambda: motion_stage.predict_pose_motion(pose_vae, win, pose, 0, zt), args.repeat)
    pose_raw = pose[None] + motion
    row("PoseVAE pose_raw (75x6)", np.abs(pose_raw - g["posevae"]["pose_raw"]).max(), 1e-5, secs)
    smooth, secs = timed(lambda: motion_stage.smooth_pose(pose_raw), args.repeat)
    row("pose_smooth (savgol 13, 2)", np.abs(smooth - g["posevae"]["pose_smooth"]).max(), 1e-5, secs)
    unused = torch.Generator()  # pose_z is given: no draw
    out, secs = timed(
        lambda: motion_stage.audio_to_coeffs(exp_net, pose_vae, win, coeff, blink, 0, unused, pose_z=zt), args.repeat
    )
    row("final coefficients (75x70)", np.abs(out - g["posevae"]["coeffs"]).max(), 1e-4, secs)

    return win


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.preprocess_fidelity", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints_dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    g = {n: np.load(GOLDEN / f"{n}.npz") for n in ("audio", "crop", "align3dmm", "expnet", "posevae")}
    rows = []

    def row(stage, err, tol, secs):
        rows.append((stage, err, tol, secs))

    path = Path(args.checkpoints_dir) / sadtalker_file_name(256)

    def load():
        parts = read_components(str(path), ["face_3drecon", "audio2exp", "audio2pose"])
        recon = load_recon_net(parts["face_3drecon"], path.name, torch.device("cpu"))
        return recon, *load_audio_models(parts["audio2exp"], parts["audio2pose"], path.name, torch.device("cpu"))

    (recon, exp_net, pose_vae), secs = timed(load, 1)
    row("load ReconNet + ExpNet + PoseVAE", None, None, secs)

    measure_audio(g, exp_net, pose_vae, row, args.repeat)
    measure_image(g, recon, row, args.repeat)
    log.info("| stage | max abs error vs golden A | tolerance | median s (CPU, %d threads) |", args.threads)
    log.info("|---|---|---|---|")
    for stage, err, tol, secs in rows:
        fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        log.info("| %s | %s | %s | %s |", stage, fmt(err, ".3g"), fmt(tol, "g"), fmt(secs, ".4f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
