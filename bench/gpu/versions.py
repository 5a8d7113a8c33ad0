"""``versions``: interpreter, torch, CUDA, cuDNN, device and driver, and which optional parts can run; ``has``: one
answer from that file, as an exit status for the shell script."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.gpu.common import add_json, write_json

WHATS = ("torch", "cuda", "dlib", "facexlib", "gfpgan")  # what ``has`` answers


def nvidia_smi() -> dict[str, Any]:
    """GPU name, driver and memory from nvidia-smi, or why there is none."""
    if shutil.which("nvidia-smi") is None:
        return {"available": False, "reason": "nvidia-smi not found"}
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (subprocess.SubprocessError, OSError) as exc:
        return {"available": False, "reason": f"nvidia-smi failed: {exc}"}
    fields = ("name", "driver", "memory")
    gpus = [dict(zip(fields, (p.strip() for p in line.split(",")), strict=False)) for line in out.splitlines()]
    return {"available": True, "gpus": gpus}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def can(check: Callable[[], object]) -> bool | str:
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


def capabilities() -> dict[str, bool | str]:
    """What the suite's optional parts need: a face finder (dlib, or facexlib for replayed landmarks) and GFPGAN."""
    return {
        "dlib": can(dlib_finder),
        "facexlib": can(installed("facexlib")),
        "gfpgan": can(installed("gfpgan", "basicsr")),
    }


def versions(interpreter: str) -> dict[str, Any]:
    """Interpreter, torch, CUDA, cuDNN, device, driver, and :func:`capabilities`."""
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "interpreter": interpreter,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "nvidia_smi": nvidia_smi(),
    }
    try:
        import torch
    except ImportError as exc:
        return {**report, "torch": None, "cuda_available": False, "reason": f"torch missing: {exc}"}
    cuda = torch.cuda.is_available()
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    device = f"cuda ({torch.cuda.get_device_name()})" if cuda else f"cpu ({report['cpu']})"
    report.update(
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cuda_available=cuda,
        cudnn=cudnn,
        device=device,
        capabilities=capabilities(),
    )
    return report


def print_versions(report: dict[str, Any]) -> None:
    smi = report["nvidia_smi"]
    gpus = "; ".join(f"{g['name']}, driver {g['driver']}, {g['memory']}" for g in smi.get("gpus", []))
    print(f"interpreter: {report['executable']} ({report['interpreter']}), Python {report['python']}")
    print(f"device: {report.get('device', '-')}; nvidia-smi: {gpus or smi.get('reason')}")
    print(
        f"torch {report.get('torch')}, CUDA {report.get('cuda')}, cuDNN {report.get('cudnn')}, "
        f"{report['cpu_count']} CPU cores ({report['cpu']})"
    )
    for name, state in report.get("capabilities", {}).items():
        print(f"{name}: {'available' if state is True else state}")


def has(report: dict[str, Any], what: str) -> bool:
    """Whether the ``versions`` report says ``what`` (torch, cuda, or a capability) is available."""
    if what == "torch":
        return bool(report.get("torch"))
    if what == "cuda":
        return bool(report.get("cuda_available"))
    return report.get("capabilities", {}).get(what) is True


def run_versions(args: argparse.Namespace) -> int:
    report = versions(args.interpreter)
    print_versions(report)
    write_json(args.json, report)
    return 0


def run_has(args: argparse.Namespace) -> int:
    return 0 if has(json.loads(Path(args.versions).read_text()), args.what) else 1


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ver = commands.add_parser("versions", help="device, driver, Python, torch, CUDA, cuDNN")
    ver.add_argument("--interpreter", default="", help="how the suite chose this interpreter")
    add_json(ver)
    ver.set_defaults(run=run_versions)
    have = commands.add_parser("has", help="exit 0 when versions.json says WHAT is available")
    have.add_argument("versions", help="the versions subcommand's JSON file")
    have.add_argument("what", choices=WHATS)
    have.set_defaults(run=run_has)
