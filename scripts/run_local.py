"""Run one job through the worker on this machine and write the video to a file (what ``make run`` runs).

Usage: ``python scripts/run_local.py [JOB.json] [--out DIR] [--id ID]``

- ``JOB.json``: a RunPod job body, ``{"input": {...}}`` (default: ``test_input.json`` in the repository root).
- ``--out``: where the video goes (default ``output/``), as ``<DIR>/<job id>.mp4``.
- ``--id``: the job id (default: the file's ``"id"``, else ``local-<UTC date and time>``). It names the video file
  and, with R2 configured, the object key, exactly as a RunPod job id does.

It does what ``python handler.py`` does at start-up, in this process: ``Settings.from_env()``, the start-up
checks (``sadtalker.worker.startup.check_or_exit``: missing weights stop it with the download command), the models
(``sadtalker.bundle.load_models``), then one call of ``handler.handler(job)``. The result JSON goes to stdout with
``video_base64`` replaced by ``video_file``, the path of the MP4 written from it; with R2 configured the video is in
the bucket and ``video_url`` is printed as it is. Logs go to stderr.

Exit status: 0 the video was made; 1 the start-up checks or the job failed (the error is printed); 2 a bad job file
or environment. ``python handler.py`` stays the RunPod entry point.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]

log = logging.getLogger("run_local")


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one job through the worker and write the video to a file.")
    parser.add_argument(
        "job",
        nargs="?",
        default=str(REPO / "test_input.json"),
        help='job JSON, {"input": {...}} (default: test_input.json)',
    )
    parser.add_argument("--out", default="output", help="folder for <job id>.mp4 (default: output/)")
    parser.add_argument("--id", dest="job_id", default=None, help="job id (default: the file's id, else local-<time>)")
    return parser.parse_args(argv)


def read_job(path: str) -> Dict[str, Any]:
    """The job object from ``path``; ValueError with a readable reason when it is not ``{"input": {...}}``."""
    try:
        with open(path, encoding="utf-8") as handle:
            job = json.load(handle)
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None
    if not isinstance(job, dict) or not isinstance(job.get("input"), dict):
        raise ValueError(f'{path} must hold a job object, {{"input": {{...}}}}')
    return job


def write_video(result: Dict[str, Any], out_dir: Path, job_id: str) -> Dict[str, Any]:
    """The result with ``video_base64`` written to ``out_dir/<job id>.mp4`` and replaced by ``video_file``."""
    if "video_base64" not in result:
        return result
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{job_id}.mp4"
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(base64.b64decode(result["video_base64"]))
    os.replace(partial, path)
    shown = {key: value for key, value in result.items() if key != "video_base64"}
    return {"success": shown.pop("success"), "video_file": str(path), "video_bytes": path.stat().st_size, **shown}


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from sadtalker.worker.logs import configure_logging

    configure_logging()
    try:
        job = read_job(args.job)
    except ValueError as error:
        print(f"run_local: {error}", file=sys.stderr)
        return 2

    import handler
    from sadtalker.worker.settings import Settings

    try:
        settings = Settings.from_env()
    except ValueError as error:
        print(f"run_local: bad environment: {error}", file=sys.stderr)
        return 2
    from sadtalker.worker.startup import check_or_exit

    check_or_exit(settings)  # logs every missing weight file and the download command, exits 1
    from sadtalker.bundle import load_models

    handler._SETTINGS = settings  # what handler.main() sets before RunPod's job loop starts
    handler._BUNDLE = load_models(settings)

    job_id = handler._safe_job_id(args.job_id or job.get("id") or time.strftime("local-%Y%m%d-%H%M%S", time.gmtime()))
    result = handler.handler({**job, "id": job_id})
    shown = write_video(result, Path(args.out), job_id)
    print(json.dumps(shown, indent=2))
    if not result.get("success"):
        print(f"run_local: the job failed: {result.get('error')}", file=sys.stderr)
        return 1
    where = shown.get("video_file") or shown.get("video_url")
    print(
        f"run_local: video: {where} ({shown.get('duration_seconds')} s, {shown.get('width')}x"
        f"{shown.get('height')}, {shown.get('processing_time_seconds')} s to make)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
