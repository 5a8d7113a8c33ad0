"""Error of each renderer / enhancer precision on golden scenario A, on any device.

Renderer: ``sadtalker.render.stage.render`` over golden A's 8 windows (batch 2, as the reference ran)
with the golden-recipe weights, once per precision; the generator's float output is compared with the
reference's (``generator_output``) and the uint8 frames with the reference's frames (``final_frames``).
Precisions (``RENDER_DTYPE``, see ``sadtalker.core.precision.precision_context``): ``fp32`` (TF32 tensor cores
off), ``tf32`` (cuDNN and matrix products may use TF32 on CUDA; the same as fp32 on CPU), ``fp16`` and ``bf16``
(autocast).

Enhancer (``--enhancer``): the official-size GFPGAN with generated weights restores the 8 reference frames;
each other precision is compared with fp32 on the same device (there is no reference output for it).

Examples:
    python -m bench.precision_check --device cuda --json precision.json
    python -m bench.precision_check --device cpu --precisions fp32
    python -m bench.precision_check --device cpu --precisions fp32 --windows 1 --no-warmup   # quick
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sadtalker.core.constants import PRECISIONS  # imports no torch: --help stays fast
from tests.support import REPO_ROOT

GOLDEN_A = REPO_ROOT / "tests" / "golden" / "scenario_a"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.precision_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument(
        "--checkpoints",
        default=str(REPO_ROOT / ".cache" / "test_checkpoints"),
        help="golden-recipe weights; generated there when files are missing",
    )
    parser.add_argument("--enhancer", action="store_true", help="also compare GFPGAN's precisions")
    parser.add_argument(
        "--windows", type=int, default=None, help="use only golden A's first N windows (frames); default all 8"
    )
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the fp32 render before the measured ones (its use: kernel choice on CUDA)",
    )
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def errors(actual: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    return {"max": float(diff.max()), "mean": float(diff.mean()), "share_differing": float((diff > 0).mean())}


def render_golden(models, mapping, golden: dict[str, np.ndarray], source: np.ndarray, precision: str) -> dict:
    """Generator float output and uint8 frames for golden A's 8 windows at ``precision``."""
    from sadtalker.render import stage

    outputs: list[np.ndarray] = []
    hook = models.generator.decoder.register_forward_hook(
        lambda module, args, out: outputs.append(out.float().cpu().numpy())
    )
    try:
        frames = np.concatenate(
            list(
                stage.render(
                    models,
                    mapping,
                    source,
                    golden["source_semantics"],
                    golden["target_semantics"],
                    batch_size=2,
                    precision=precision,
                )
            )
        )
    finally:
        hook.remove()
    return {"generator": np.concatenate(outputs), "frames": frames}


def golden_render(windows: int | None) -> dict[str, np.ndarray]:
    """Golden A's renderer arrays, cut to the first ``windows`` frames (all when None)."""
    golden = dict(np.load(GOLDEN_A / "render.npz"))
    if windows is None:
        return golden
    for key in ("target_semantics", "generator_output", "final_frames"):
        golden[key] = golden[key][:windows]
    return golden


def check_renderer(args: argparse.Namespace) -> list[dict]:
    import torch
    from PIL import Image

    from sadtalker.kernels.renderer import prepare_renderer
    from sadtalker.weights.loader import load_mapping, load_renderer

    golden = golden_render(args.windows)
    source = np.array(Image.open(GOLDEN_A / "source_256.png").convert("RGB"))
    models = load_renderer(args.checkpoints, 256, args.device, torch.float32)
    prepare_renderer(models.generator)  # as the worker does at load time
    mapping = load_mapping(args.checkpoints, "crop", args.device, torch.float32)
    if not args.no_warmup:
        render_golden(models, mapping, golden, source, "fp32")  # warm-up: kernel choice
    rows = []
    for precision in args.precisions:
        run = render_golden(models, mapping, golden, source, precision)
        rows.append(
            {
                "part": "renderer",
                "precision": precision,
                "against": "reference (golden A)",
                "generator_output": errors(run["generator"], golden["generator_output"]),
                "uint8_frames": errors(run["frames"], golden["final_frames"]),
            }
        )
    return rows


def check_enhancer(args: argparse.Namespace) -> list[dict]:
    from sadtalker.bundle import load_enhancer

    frames = golden_render(args.windows)["final_frames"]
    enhancer = load_enhancer(args.checkpoints, args.device, precision="fp32")
    reference = enhancer.restore(frames)
    rows = []
    for precision in [p for p in args.precisions if p != "fp32"]:
        enhancer.precision = precision
        restored = enhancer.restore(frames)
        rows.append(
            {
                "part": "enhancer",
                "precision": precision,
                "against": "fp32, same device",
                "uint8_frames": errors(np.asarray(restored), np.asarray(reference)),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from bench.benchmark import ensure_weights

    ensure_weights(args.checkpoints)
    rows = check_renderer(args)
    if args.enhancer:
        rows += check_enhancer(args)
    device = args.device + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
    print(f"device: {device}, torch {torch.__version__}")
    print("part | precision | against | generator max / mean abs | uint8 max / mean abs / share differing")
    for row in rows:
        gen = row.get("generator_output")
        gen_text = f"{gen['max']:.2e} / {gen['mean']:.2e}" if gen else "-"
        u8 = row["uint8_frames"]
        print(
            f"{row['part']} | {row['precision']} | {row['against']} | {gen_text} | "
            f"{u8['max']:.0f} / {u8['mean']:.3f} / {100 * u8['share_differing']:.2f} %"
        )
    if args.json:
        frames = len(golden_render(args.windows)["final_frames"])
        Path(args.json).write_text(
            json.dumps({"device": device, "torch": torch.__version__, "frames": frames, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
