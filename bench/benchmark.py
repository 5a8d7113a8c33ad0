"""Benchmark the real pipeline: per-stage seconds, frames per second, realtime factor, peak memory.

Runs ``sadtalker.bundle.load_models`` + ``sadtalker.pipeline.animate`` (the code a job runs) on speech of a
given length, for every combination of --sizes, --enhancers and --preprocess, on CPU or CUDA, with random weights in
the official formats (speed does not depend on the values; they are generated once into --checkpoints
by tests/support/checkpoints.py unless real weights are there). Faces are found with dlib, because
random RetinaFace weights find none; on a machine without dlib, --landmarks replays the landmarks that
--record-landmarks saved on one with it. The first run of each size is a warm-up and is not reported unless
--no-warmup is given.

Also reports the renderer's compute rate: the FLOPs of one generator frame (torch's FLOP counter,
multiply-add = 2) times frames per second of the render stage.

Examples:
    python -m bench.benchmark --device cpu --seconds 2 --sizes 256 --enhancers none --preprocess crop
    python -m bench.benchmark --device cuda --seconds 30 --json bench.json
    python -m bench.benchmark --device cuda --batch-size 32 --render-dtype fp16 --enhancer-dtype fp16
    python -m bench.benchmark --record-landmarks lm.npz ...   # here, with dlib
    python -m bench.benchmark --landmarks lm.npz ...          # there, without dlib
    python -m bench.benchmark --small --device cpu --seconds 0.4 --no-flops   # tests this script

    python -m bench.benchmark --small --device cpu --seconds 300 --no-flops --sizes 256 --enhancers none \
        --preprocess crop --segment-seconds 1 --until-first-segment   # time to the first streamed segment
    python -m bench.benchmark --device cpu --seconds 2 --sizes 256 --enhancers none --preprocess crop \
        --fps 24 25 30 --no-flops   # the cost of other frame rates: frames and seconds per frame

``--small`` runs the small networks of ``tests/support/smallbundle.py`` (the plumbing tests' bundle).
With ``--until-first-segment`` each job stops once its first segment is out: the row gives the seconds from the job's
start to it, the CPU seconds the process spent by then (all its threads), the stage seconds (read from the job's
StageTimer) and the peak RSS of the process; with ``--repeat N`` the fastest of N jobs (and the median of their
first-segment seconds): on a machine other processes share, the fastest run is the one they bent least.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import resource
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sadtalker.core.constants import PRECISIONS  # imports no torch: --help stays fast
from tests.support import REPO_ROOT

log = logging.getLogger("bench.benchmark")
SPEECH = REPO_ROOT / "assets" / "speech.wav"
IMAGE = REPO_ROOT / "assets" / "astronaut.jpg"


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """What is measured: the jobs (speech length, sizes, enhancers, preprocess modes) and the streaming."""
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the speech (default 30)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], choices=[256, 512])
    parser.add_argument("--enhancers", nargs="+", default=["none", "gfpgan"], choices=["none", "gfpgan"])
    parser.add_argument("--preprocess", nargs="+", default=["crop", "full"], choices=["crop", "resize", "full"])
    parser.add_argument(
        "--fps",
        type=int,
        nargs="+",
        default=[25],
        help="the jobs' output frame rates (the request's fps, 20-60; default 25): one row each, side by side",
    )
    parser.add_argument(
        "--segment-seconds",
        type=float,
        default=0.0,
        help="stream segments of this length (STREAM_SEGMENT_SECONDS) and report the seconds from "
        "the job's start to the first one",
    )
    parser.add_argument(
        "--first-segment-seconds",
        type=float,
        default=None,
        help="the first segment's length (STREAM_FIRST_SEGMENT_SECONDS; default: as the others)",
    )
    parser.add_argument(
        "--until-first-segment",
        action="store_true",
        help="with --segment-seconds: stop each job at its first segment and report the stage seconds spent until then",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="with --until-first-segment: run the job this many times per size and report the fastest (with the "
        "median), which other processes on a busy machine bend least",
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """How the models run: device, weights, the worker settings and the inference-path switches."""
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=None, help="RENDER_BATCH_SIZE (default: the setting's)")
    parser.add_argument(
        "--checkpoints",
        default=str(REPO_ROOT / ".cache" / "test_checkpoints"),
        help="weights folder; generated there when files are missing",
    )
    parser.add_argument(
        "--render-dtype", default=None, choices=PRECISIONS, help="RENDER_DTYPE (default: the setting's, fp32)"
    )
    parser.add_argument(
        "--enhancer-dtype",
        default=None,
        choices=("auto",) + PRECISIONS,
        help="ENHANCER_DTYPE (default: the setting's, auto)",
    )
    parser.add_argument(
        "--enhancer-batch",
        type=int,
        default=None,
        help="faces per GFPGAN forward (default: sadtalker.enhance.stage.DEFAULT_BATCH)",
    )
    parser.add_argument("--torch-compile", action="store_true", help="TORCH_COMPILE=true")
    parser.add_argument(
        "--upsampled-convs-on-cuda",
        action="store_true",
        help="on CUDA too, run the convs on nearest-upsampled maps on the small map "
        "(UPSAMPLED_CONVS_ON_CUDA=true; measured on CPU only so far)",
    )
    parser.add_argument(
        "--enhancer-nchw",
        action="store_true",
        help="on CUDA, run GFPGAN in NCHW layout instead of channels-last "
        "(ENHANCER_CHANNELS_LAST=false; not yet timed on a GPU either way)",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="FAST_PATHS=false: the network classes as written, none of sadtalker/kernels' inference paths",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--small",
        action="store_true",
        help="the small random renderer, mappings and GFPGAN of tests/support/smallbundle.py "
        "(32 px frames): runs every stage of a job quickly, on a CPU too, to test this script; "
        "its speed means nothing",
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.benchmark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_job_options(parser)
    add_model_options(parser)
    finder = parser.add_mutually_exclusive_group()
    finder.add_argument(
        "--landmarks",
        default=None,
        help="replay the face landmarks saved by --record-landmarks instead of running a face finder",
    )
    finder.add_argument(
        "--record-landmarks",
        default=None,
        help="find faces with dlib and save every landmark set it returned to this .npz",
    )
    parser.add_argument("--no-warmup", action="store_true", help="report the first run of each size too")
    parser.add_argument("--no-flops", action="store_true", help="skip counting the generator's FLOPs")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def speech(seconds: float) -> np.ndarray:
    """The repo's espeak-ng sample looped to ``seconds`` (16 kHz float32)."""
    with wave.open(str(SPEECH)) as handle:
        assert handle.getframerate() == 16000 and handle.getsampwidth() == 2 and handle.getnchannels() == 1
        clip = np.frombuffer(handle.readframes(handle.getnframes()), "<i2").astype(np.float32) / 32768.0
    reps = int(np.ceil(seconds * 16000 / len(clip)))
    return np.tile(clip, reps)[: int(seconds * 16000)]


def ensure_weights(folder: str) -> None:
    from tests.support import checkpoints as writer

    missing = [name for name in writer.WORKER_FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        log.info("generating %d weight file(s) into %s", len(missing), folder)
        writer.write_all(folder, missing)


def generator_flops_per_frame(bundle, size: int) -> float:
    """FLOPs of one generator frame at ``size`` (motion + decode), counted by torch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sadtalker.render.stage import render_frames

    size_models = bundle.for_size(size)
    models, side = size_models.renderer, size_models.image_size
    with torch.inference_mode():
        source = torch.rand(1, 3, side, side, device=models.device, dtype=models.dtype)
        kp = models.kp_extractor(source)
        feature = models.generator.encode(source)
        with FlopCounterMode(display=False) as counter:
            render_frames(models, feature, kp, kp + 0.01)
    return float(counter.get_total_flops())


class RecordingFinder:
    """Wraps a face finder; keeps (image shape, 16x16 thumbnail, landmarks) of every answer."""

    def __init__(self, finder) -> None:
        self.finder = finder
        self.entries: list[tuple[tuple[int, ...], np.ndarray, np.ndarray]] = []

    def landmarks(self, image_rgb: np.ndarray) -> np.ndarray:
        points = self.finder.landmarks(image_rgb)
        self.entries.append((image_rgb.shape, thumbnail(image_rgb), np.asarray(points, np.float32)))
        return points

    def save(self, path: str) -> None:
        np.savez(
            path,
            shapes=np.array([e[0] for e in self.entries]),
            thumbs=np.stack([e[1] for e in self.entries]),
            points=np.stack([e[2] for e in self.entries]),
        )


class ReplayFinder:
    """Answers with the recorded landmarks of the image of the same shape that looks most alike."""

    def __init__(self, path: str) -> None:
        data = np.load(path)
        self.shapes, self.thumbs, self.points = data["shapes"], data["thumbs"], data["points"]

    def landmarks(self, image_rgb: np.ndarray) -> np.ndarray:
        from sadtalker.core.errors import NoFaceDetected

        same = np.flatnonzero((self.shapes == np.array(image_rgb.shape)).all(axis=1))
        if len(same) == 0:
            raise NoFaceDetected(f"no recorded landmarks for an image of shape {image_rgb.shape}")
        distance = np.abs(self.thumbs[same] - thumbnail(image_rgb)[None]).mean(axis=(1, 2, 3))
        return self.points[same[int(np.argmin(distance))]].copy()


def thumbnail(image_rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(image_rgb, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class ProgressLog:
    """The pipeline's progress callback: logs each new stage and every 10 % of the job."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.tenth = -1

    def __call__(self, stage: str, chunk: int = 0, chunks: int = 0, percent: float = 0.0) -> None:
        if stage != self.stage or int(percent // 10) > self.tenth:
            self.stage, self.tenth = stage, int(percent // 10)
            log.info("progress: %s chunk %d/%d, %.0f %%", stage, chunk, chunks, percent)


def run_one(
    bundle,
    settings,
    image: np.ndarray,
    wav: np.ndarray,
    size: int,
    enhancer: str,
    preprocess: str,
    segment_seconds: float = 0.0,
    fps: int = 25,
) -> dict:
    import torch

    from sadtalker.core.contract import AnimationHooks, AnimationRequest, RenderOptions
    from sadtalker.pipeline import animate

    options = RenderOptions(size=size, enhancer=enhancer, preprocess=preprocess, fps=fps)
    request = AnimationRequest(image, wav, options, seed=0, name="bench")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    segments: list[float] = []  # seconds from the start to each streamed segment
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        hooks = AnimationHooks(
            ProgressLog(),
            segment_seconds=segment_seconds,
            on_segment=lambda segment: segments.append(time.perf_counter() - start),
        )
        result = animate(bundle, settings, request, workdir, hooks)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    audio_s = len(wav) / 16000
    row = {
        "size": size,
        "enhancer": enhancer,
        "preprocess": preprocess,
        "audio_seconds": round(audio_s, 3),
        "video_fps": result.fps,
        "frames": result.frames,
        "seconds_per_frame": round(total / result.frames, 4),
        "render_seconds_per_frame": round(result.timings["render"] / result.frames, 4),
        "width": result.width,
        "height": result.height,
        "total_seconds": round(total, 3),
        "fps": round(result.frames / total, 3),
        "realtime_factor": round(audio_s / total, 3),
        "render_fps": round(result.frames / result.timings["render"], 3),
        "timings": result.timings,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if segments:
        row["first_segment_seconds"] = round(segments[0], 3)
        row["segments"] = len(segments)
    if torch.cuda.is_available():
        row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return row


class TimerTap:
    """Keeps the StageTimer each job creates, so the stage seconds can be read while it runs."""

    def __init__(self) -> None:
        from sadtalker.core import jobtools

        self.timers: list = []
        real_init = jobtools.StageTimer.__init__
        tap = self

        def init(timer, *args, **kwargs) -> None:
            real_init(timer, *args, **kwargs)
            tap.timers.append(timer)

        # The benchmark taps every StageTimer the job creates, to read its stage seconds at the first segment.
        jobtools.StageTimer.__init__ = init  # type: ignore[method-assign,assignment]


def run_until_first_segment(
    bundle, settings, image: np.ndarray, wav: np.ndarray, size: int, args: argparse.Namespace, tap: TimerTap
) -> dict:
    """Seconds from the job's start to its first streamed segment and the stage seconds spent by then; the job is
    stopped there (JobCancelled)."""
    import threading

    from sadtalker.core.contract import AnimationHooks, AnimationRequest, RenderOptions
    from sadtalker.core.errors import JobCancelled
    from sadtalker.pipeline import animate

    options = RenderOptions(size=size, enhancer="none", preprocess="crop")
    request = AnimationRequest(image, wav, options, seed=0, name="bench")
    stop = threading.Event()
    first: dict = {}

    def on_segment(segment) -> None:
        if not first:
            seconds = tap.timers[-1].seconds
            first.update(
                seconds=time.perf_counter() - start,
                cpu_seconds=time.process_time() - cpu_start,
                frames=segment.frames,
                timings={name: round(value, 3) for name, value in seconds.items()},
            )
            stop.set()

    extra = {} if args.first_segment_seconds is None else {"first_segment_seconds": args.first_segment_seconds}
    hooks = AnimationHooks(
        ProgressLog(), stop=stop, on_segment=on_segment, segment_seconds=args.segment_seconds, **extra
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as workdir:
        try:
            animate(bundle, settings, request, workdir, hooks)
        except JobCancelled:
            pass
    return {
        "size": size,
        "audio_seconds": round(len(wav) / 16000, 3),
        "first_segment_seconds": round(first["seconds"], 3),
        "first_segment_cpu_seconds": round(first["cpu_seconds"], 3),
        "first_segment_frames": first["frames"],
        "timings": first["timings"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def first_segment_rows(args: argparse.Namespace, bundle, settings, image: np.ndarray, wav: np.ndarray) -> list[dict]:
    """``--until-first-segment``: one row per size, each after a warm-up job."""
    if args.segment_seconds <= 0:
        raise SystemExit("--until-first-segment needs --segment-seconds")
    tap, rows = TimerTap(), []
    for size in args.sizes:
        if not args.no_warmup:
            run_one(bundle, settings, image, wav[: 16000 // 2], size, "none", "crop")
        runs = [run_until_first_segment(bundle, settings, image, wav, size, args, tap) for _ in range(args.repeat)]
        rows.append(min(runs, key=lambda run: run["first_segment_seconds"]))
        rows[-1]["runs"] = len(runs)
        rows[-1]["median_first_segment_seconds"] = float(np.median([run["first_segment_seconds"] for run in runs]))
        log.info("%s", rows[-1])
    return rows


def print_first_segment_table(rows: list[dict]) -> None:
    stages = sorted({stage for row in rows for stage in row["timings"]})
    head = ["audio_s", "first_segment_s", "median_s", "first_segment_cpu_s", "first_segment_frames"]
    head += [f"{s}_s" for s in stages] + ["peak_rss_mb"]
    print(" | ".join(head))
    for row in rows:
        cells = [row["audio_seconds"], row["first_segment_seconds"], row["median_first_segment_seconds"]]
        cells += [row["first_segment_cpu_seconds"], row["first_segment_frames"]]
        cells += [row["timings"].get(s, "-") for s in stages] + [row["peak_rss_mb"]]
        print(" | ".join(str(c) for c in cells))


def print_table(rows: list[dict]) -> None:
    stages = sorted({stage for row in rows for stage in row["timings"]})
    head = [
        "size",
        "enhancer",
        "preprocess",
        "video_fps",
        "frames",
        "total_s",
        "s_per_frame",
        "first_segment_s",
        "fps",
        "x_realtime",
        "render_fps",
        "TFLOP/s",
    ]
    print(" | ".join(head + [f"{s}_s" for s in stages] + ["peak_rss_mb", "peak_gpu_mb"]))
    for row in rows:
        cells = [
            row["size"],
            row["enhancer"],
            row["preprocess"],
            row["video_fps"],
            row["frames"],
            row["total_seconds"],
            row["seconds_per_frame"],
            row.get("first_segment_seconds", "-"),
            row["fps"],
            row["realtime_factor"],
            row["render_fps"],
            row.get("render_tflops", "-"),
        ]
        cells += [row["timings"].get(s, "-") for s in stages] + [row["peak_rss_mb"], row.get("peak_gpu_mb", "-")]
        print(" | ".join(str(c) for c in cells))


def settings_env(args: argparse.Namespace) -> dict[str, str]:
    """The worker settings (``Settings.from_env``) the options ask for."""
    # Replaying: the random RetinaFace loads (real start-up cost) and is then replaced by the recording.
    env = {
        "CHECKPOINTS_DIR": args.checkpoints,
        "FACE_DETECTOR": "retinaface" if args.landmarks else "dlib",
        "DEVICE": args.device,
        "LOAD_512": "startup" if 512 in args.sizes else "lazy",
    }
    if args.batch_size:
        env["RENDER_BATCH_SIZE"] = str(args.batch_size)
    if args.render_dtype:
        env["RENDER_DTYPE"] = args.render_dtype
    if args.enhancer_dtype:
        env["ENHANCER_DTYPE"] = args.enhancer_dtype
    if args.torch_compile:
        env["TORCH_COMPILE"] = "true"
    if args.upsampled_convs_on_cuda:
        env["UPSAMPLED_CONVS_ON_CUDA"] = "true"
    if args.enhancer_nchw:
        env["ENHANCER_CHANNELS_LAST"] = "false"
    if args.plain:
        env["FAST_PATHS"] = "false"
    return env


def load_bundle(args: argparse.Namespace, env: dict[str, str]):
    """The worker's models (``load_models``), or with ``--small`` the small bundle of the plumbing tests; and the
    seconds loading took. The face finder is replaced by the landmark replay or recording when asked."""
    from sadtalker.bundle import load_models, pick_device
    from sadtalker.worker.settings import Settings

    start = time.perf_counter()
    if args.small:
        from tests.support.smallbundle import small_bundle

        bundle = small_bundle(args.checkpoints, env, sizes=args.sizes, device=pick_device(args.device))
    else:
        bundle = load_models(Settings.from_env(env))
    load_s = time.perf_counter() - start
    if args.enhancer_batch and bundle.enhancer is not None:
        bundle.enhancer.batch_size = args.enhancer_batch
    if args.landmarks:
        bundle.face_finder = ReplayFinder(args.landmarks)
    elif args.record_landmarks:
        bundle.face_finder = RecordingFinder(bundle.face_finder)
    return bundle, load_s


def report_head(args: argparse.Namespace, bundle, settings, load_s: float) -> dict:
    """The report's fields that describe the run: device, threads, settings, what the enhancer runs."""
    import torch

    enhancer = bundle.enhancer
    device = str(bundle.device) + (f" ({torch.cuda.get_device_name()})" if bundle.device.type == "cuda" else "")
    return {
        "device": device,
        "threads": torch.get_num_threads(),
        "load_seconds": round(load_s, 3),
        "torch": torch.__version__,
        "batch_size": settings.render_batch_for(bundle.device.type),
        "render_dtype": settings.render_dtype,
        "enhancer_dtype": enhancer.precision if enhancer else None,
        "enhancer_batch": enhancer.batch_size if enhancer else None,
        "torch_compile": settings.torch_compile,
        "fast_paths": settings.fast_paths,
        "upsampled_convs_on_cuda": settings.upsampled_convs_on_cuda,
        "enhancer_channels_last": enhancer.memory_format == torch.channels_last if enhancer else None,
        "small_networks": args.small,
        "rows": [],
    }


def run_cases(args: argparse.Namespace, bundle, settings, image: np.ndarray, wav: np.ndarray) -> list[dict]:
    """One row per size x enhancer x preprocess x fps; the generator's TFLOP/s where the render stage is alone."""
    rows = []
    for size in args.sizes:
        flops = None if args.no_flops else generator_flops_per_frame(bundle, size)
        if not args.no_warmup:  # first use of a size: allocator, kernel selection, caches
            run_one(bundle, settings, image, wav[: 16000 // 2], size, "none", "crop")
        for enhancer, preprocess, fps in itertools.product(args.enhancers, args.preprocess, args.fps):
            row = run_one(bundle, settings, image, wav, size, enhancer, preprocess, args.segment_seconds, fps)
            # On CUDA the renderer runs ahead asynchronously: its time shows up in the next stage that waits for
            # the GPU (enhance, paste), so the render stage's own rate is only meaningful when nothing follows it.
            if flops and enhancer == "none" and preprocess != "full":
                row["generator_gflop_per_frame"] = round(flops / 1e9, 1)
                row["render_tflops"] = round(flops * row["render_fps"] / 1e12, 3)
            log.info("%s", row)
            rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch
    from PIL import Image

    if args.threads:
        torch.set_num_threads(args.threads)
    ensure_weights(args.checkpoints)
    from sadtalker.worker.settings import Settings

    env = settings_env(args)
    settings = Settings.from_env(env)
    bundle, load_s = load_bundle(args, env)
    report = report_head(args, bundle, settings, load_s)
    image = np.array(Image.open(IMAGE).convert("RGB"))
    if args.until_first_segment:
        report["rows"] = first_segment_rows(args, bundle, settings, image, speech(args.seconds))
        print(f"device: {report['device']}, threads {report['threads']}, batch {report['batch_size']}")
        print_first_segment_table(report["rows"])
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
        return 0
    report["rows"] = run_cases(args, bundle, settings, image, speech(args.seconds))
    if args.record_landmarks:
        bundle.face_finder.save(args.record_landmarks)
    print(
        f"device: {report['device']}, torch {report['torch']}, threads {report['threads']}, model load "
        f"{report['load_seconds']} s, batch {report['batch_size']}, render {report['render_dtype']}, "
        f"enhancer {report['enhancer_dtype']} x{report['enhancer_batch']}, compile {report['torch_compile']}"
    )
    print_table(report["rows"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
