"""``weights``: every worker weight file in one folder, the missing ones written by the checkpoint writer
(tests/support/checkpoints.py), each in its own process; the present ones reused."""

from __future__ import annotations

import argparse
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench.gpu.common import add_checkpoints, add_json, write_json

log = logging.getLogger(__name__)


def write_weight_file(name: str, folder: str) -> float:
    """Seconds to write weight file ``name`` into ``folder`` (run in a worker process)."""
    from tests.support import checkpoints as writer

    start = time.perf_counter()
    writer.write_file(name, folder)
    return time.perf_counter() - start


def weights(folder: str, jobs: int | None) -> dict[str, Any]:
    """Every worker weight file in ``folder``: the missing ones written by up to ``jobs`` processes."""
    from tests.support import checkpoints as writer

    start = time.perf_counter()
    missing = [n for n in writer.WORKER_FILES if not os.path.isfile(os.path.join(folder, n))]
    seconds: dict[str, float] = {}
    if missing:
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(missing)))
        log.info("generating %d weight file(s) into %s (%d processes)", len(missing), folder, jobs)
        with ProcessPoolExecutor(jobs) as pool:
            seconds = dict(zip(missing, pool.map(write_weight_file, missing, [folder] * len(missing)), strict=True))
    files = [
        {
            "name": n,
            "bytes": os.path.getsize(os.path.join(folder, n)),
            "generated": n in seconds,
            "seconds": round(seconds.get(n, 0.0), 2),
        }
        for n in writer.WORKER_FILES
    ]
    print(f"weights: {len(missing)} generated, {len(files) - len(missing)} reused, in {folder}")
    return {"checkpoints": folder, "files": files, "seconds": round(time.perf_counter() - start, 2)}


def run_weights(args: argparse.Namespace) -> int:
    write_json(args.json, weights(args.checkpoints, args.jobs))
    return 0


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wts = commands.add_parser("weights", help="generate or reuse every worker weight file")
    wts.add_argument("--jobs", type=int, default=None, help="processes (default: one per CPU core)")
    add_checkpoints(wts)
    add_json(wts)
    wts.set_defaults(run=run_weights)
