"""What the subcommands share: options, the JSON result, timing on a device, and skipped parts."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support import REPO_ROOT

if TYPE_CHECKING:  # torch stays unimported until a subcommand needs it
    import torch

DEFAULT_CHECKPOINTS = str(REPO_ROOT / ".cache" / "test_checkpoints")
Row = dict[str, Any]  # one measured part (or why it was skipped), as written to the JSON files
Part = Callable[[argparse.Namespace, "torch.device"], Row]


def add_checkpoints(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoints", default=DEFAULT_CHECKPOINTS, help="weights folder")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", default=None, help="write the result to this JSON file")


def write_json(path: str | None, data: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=1))


def significant(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits (tiny test networks reach a few MFLOP/s, in TFLOP/s)."""
    return float(f"{value:.{digits}g}")


def synchronize(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(step: Callable[[], object], device: torch.device, iters: int, warmup: int) -> float:
    """Mean wall seconds of ``step`` over ``iters`` calls after ``warmup`` calls, the device synchronised."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / iters


def run_part(part: Part, name: str, args: argparse.Namespace, device: torch.device) -> Row:
    """``part``'s row, or a row named ``name`` saying it was skipped because a module is missing."""
    try:
        return part(args, device)
    except ImportError as exc:
        return {"part": name, "skipped": f"missing module: {exc.name or exc}"}
