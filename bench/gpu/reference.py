"""``reference``: the reference's renderer and GFPGAN network calls, timed on the same device as ours.

The reference checkout (OpenTalker/SadTalker) is imported as its own top-level package ``src``, so its folder must
be on ``PYTHONPATH`` for this subcommand (``scripts/gpu_suite.sh`` sets it for this step only); the import path
is never changed at run time. ``--reference`` names the folder, and the ``src.facerender`` found must come from it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.gpu.common import Row, add_checkpoints, add_json, run_part, seconds_per_call, significant, write_json

if TYPE_CHECKING:
    import torch
    from torch import nn

RENDERER_FILE = "SadTalker_V0.0.2_256.safetensors"  # our generated 256 weights, in the official layout


def unavailable(folder: Path | None) -> str | None:
    """Why the reference cannot run from ``folder`` (None when it can): no folder, no ``src/facerender`` in it, or
    its ``src.facerender`` not the one Python imports."""
    if folder is None:
        return "reference: not available"
    if not (folder / "src" / "facerender").is_dir():
        return f"reference: not available ({folder} has no src/facerender)"
    try:
        spec = importlib.util.find_spec("src.facerender")
    except ImportError:
        spec = None
    found = [Path(p).resolve() for p in (spec.submodule_search_locations or [])] if spec else []
    if (folder / "src" / "facerender").resolve() not in found:
        return (
            f"reference: not available (src.facerender is not imported from {folder}: run with "
            f"PYTHONPATH={folder}, as scripts/gpu_suite.sh does)"
        )
    return None


def reference_renderer(folder: Path, checkpoints: str, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """The reference's OcclusionAwareSPADEGenerator and KPDetector from its own code and yaml, our 256 weights."""
    import yaml
    from safetensors.torch import load_file

    # The reference checkout's own modules, on PYTHONPATH for this step only (no stubs, absent when type-checking).
    from src.facerender.modules.generator import OcclusionAwareSPADEGenerator  # type: ignore[import-not-found]
    from src.facerender.modules.keypoint_detector import KPDetector  # type: ignore[import-not-found]

    config = yaml.safe_load((folder / "src" / "config" / "facerender.yaml").read_text())["model_params"]
    generator = OcclusionAwareSPADEGenerator(**config["generator_params"], **config["common_params"])
    kp_detector = KPDetector(**config["kp_detector_params"], **config["common_params"])
    state = load_file(os.path.join(checkpoints, RENDERER_FILE))
    for prefix, net in (("generator.", generator), ("kp_extractor.", kp_detector)):
        net.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    return generator.to(device).eval(), kp_detector.to(device).eval()


def reference_generator(args: argparse.Namespace, device: torch.device) -> Row:
    """The reference generator called as its ``make_animation`` calls it per batch: source image and both keypoint
    sets (the source is encoded again in every call), random keypoints."""
    import torch

    generator, kp_detector = reference_renderer(Path(args.reference), args.checkpoints, device)
    with torch.inference_mode():
        source = torch.rand(args.batch_size, 3, 256, 256, device=device)
        kp_source = kp_detector(source)
        kp_driving = {"value": kp_source["value"] + 0.01}

    def step() -> object:
        with torch.inference_mode():
            return generator(source, kp_source=kp_source, kp_driving=kp_driving)

    seconds = seconds_per_call(step, device, args.iters, args.warmup)
    return {
        "part": "reference generator",
        "precision": "fp32",
        "batch": args.batch_size,
        "seconds_per_batch": significant(seconds),
        "per_second": significant(args.batch_size / seconds),
    }


def reference_gfpgan(args: argparse.Namespace, device: torch.device) -> Row:
    """The gfpgan package's ``GFPGANv1Clean`` (which the reference's ``GFPGANer`` runs), one 512 px face per
    forward, fresh noise."""
    import torch

    from sadtalker.weights.loader import load_gfpgan

    net = load_gfpgan(args.checkpoints, device)  # the package's network, without our inference path
    face = torch.rand(1, 3, 512, 512, device=device) * 2 - 1

    def step() -> object:
        with torch.inference_mode():
            return net(face, return_rgb=False, randomize_noise=True)

    seconds = seconds_per_call(step, device, args.iters, args.warmup)
    return {
        "part": "reference gfpgan",
        "precision": "fp32",
        "batch": 1,
        "seconds_per_batch": significant(seconds),
        "per_second": significant(1 / seconds),
    }


def print_row(row: Row) -> None:
    if "skipped" in row:
        print(f"{row['part']}: skipped: {row['skipped']}")
    else:
        print(
            f"{row['part']}: {1000 * row['seconds_per_batch']:.2f} ms per batch of {row['batch']}, "
            f"{row['per_second']} per second"
        )


def reference(args: argparse.Namespace) -> dict[str, Any]:
    """The reference's renderer and GFPGAN network calls, timed on ``args.device`` as the reference makes them.

    The reference's face detection, warping and paste-back around GFPGAN are not timed (with random weights its
    detector finds no face). Both in fp32 with torch's default flags, as the reference runs.
    """
    folder = Path(args.reference) if args.reference else None
    reason = unavailable(folder)
    if reason is not None:
        return {"available": False, "reason": reason}
    import torch

    device = torch.device(args.device)
    rows = [
        run_part(reference_generator, "reference generator", args, device),
        run_part(reference_gfpgan, "reference gfpgan", args, device),
    ]
    for row in rows:
        print_row(row)
    return {"available": True, "checkout": str(folder), "rows": rows}


def run_reference(args: argparse.Namespace) -> int:
    report = reference(args)
    if not report["available"]:
        print(report["reason"])
    write_json(args.json, report)
    return 0


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ref = commands.add_parser("reference", help="the reference's generator and GFPGAN calls, timed")
    ref.add_argument(
        "--reference", default=None, help="OpenTalker/SadTalker checkout, also on PYTHONPATH (absent: not available)"
    )
    ref.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    ref.add_argument("--batch-size", type=int, default=2, help="frames per generator call (the reference's default)")
    ref.add_argument("--iters", type=int, default=5)
    ref.add_argument("--warmup", type=int, default=2)
    add_checkpoints(ref)
    add_json(ref)
    ref.set_defaults(run=run_reference)
