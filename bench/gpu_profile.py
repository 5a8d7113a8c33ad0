#!/usr/bin/env python3
"""The Python side of ``scripts/gpu_suite.sh``: versions, weights, a profile of one renderer batch and one GFPGAN
batch, the reference hook, and the suite's summary table. versions, weights, profile and reference write their
result to ``--json``; summary writes ``summary.json`` into the folder it reads.

Subcommands:
    versions  --json F            device, driver (nvidia-smi), Python, torch, CUDA and cuDNN versions, and which
                                  optional parts can run (dlib, facexlib, gfpgan)
    has       F WHAT              exit status 0 when the versions file F says WHAT is available
    weights   --checkpoints DIR   every worker weight file (tests/support/checkpoints.py), written in
                                  parallel processes where missing, reused where present
    profile   --checkpoints DIR   torch.profiler over one renderer batch and one GFPGAN batch: the most expensive
                                  kernels (ops on a CPU) with their share of the time, seconds per batch, and the
                                  achieved TFLOP/s (torch's FLOP counter, multiply-add = 2, as bench/benchmark.py)
    reference --reference DIR     the reference's generator (OpenTalker/SadTalker checkout) and GFPGAN network
                                  calls, timed on the same device
    summary   FOLDER              the one table of every JSON file the suite wrote there

Models are loaded as the worker loads them (``sadtalker.bundle.load_size_models`` and ``load_enhancer``); with
``--small``, tiny random networks of the same structure stand in, for testing the suite on a CPU.
torch is imported inside the subcommands that need it, so ``has`` and ``summary`` run without it.

Examples:
    python -m bench.gpu_profile profile --device cuda --render-dtype fp16 --json profile.json
    python -m bench.gpu_profile profile --device cpu --small --json profile.json
    python -m bench.gpu_profile summary .cache/gpu_suite/20261128-093000
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence
from tests.support import REPO_ROOT


from sadtalker.core.constants import PRECISIONS  # noqa: E402  (imports no torch)

DEFAULT_CHECKPOINTS = str(REPO_ROOT / ".cache" / "test_checkpoints")


def significant(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits (tiny test networks reach a few MFLOP/s, in TFLOP/s)."""
    return float(f"{value:.{digits}g}")


def write_json(path: Optional[str], data: Dict) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=1))


# ---- versions -------------------------------------------------------------------------------------------

def nvidia_smi() -> Dict:
    """GPU name, driver and memory from nvidia-smi, or why there is none."""
    if shutil.which("nvidia-smi") is None:
        return {"available": False, "reason": "nvidia-smi not found"}
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (subprocess.SubprocessError, OSError) as exc:
        return {"available": False, "reason": f"nvidia-smi failed: {exc}"}
    gpus = [dict(zip(("name", "driver", "memory"), (p.strip() for p in line.split(",")))) for line in out.splitlines()]
    return {"available": True, "gpus": gpus}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def can(check: Callable[[], object]) -> object:
    """True when ``check`` runs, else why not (the missing module, or the error)."""
    try:
        check()
        return True
    except ImportError as exc:
        return f"missing module {exc.name or exc}"
    except Exception as exc:  # noqa: BLE001 (any failure means: not available)
        return f"{type(exc).__name__}: {exc}"


def installed(*modules: str) -> Callable[[], None]:
    """A check that each of ``modules`` is installed (found, not imported: importing gfpgan takes seconds)."""
    def check() -> None:
        for module in modules:
            if importlib.util.find_spec(module) is None:
                raise ModuleNotFoundError(f"No module named {module!r}", name=module)
    return check


def dlib_finder() -> None:
    from sadtalker.weights.loader import dlib_predictor_path

    installed("dlib")()
    dlib_predictor_path()


def capabilities() -> Dict[str, object]:
    """What the suite's optional parts need: a face finder (dlib, or facexlib for replayed landmarks) and GFPGAN."""
    return {"dlib": can(dlib_finder), "facexlib": can(installed("facexlib")),
            "gfpgan": can(installed("gfpgan", "basicsr"))}


def versions(args: argparse.Namespace) -> Dict:
    """Interpreter, torch, CUDA, cuDNN, device, driver, and :func:`capabilities`."""
    report = {"python": sys.version.split()[0], "executable": sys.executable, "interpreter": args.interpreter,
              "cpu": cpu_model(), "cpu_count": os.cpu_count(), "nvidia_smi": nvidia_smi()}
    try:
        import torch
    except ImportError as exc:
        return {**report, "torch": None, "cuda_available": False, "reason": f"torch missing: {exc}"}
    cuda = torch.cuda.is_available()
    report.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=cuda,
                  cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                  device=f"cuda ({torch.cuda.get_device_name()})" if cuda else f"cpu ({report['cpu']})",
                  capabilities=capabilities())
    return report


def print_versions(report: Dict) -> None:
    smi = report["nvidia_smi"]
    gpus = "; ".join(f"{g['name']}, driver {g['driver']}, {g['memory']}" for g in smi.get("gpus", []))
    print(f"interpreter: {report['executable']} ({report['interpreter']}), Python {report['python']}")
    print(f"device: {report.get('device', '-')}; nvidia-smi: {gpus or smi.get('reason')}")
    print(f"torch {report.get('torch')}, CUDA {report.get('cuda')}, cuDNN {report.get('cudnn')}, "
          f"{report['cpu_count']} CPU cores ({report['cpu']})")
    for name, state in report.get("capabilities", {}).items():
        print(f"{name}: {'available' if state is True else state}")


def has(args: argparse.Namespace) -> int:
    """Exit status 0 when ``versions.json`` says ``args.what`` is available (torch, cuda, or a capability)."""
    report = json.loads(Path(args.versions).read_text())
    if args.what == "torch":
        return 0 if report.get("torch") else 1
    if args.what == "cuda":
        return 0 if report.get("cuda_available") else 1
    return 0 if report.get("capabilities", {}).get(args.what) is True else 1


# ---- weights --------------------------------------------------------------------------------------------

def write_weight_file(name: str, folder: str) -> float:
    from tests.support import checkpoints as writer

    start = time.perf_counter()
    writer.write_file(name, folder)
    return time.perf_counter() - start


def weights(args: argparse.Namespace) -> Dict:
    """Every worker weight file in ``args.checkpoints``: the missing ones written, each in its own process."""
    from tests.support import checkpoints as writer

    start = time.perf_counter()
    missing = [n for n in writer.WORKER_FILES if not os.path.isfile(os.path.join(args.checkpoints, n))]
    jobs = max(1, min(args.jobs or os.cpu_count() or 1, len(missing)))
    seconds = {}
    if missing:
        print(f"generating {len(missing)} weight file(s) into {args.checkpoints} ({jobs} processes)")
        with ProcessPoolExecutor(jobs) as pool:
            seconds = dict(zip(missing, pool.map(write_weight_file, missing, [args.checkpoints] * len(missing))))
    files = [{"name": n, "bytes": os.path.getsize(os.path.join(args.checkpoints, n)), "generated": n in seconds,
              "seconds": round(seconds.get(n, 0.0), 2)} for n in writer.WORKER_FILES]
    print(f"weights: {len(missing)} generated, {len(files) - len(missing)} reused, in {args.checkpoints}")
    return {"checkpoints": args.checkpoints, "files": files, "seconds": round(time.perf_counter() - start, 2)}


# ---- profile --------------------------------------------------------------------------------------------

def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(step: Callable[[], object], device, iters: int, warmup: int) -> float:
    """Mean wall seconds of ``step`` over ``iters`` calls after ``warmup`` calls, the device synchronised."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / iters


def counted_flops(step: Callable[[], object]) -> float:
    """FLOPs of one call of ``step`` (torch's FLOP counter, multiply-add = 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def kernel_profile(step: Callable[[], object], device, top: int) -> Dict:
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
    ranked = sorted(zip(events, self_us), key=lambda pair: -pair[1])[:top]
    return {"unit": "kernel" if cuda else "operator", "kernel_ms": significant(total / 1000),
            "launches": sum(e.count for e in events),
            "kernels": [{"name": e.key, "calls": e.count, "ms": round(us / 1000, 3), "share": round(us / total, 4)}
                        for e, us in ranked]}


def measure(name: str, step: Callable[[], object], items: int, device, args: argparse.Namespace) -> Dict:
    """Seconds per batch, items per second, FLOPs and TFLOP/s of ``step``, and its kernel profile.

    ``busy_share`` (CUDA only, else None): the profiled kernels' time over the timed wall time per batch; well
    below 1 means the GPU waits between kernels (launches, host work).
    """
    seconds = seconds_per_call(step, device, args.iters, args.warmup)
    flops = counted_flops(step)
    kernels = kernel_profile(step, device, args.top)
    busy = significant(kernels["kernel_ms"] / 1000 / seconds, 3) if device.type == "cuda" else None
    return {"part": name, "batch": items, "seconds_per_batch": significant(seconds),
            "per_second": significant(items / seconds), "gflop_per_batch": significant(flops / 1e9),
            "tflops": significant(flops / seconds / 1e12), "busy_share": busy, **kernels}


def renderer_models(args: argparse.Namespace, device):
    """The 256 renderer as the worker loads it, or the tiny one with ``--small``; and its image side."""
    if args.small:
        from sadtalker.kernels.renderer import prepare_renderer
        from sadtalker.render.dims import SMALL, SMALL_IMAGE_SIZE
        from sadtalker.render.models import build_renderer

        models = build_renderer(SMALL, device=str(device), seed=0)
        prepare_renderer(models.generator)
        return models, SMALL_IMAGE_SIZE
    from sadtalker.bundle import load_size_models

    return load_size_models(args.checkpoints, 256, device).renderer, 256


def profile_renderer(args: argparse.Namespace, device) -> Dict:
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

    def step():
        with torch.inference_mode(), precision_context(device, args.render_dtype):
            return render_frames(models, feature, kp_source, kp_driving)

    row = measure("renderer", step, args.batch_size, device, args)
    return {**row, "precision": args.render_dtype, "image_size": side}


def enhancer_model(args: argparse.Namespace, device):
    """GFPGAN as the worker loads it, or the tiny one with ``--small``."""
    from sadtalker.bundle import load_enhancer

    if not args.small:
        return load_enhancer(args.checkpoints, device, precision=args.enhancer_dtype)
    import torch
    from benchmark import SMALL_GFPGAN

    from sadtalker.enhance.gfpgan import EnhancerDims, build_gfpgan
    from sadtalker.enhance.stage import FaceEnhancer
    from sadtalker.kernels.enhancer import memory_format_for, prepare_enhancer

    dims = EnhancerDims(**SMALL_GFPGAN)
    torch.manual_seed(1)
    net = prepare_enhancer(build_gfpgan(dims, device).eval())
    return FaceEnhancer(net, dims, precision=args.enhancer_dtype, memory_format=memory_format_for(device))


def profile_enhancer(args: argparse.Namespace, device) -> Dict:
    """One batch of ``FaceEnhancer.restore_tensor`` on rendered-size faces (resize, GFPGAN, resize back)."""
    import torch

    enhancer = enhancer_model(args, device)
    side = 32 if args.small else 256  # the renderer's output side
    generator = torch.Generator().manual_seed(1)
    faces = torch.rand(args.enhancer_batch, 3, side, side, generator=generator).to(device)

    def step():
        with torch.inference_mode():
            return enhancer.restore_tensor(faces)

    row = measure("enhancer", step, args.enhancer_batch, device, args)
    return {**row, "precision": args.enhancer_dtype, "face_size": enhancer.dims.out_size}


def run_part(part: Callable[[argparse.Namespace, object], Dict], args: argparse.Namespace, device) -> Dict:
    """``part``'s row, or a row saying it was skipped because a module is missing."""
    try:
        return part(args, device)
    except ImportError as exc:
        return {"part": part.__name__.replace("profile_", ""), "skipped": f"missing module: {exc.name or exc}"}


def busy_text(row: Dict) -> str:
    return "" if row["busy_share"] is None else f", GPU busy {100 * row['busy_share']:.0f} %"


def print_kernels(row: Dict) -> None:
    if "skipped" in row:
        print(f"{row['part']}: skipped: {row['skipped']}")
        return
    print(f"{row['part']} ({row['precision']}, batch {row['batch']}): {1000 * row['seconds_per_batch']:.2f} ms per "
          f"batch, {row['per_second']} per second, {row['gflop_per_batch']} GFLOP per batch, {row['tflops']} TFLOP/s; "
          f"{row['launches']} {row['unit']}s, {row['kernel_ms']} ms of them{busy_text(row)}")
    print(f"  share | ms | calls | {row['unit']}")
    for k in row["kernels"]:
        name = k["name"] if len(k["name"]) <= 110 else k["name"][:107] + "..."
        print(f"  {100 * k['share']:5.1f} % | {k['ms']:.3f} | {k['calls']} | {name}")


def profile_both(args: argparse.Namespace) -> Dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [run_part(profile_renderer, args, device), run_part(profile_enhancer, args, device)]
    for row in rows:
        print_kernels(row)
    name = f"cuda ({torch.cuda.get_device_name()})" if device.type == "cuda" else "cpu"
    return {"device": name, "torch": torch.__version__, "small_networks": args.small, "rows": rows}


# ---- reference ------------------------------------------------------------------------------------------

def reference(args: argparse.Namespace) -> Dict:
    """The reference's renderer and GFPGAN network calls, timed on ``args.device`` as the reference makes them.

    - generator: the checkout's own ``OcclusionAwareSPADEGenerator`` and ``KPDetector`` (its ``facerender.yaml``)
      with our generated 256 weights, called as its ``make_animation`` calls it per batch (source image and both
      keypoint sets; the source is encoded again in every call), random keypoints;
    - GFPGAN: the gfpgan package's ``GFPGANv1Clean`` (which the reference's ``GFPGANer`` runs) with the generated
      v1.4 weights, one 512 px face per forward, fresh noise; the reference's face detection, warping and
      paste-back around it are not timed (with random weights its detector finds no face).

    Both in fp32 with torch's default flags, as the reference runs. Absent checkout: ``reference: not available``.
    """
    folder = Path(args.reference) if args.reference else None
    if folder is None or not (folder / "src" / "facerender").is_dir():
        where = f" ({folder} has no src/facerender)" if folder else ""
        return {"available": False, "reason": f"reference: not available{where}"}
    import torch

    device = torch.device(args.device)
    rows = [run_part(reference_generator, args, device), run_part(reference_gfpgan, args, device)]
    for row in rows:
        print(f"{row['part']}: " + (f"skipped: {row['skipped']}" if "skipped" in row else
                                     f"{1000 * row['seconds_per_batch']:.2f} ms per batch of {row['batch']}, "
                                     f"{row['per_second']} per second"))
    return {"available": True, "checkout": str(folder), "rows": rows}


def reference_generator(args: argparse.Namespace, device) -> Dict:
    import torch

    generator, kp_detector = reference_renderer(Path(args.reference), args.checkpoints, device)
    with torch.inference_mode():
        source = torch.rand(args.batch_size, 3, 256, 256, device=device)
        kp_source = kp_detector(source)
        kp_driving = {"value": kp_source["value"] + 0.01}

    def step():
        with torch.inference_mode():
            return generator(source, kp_source=kp_source, kp_driving=kp_driving)

    seconds = seconds_per_call(step, device, args.iters, args.warmup)
    return {"part": "reference generator", "precision": "fp32", "batch": args.batch_size,
            "seconds_per_batch": significant(seconds), "per_second": significant(args.batch_size / seconds)}


def reference_renderer(folder: Path, checkpoints: str, device):
    """The reference's OcclusionAwareSPADEGenerator and KPDetector from its own code and yaml, our 256 weights."""
    import yaml
    from safetensors.torch import load_file

    sys.path.insert(0, str(folder))
    from src.facerender.modules.generator import OcclusionAwareSPADEGenerator
    from src.facerender.modules.keypoint_detector import KPDetector

    config = yaml.safe_load((folder / "src" / "config" / "facerender.yaml").read_text())["model_params"]
    generator = OcclusionAwareSPADEGenerator(**config["generator_params"], **config["common_params"])
    kp_detector = KPDetector(**config["kp_detector_params"], **config["common_params"])
    state = load_file(os.path.join(checkpoints, "SadTalker_V0.0.2_256.safetensors"))
    for prefix, net in (("generator.", generator), ("kp_extractor.", kp_detector)):
        net.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return generator.to(device).eval(), kp_detector.to(device).eval()


def reference_gfpgan(args: argparse.Namespace, device) -> Dict:
    import torch

    from sadtalker.weights.loader import load_gfpgan

    net = load_gfpgan(args.checkpoints, device)  # the package's network, without our inference path
    face = torch.rand(1, 3, 512, 512, device=device) * 2 - 1

    def step():
        with torch.inference_mode():
            return net(face, return_rgb=False, randomize_noise=True)

    seconds = seconds_per_call(step, device, args.iters, args.warmup)
    return {"part": "reference gfpgan", "precision": "fp32", "batch": 1, "seconds_per_batch": significant(seconds),
            "per_second": significant(1 / seconds)}


# ---- summary --------------------------------------------------------------------------------------------

def errors_text(row: Dict) -> str:
    gen, u8 = row.get("generator_output"), row["uint8_frames"]
    text = f"gen {gen['max']:.1e} / {gen['mean']:.1e}, " if gen else ""
    return text + f"uint8 {u8['max']:.0f} / {u8['mean']:.3f} / {100 * u8['share_differing']:.1f} %"


def load(folder: Path, name: str) -> Optional[Dict]:
    path = folder / name
    return json.loads(path.read_text()) if path.is_file() else None


def summary_rows(folder: Path) -> List[Dict]:
    """One row per measurement in ``folder``'s JSON files, and one per step that did not run."""
    rows = []
    steps = load(folder, "steps.json") or []
    for step in steps:
        if step["status"] != "ok":
            rows.append({"case": step["step"], "note": f"{step['status']}: {step['detail']}"})
    precision = load(folder, "precision.json")
    for row in (precision or {}).get("rows", []):
        rows.append({"device": precision["device"], "case": f"precision {row['part']} {row['precision']}",
                     "errors": errors_text(row), "note": f"vs {row['against']}, {precision['frames']} frames"})
    for path in sorted(folder.glob("bench_*.json")):
        bench = json.loads(path.read_text())
        for row in bench["rows"]:
            rows.append({"device": bench["device"], "fps": row["fps"], "tflops": row.get("render_tflops"),
                         "case": f"{path.stem} {row['size']} {row['preprocess']} {row['enhancer']}",
                         "note": f"render {bench['render_dtype']} b{bench['batch_size']}, enhancer "
                                 f"{bench['enhancer_dtype']}, {row['frames']} frames, render fps "
                                 f"{row['render_fps']}, peak GPU {row.get('peak_gpu_mb', '-')} MB"})
    profile = load(folder, "profile.json")
    for row in (profile or {}).get("rows", []):
        if "skipped" in row:
            rows.append({"device": profile["device"], "case": f"profile {row['part']}", "note": row["skipped"]})
            continue
        top = row["kernels"][0] if row["kernels"] else {"name": "-", "share": 0}
        rows.append({"device": profile["device"], "case": f"profile {row['part']} {row['precision']} b{row['batch']}",
                     "fps": row["per_second"], "tflops": row["tflops"],
                     "note": f"{row['launches']} {row['unit']}s{busy_text(row)}, top {100 * top['share']:.0f} %: "
                             f"{top['name'][:48]}"})
    ref = load(folder, "reference.json")
    if ref is not None and not ref["available"]:
        rows.append({"case": "reference", "note": ref["reason"]})
    for row in (ref or {}).get("rows", []):
        rows.append({"device": (profile or {}).get("device"), "case": row["part"], "fps": row.get("per_second"),
                     "note": f"skipped: {row['skipped']}" if "skipped" in row else
                     f"{row['precision']} b{row['batch']}, network calls only"})
    return rows


def print_table(rows: List[Dict]) -> None:
    columns = [("device", "device"), ("case", "case"), ("fps", "fps"), ("tflops", "TFLOP/s"),
               ("errors", "precision errors (max / mean)"), ("note", "note")]
    cells = [[h for _, h in columns]] + [[str(r.get(k) if r.get(k) is not None else "-") for k, _ in columns]
                                          for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = [" | ".join(c[i].ljust(widths[i]) for i in range(len(columns))).rstrip() for c in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    print("\n".join(lines))


def summary(args: argparse.Namespace) -> Dict:
    folder = Path(args.folder)
    rows = summary_rows(folder)
    versions_report = load(folder, "versions.json") or {}
    report = {"device": versions_report.get("device"), "torch": versions_report.get("torch"),
              "steps": load(folder, "steps.json") or [], "rows": rows}
    write_json(str(folder / "summary.json"), report)
    print_table(rows)
    return report


# ---- command line ---------------------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    ver = commands.add_parser("versions", help="device, driver, Python, torch, CUDA, cuDNN")
    ver.add_argument("--interpreter", default="", help="how the suite chose this interpreter")
    have = commands.add_parser("has", help="exit 0 when versions.json says WHAT is available")
    have.add_argument("versions", help="the versions subcommand's JSON file")
    have.add_argument("what", choices=["torch", "cuda", "dlib", "facexlib", "gfpgan"])
    wts = commands.add_parser("weights", help="generate or reuse every worker weight file")
    wts.add_argument("--jobs", type=int, default=None, help="processes (default: one per CPU core)")
    prof = commands.add_parser("profile", help="one renderer batch and one GFPGAN batch")
    prof.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    prof.add_argument("--small", action="store_true", help="tiny random networks of the same structure")
    prof.add_argument("--batch-size", type=int, default=16, help="frames per renderer batch")
    prof.add_argument("--enhancer-batch", type=int, default=8, help="faces per GFPGAN batch")
    prof.add_argument("--render-dtype", default="fp16", choices=PRECISIONS)
    prof.add_argument("--enhancer-dtype", default="fp16", choices=PRECISIONS)
    prof.add_argument("--iters", type=int, default=5, help="timed batches (after the warm-up)")
    prof.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    prof.add_argument("--top", type=int, default=15, help="kernels listed per part")
    prof.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ref = commands.add_parser("reference", help="the reference's generator and GFPGAN calls, timed")
    ref.add_argument("--reference", default=None, help="OpenTalker/SadTalker checkout (absent: not available)")
    ref.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    ref.add_argument("--batch-size", type=int, default=2, help="frames per generator call (the reference's default)")
    ref.add_argument("--iters", type=int, default=5)
    ref.add_argument("--warmup", type=int, default=2)
    for sub in (wts, prof, ref):
        sub.add_argument("--checkpoints", default=DEFAULT_CHECKPOINTS, help="weights folder")
    for sub in (ver, wts, prof, ref):
        sub.add_argument("--json", default=None, help="write the result to this JSON file")
    summ = commands.add_parser("summary", help="print the suite's table from the JSON files in FOLDER")
    summ.add_argument("folder")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.command == "has":
        return has(args)
    if args.command == "versions":
        report = versions(args)
        print_versions(report)
    elif args.command == "weights":
        report = weights(args)
    elif args.command == "profile":
        report = profile_both(args)
    elif args.command == "reference":
        report = reference(args)
        if not report["available"]:
            print(report["reason"])
    else:
        summary(args)
        return 0
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
