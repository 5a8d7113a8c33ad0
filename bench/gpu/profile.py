"""``profile``: torch.profiler over one renderer batch and one GFPGAN batch, as the worker loads them (or the small
networks of tests/support/smallbundle.py with ``--small``): seconds per batch, TFLOP/s (torch's FLOP counter,
multiply-add = 2) and the most expensive kernels (operators on a CPU) with their share of the time."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bench.gpu.common import (
    Row,
    add_checkpoints,
    add_json,
    run_part,
    seconds_per_call,
    significant,
    synchronize,
    write_json,
)
from sadtalker.core.constants import PRECISIONS  # imports no torch

if TYPE_CHECKING:
    import torch

    from sadtalker.enhance.stage import FaceEnhancer
    from sadtalker.render.models import RendererModels


def counted_flops(step: Callable[[], object]) -> float:
    """FLOPs of one call of ``step`` (torch's FLOP counter, multiply-add = 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def kernel_profile(step: Callable[[], object], device: torch.device, top: int) -> Row:
    """One profiled call of ``step``: its ``top`` most expensive entries with their share of the time, the time of
    all of them, and how many were launched.

    On CUDA the entries are the GPU kernels (and copies), by their own device time; on a CPU, the operators, by
    self CPU time.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        step()
        synchronize(device)
    if cuda:
        events = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA]
        self_us = [e.self_device_time_total for e in events]
    else:
        events = list(prof.key_averages())
        self_us = [e.self_cpu_time_total for e in events]
    total = sum(self_us) or 1.0
    ranked = sorted(zip(events, self_us, strict=True), key=lambda pair: -pair[1])[:top]
    kernels = [
        {"name": e.key, "calls": e.count, "ms": round(us / 1000, 3), "share": round(us / total, 4)} for e, us in ranked
    ]
    return {
        "unit": "kernel" if cuda else "operator",
        "kernel_ms": significant(total / 1000),
        "launches": sum(e.count for e in events),
        "kernels": kernels,
    }


def measure(name: str, step: Callable[[], object], items: int, device: torch.device, args: argparse.Namespace) -> Row:
    """Seconds per batch, items per second, FLOPs and TFLOP/s of ``step``, and its kernel profile.

    ``busy_share`` (CUDA only, else None): the profiled kernels' time over the timed wall time per batch; well
    below 1 means the GPU waits between kernels (launches, host work).
    """
    seconds = seconds_per_call(step, device, args.iters, args.warmup)
    flops = counted_flops(step)
    kernels = kernel_profile(step, device, args.top)
    busy = significant(kernels["kernel_ms"] / 1000 / seconds, 3) if device.type == "cuda" else None
    return {
        "part": name,
        "batch": items,
        "seconds_per_batch": significant(seconds),
        "per_second": significant(items / seconds),
        "gflop_per_batch": significant(flops / 1e9),
        "tflops": significant(flops / seconds / 1e12),
        "busy_share": busy,
        **kernels,
    }


def renderer_models(args: argparse.Namespace, device: torch.device) -> tuple[RendererModels, int]:
    """The 256 renderer as the worker loads it, or the small one with ``--small``; and its image side."""
    if args.small:
        from sadtalker.render.dims import SMALL_IMAGE_SIZE
        from tests.support.smallbundle import small_renderer

        return small_renderer(device), SMALL_IMAGE_SIZE
    from sadtalker.bundle import load_size_models

    return load_size_models(args.checkpoints, 256, device).renderer, 256


def profile_renderer(args: argparse.Namespace, device: torch.device) -> Row:
    """One batch of ``render_frames`` (dense motion + decoder) under the ``--render-dtype`` precision region."""
    import torch

    from sadtalker.core.precision import precision_context
    from sadtalker.render.stage import image_to_tensor, render_frames

    models, side = renderer_models(args, device)
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (side, side, 3), dtype=torch.uint8, generator=generator).numpy()
    with torch.inference_mode(), precision_context(device, args.render_dtype):
        source = image_to_tensor(image, device, models.dtype)
        kp_source = models.kp_extractor(source)
        feature = models.generator.encode(source)
        shift = 0.01 * torch.randn(args.batch_size, *kp_source.shape[1:], generator=generator)
        kp_driving = kp_source.expand(args.batch_size, -1, -1) + shift.to(device, kp_source.dtype)

    def step() -> object:
        with torch.inference_mode(), precision_context(device, args.render_dtype):
            return render_frames(models, feature, kp_source, kp_driving)

    row = measure("renderer", step, args.batch_size, device, args)
    return {**row, "precision": args.render_dtype, "image_size": side}


def enhancer_model(args: argparse.Namespace, device: torch.device) -> tuple[FaceEnhancer, int]:
    """GFPGAN as the worker loads it, or the small one with ``--small``; and the side of the faces the renderer
    gives it."""
    if args.small:
        from sadtalker.render.dims import SMALL_IMAGE_SIZE
        from tests.support.smallbundle import small_enhancer

        return small_enhancer(device, precision=args.enhancer_dtype), SMALL_IMAGE_SIZE
    from sadtalker.bundle import load_enhancer

    return load_enhancer(args.checkpoints, device, precision=args.enhancer_dtype), 256


def profile_enhancer(args: argparse.Namespace, device: torch.device) -> Row:
    """One batch of ``FaceEnhancer.restore_tensor`` on rendered-size faces (resize, GFPGAN, resize back)."""
    import torch

    enhancer, side = enhancer_model(args, device)
    generator = torch.Generator().manual_seed(1)
    faces = torch.rand(args.enhancer_batch, 3, side, side, generator=generator).to(device)

    def step() -> object:
        with torch.inference_mode():
            return enhancer.restore_tensor(faces)

    row = measure("enhancer", step, args.enhancer_batch, device, args)
    return {**row, "precision": args.enhancer_dtype, "face_size": enhancer.dims.out_size}


def busy_text(row: Row) -> str:
    return "" if row["busy_share"] is None else f", GPU busy {100 * row['busy_share']:.0f} %"


def print_kernels(row: Row) -> None:
    if "skipped" in row:
        print(f"{row['part']}: skipped: {row['skipped']}")
        return
    print(
        f"{row['part']} ({row['precision']}, batch {row['batch']}): {1000 * row['seconds_per_batch']:.2f} ms per "
        f"batch, {row['per_second']} per second, {row['gflop_per_batch']} GFLOP per batch, {row['tflops']} TFLOP/s; "
        f"{row['launches']} {row['unit']}s, {row['kernel_ms']} ms of them{busy_text(row)}"
    )
    print(f"  share | ms | calls | {row['unit']}")
    for k in row["kernels"]:
        name = k["name"] if len(k["name"]) <= 110 else k["name"][:107] + "..."
        print(f"  {100 * k['share']:5.1f} % | {k['ms']:.3f} | {k['calls']} | {name}")


def profile_both(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [run_part(profile_renderer, "renderer", args, device), run_part(profile_enhancer, "enhancer", args, device)]
    for row in rows:
        print_kernels(row)
    name = f"cuda ({torch.cuda.get_device_name()})" if device.type == "cuda" else "cpu"
    return {"device": name, "torch": torch.__version__, "small_networks": args.small, "rows": rows}


def run_profile(args: argparse.Namespace) -> int:
    write_json(args.json, profile_both(args))
    return 0


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prof = commands.add_parser("profile", help="one renderer batch and one GFPGAN batch")
    prof.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    prof.add_argument("--small", action="store_true", help="the small test networks (tests/support/smallbundle.py)")
    prof.add_argument("--batch-size", type=int, default=16, help="frames per renderer batch")
    prof.add_argument("--enhancer-batch", type=int, default=8, help="faces per GFPGAN batch")
    prof.add_argument("--render-dtype", default="fp16", choices=PRECISIONS)
    prof.add_argument("--enhancer-dtype", default="fp16", choices=PRECISIONS)
    prof.add_argument("--iters", type=int, default=5, help="timed batches (after the warm-up)")
    prof.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    prof.add_argument("--top", type=int, default=15, help="kernels listed per part")
    prof.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    add_checkpoints(prof)
    add_json(prof)
    prof.set_defaults(run=run_profile)
