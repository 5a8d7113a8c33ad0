"""The full-mode paste against the reference's (``cv2.resize`` + ``cv2.seamlessClone``): time per frame, or equality.

Both sides take the same 256 px rendered faces and the same photo, resize each face to its box and Poisson-paste
it, and give whole uint8 frames. OpenCV runs frame by frame (as the reference does); ours takes the batch at once.
Photos and faces are generated (smooth colour fields plus noise, seeded); speed does not depend on the values.
Each row also checks that the two agree (max difference, share of identical values).

Sizes (box in photo, width x height), as in issue 21: 216 px in 560x600, 512 px in 1920x1080, 1024 px in
2048x2160. ``--memory`` instead reports the peak memory of one batch for a 4096 px photo (the largest side
``MAX_OUTPUT_SIDE`` allows by default, so what a 4096 px photo at ``upscale`` 2 is scaled back to).
``--steps`` times the steps of our paste one by one (best of ``--repeats`` batches per step, ms per frame).
``--equality`` prints, for every case of ``tests/support/pastecases.py`` (golden A and C frames in their photo,
generated odd, edge, tiny, grey and large cases), the largest difference from OpenCV and the share of identical
values, over the whole frame and inside the box.

    python -m bench.paste_speed --threads 2
    python -m bench.paste_speed --device cuda --batch 32 --no-opencv
    python -m bench.paste_speed --steps --threads 1 --repeats 9
    python -m bench.paste_speed --memory --box 2048
    python -m bench.paste_speed --equality
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch

from sadtalker.output.paste import Paster
from tests.support.pastecases import (
    GENERATED,
    LARGEST,
    generated_case,
    golden_cases,
    opencv_paste,
    share_identical,
    smooth_image,
)

CASES: Tuple[Tuple[int, Tuple[int, int]], ...] = ((216, (560, 600)), (512, (1920, 1080)), (1024, (2048, 2160)))
FACE_SIDE = 256  # the renderer's output
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and cv2.setNumThreads")
    parser.add_argument("--batch", type=int, default=8, help="frames per paste call (ours)")
    parser.add_argument("--repeats", type=int, default=2, help="timed batches after one warm-up batch")
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=list(DTYPES))
    parser.add_argument("--no-opencv", action="store_true", help="skip the OpenCV column (e.g. on a GPU box)")
    parser.add_argument("--memory", action="store_true", help="peak memory of one batch, 4096 px photo")
    parser.add_argument("--box", type=int, default=2048, help="--memory: the face box's side")
    parser.add_argument("--equality", action="store_true", help="the equality table against cv2.seamlessClone")
    parser.add_argument("--steps", action="store_true", help="time our paste's steps one by one (float32)")
    return parser.parse_args(argv)


def centred_box(side: int, photo_size: Tuple[int, int]) -> Tuple[int, int, int, int]:
    width, height = photo_size
    x1, y1 = (width - side) // 2, (height - side) // 2
    return x1, y1, x1 + side, y1 + side


def opencv_batch(faces: np.ndarray, photo: np.ndarray, box: Tuple[int, int, int, int]) -> List[np.ndarray]:
    """The reference's paste, frame by frame."""
    return [opencv_paste(face, photo, box) for face in faces]


def as_numpy(frames: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    return frames if isinstance(frames, np.ndarray) else frames.cpu().numpy()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_ours(paster: Paster, faces: torch.Tensor, repeats: int, device: str) -> Tuple[float, np.ndarray]:
    """Seconds per frame over ``repeats`` batches after a warm-up one, and the last batch's frames."""
    out = paster.paste(faces)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        out = paster.paste(faces)
    _sync(device)
    return (time.perf_counter() - start) / (repeats * len(faces)), as_numpy(out)


def speed_row(side: int, photo_size: Tuple[int, int], args: argparse.Namespace, rng: np.random.Generator) -> Dict:
    width, height = photo_size
    photo = smooth_image(rng, height, width)
    faces = np.stack([smooth_image(rng, FACE_SIDE, FACE_SIDE) for _ in range(args.batch)])
    box = centred_box(side, photo_size)
    row: Dict = {"box": side, "photo": f"{width}x{height}"}
    reference = None
    if not args.no_opencv:
        opencv_batch(faces[:1], photo, box)  # warm-up
        start = time.perf_counter()
        reference = np.stack(opencv_batch(faces, photo, box))
        row["opencv_s"] = (time.perf_counter() - start) / len(faces)
    for name in args.dtypes:
        paster = Paster(photo, box, args.device, method="seamless", solve_dtype=DTYPES[name])
        seconds, ours = time_ours(paster, torch.from_numpy(faces).to(args.device), args.repeats, args.device)
        row[f"{name}_s"] = seconds
        if reference is not None:
            diff = np.abs(ours[:, :height, :width].astype(np.int16) - reference)
            row[f"{name}_max"], row[f"{name}_identical"] = int(diff.max()), float((diff == 0).mean())
    return row


def print_speed(rows: List[Dict], args: argparse.Namespace) -> None:
    print(
        f"device {args.device}, {args.threads} threads (torch and cv2), batch {args.batch}, "
        f"torch {torch.__version__}, OpenCV {cv2.__version__}"
    )
    head = "| box | photo |" + "".join(f" ours {name} ms/frame |" for name in args.dtypes)
    if not args.no_opencv:
        head += " OpenCV ms/frame |" + "".join(f" OpenCV / ours {name} |" for name in args.dtypes)
        head += " max diff, identical |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for row in rows:
        line = f"| {row['box']} | {row['photo']} |" + "".join(f" {row[f'{n}_s'] * 1e3:.1f} |" for n in args.dtypes)
        if "opencv_s" in row:
            line += f" {row['opencv_s'] * 1e3:.1f} |"
            line += "".join(f" {row['opencv_s'] / row[f'{n}_s']:.1f}x |" for n in args.dtypes)
            line += " " + ", ".join(f"{row[f'{n}_max']} / {row[f'{n}_identical'] * 100:.3f} %" for n in args.dtypes)
            line += " |"
        print(line)


# (owner, method) timed by --steps, in the order printed: Paster's, then PoissonPaste's ("sines": the last transform)
STEPS = (
    ("paster", "paste"),
    ("paster", "_resize"),
    ("poisson", "_solve_planes"),
    ("poisson", "_source"),
    ("poisson", "_face_projection"),
    ("poisson", "_forward"),
    ("poisson", "_backward"),
    ("poisson", "sines"),
    ("poisson", "_write"),
)


class _Timed:
    """Stands in for a callable attribute, adding each call's seconds to ``totals[name]``."""

    def __init__(self, inner, name: str, totals: Dict[str, float]) -> None:
        self.inner, self.name, self.totals = inner, name, totals

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.totals[self.name] = self.totals.get(self.name, 0.0) + time.perf_counter() - start

    def __getattr__(self, attribute: str):
        return getattr(self.inner, attribute)


def print_steps(args: argparse.Namespace) -> None:
    """Per box: ms per frame of Paster.paste, its resize and the Poisson solve's steps, each the best of
    ``--repeats`` batches; a step's time includes the steps it calls."""
    rng = np.random.default_rng(21)
    print(f"device {args.device}, {args.threads} threads, batch {args.batch}, float32, best of {args.repeats}")
    for side, (width, height) in CASES:
        photo = smooth_image(rng, height, width)
        faces = torch.from_numpy(np.stack([smooth_image(rng, FACE_SIDE, FACE_SIDE) for _ in range(args.batch)]))
        paster = Paster(photo, centred_box(side, (width, height)), args.device, method="seamless")
        owners = {"paster": paster, "poisson": paster.poisson}
        totals: Dict[str, float] = {}
        for owner, name in STEPS:
            setattr(owners[owner], name, _Timed(getattr(owners[owner], name), name.strip("_"), totals))
        paster.paste(faces.to(args.device))  # warm-up
        best: Dict[str, float] = {}
        for _ in range(args.repeats):
            totals.clear()
            paster.paste(faces.to(args.device))
            _sync(args.device)
            best = {name: min(best.get(name, np.inf), seconds) for name, seconds in totals.items()}
        names = [name.strip("_") for _, name in STEPS]
        steps = ", ".join(f"{name} {best[name] / args.batch * 1e3:.2f}" for name in names if name in best)
        print(f"{side} px box, ms per frame: {steps}")


def _rss() -> int:
    """This process's resident memory in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def cpu_peak(work) -> int:
    """Peak resident memory above the starting level while ``work()`` runs, sampled every millisecond."""
    base, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss() - base)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], _rss() - base)


def peak_memory(args: argparse.Namespace) -> None:
    """Peak memory of building the paster (once per job) and of one paste batch: a 4096x4096 photo, an ``--box``
    px face box, ``--batch`` 256 px faces; resident memory above the level before each step (CPU), or the CUDA
    allocator's peak above the memory already held."""
    rng = np.random.default_rng(0)
    photo = smooth_image(rng, 4096, 4096)
    faces = torch.from_numpy(np.stack([smooth_image(rng, FACE_SIDE, FACE_SIDE) for _ in range(args.batch)]))
    box = centred_box(args.box, (4096, 4096))
    for name in args.dtypes:
        build, paste, paster = measure_paster(args, photo, box, faces, DTYPES[name])
        chunk = paster.poisson.planes_per_chunk if paster.poisson is not None else 0
        print(
            f"{args.device} {name}: box {args.box} in 4096x4096, batch {args.batch}: building the paster "
            f"{build / 2**20:.0f} MiB, one batch {paste / 2**20:.0f} MiB above that (colour planes per solve "
            f"chunk {chunk}; the batch's output frames alone {args.batch * 4096 * 4096 * 3 / 2**20:.0f} MiB)"
        )


def measure_paster(
    args: argparse.Namespace, photo: np.ndarray, box: Tuple[int, int, int, int], faces: torch.Tensor, dtype: torch.dtype
) -> Tuple[int, int, Paster]:
    """Peak bytes of building a paster and of one paste with it, and the paster."""
    held: List[Paster] = []
    build = measure(args.device, lambda: held.append(Paster(photo, box, args.device, solve_dtype=dtype)))
    paste = measure(args.device, lambda: held[0].paste(faces.to(args.device)))
    return build, paste, held[0]


def measure(device: str, work) -> int:
    """Peak bytes ``work()`` adds on ``device``."""
    if device != "cuda":
        return cpu_peak(work)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    work()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def print_equality(args: argparse.Namespace) -> None:
    """Max difference and share of identical values against OpenCV, per case, for each solve dtype."""
    cases = golden_cases() + [generated_case(spec) for spec in GENERATED] + [generated_case(LARGEST, frames=1)]
    print(f"device {args.device}, torch {torch.__version__}, OpenCV {cv2.__version__}")
    print("| case | dtype | max abs diff | identical (frame) | identical (inside the box) |")
    print("|---|---|---|---|---|")
    for case in cases:
        height, width = case.photo.shape[:2]
        reference = np.stack(opencv_batch(case.faces, case.photo, case.box))
        for name in args.dtypes:
            paster = Paster(case.photo, case.box, args.device, method="seamless", solve_dtype=DTYPES[name])
            ours = as_numpy(paster.paste(torch.from_numpy(case.faces).to(args.device)))[:, :height, :width]
            worst, whole, inside = share_identical(ours, reference, case.box)
            print(f"| {case.name} | {name} | {worst} | {whole * 100:.3f} % | {inside * 100:.3f} % |")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    if args.memory:
        peak_memory(args)
        return 0
    if args.equality:
        print_equality(args)
        return 0
    if args.steps:
        print_steps(args)
        return 0
    rng = np.random.default_rng(21)
    print_speed([speed_row(side, size, args, rng) for side, size in CASES], args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
