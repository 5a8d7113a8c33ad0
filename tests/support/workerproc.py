"""The worker as a process, for tests that go through the runpod SDK itself.

``python -m tests.support.workerproc --rp_serve_api --rp_api_port N`` starts the real handler under the SDK's local API
server, with ``sadtalker.pipeline`` replaced by :func:`fake_animate` (a real 1 s MP4 made by ffmpeg, no model), so
what the SDK logs and returns can be checked in seconds. With ``SMALL_MODELS=<checkpoints folder>`` it runs the
real pipeline on the small bundle of ``tests/support/smallbundle.py`` instead, and with ``RENDER_GATE_DIR`` a test
can hold a job mid-render (:func:`install_render_gate`). The helpers below also serve the in-process
tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Dict, Iterator

from tests.support import REPO_ROOT


def write_test_video(path, seconds: float = 1.0) -> None:
    """A real 64x64, 25 fps H.264 MP4 without sound, ``seconds`` long."""
    from sadtalker.output.ffmpeg import ffmpeg_exe

    subprocess.run(
        [
            ffmpeg_exe(),
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x64:rate=25",
            "-t",
            str(seconds),
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )


def fake_animate(bundle, settings, request, workdir, hooks):
    """Stands in for ``sadtalker.pipeline.animate``: reports progress and writes a real 1 s MP4."""
    from sadtalker.core.contract import Animation

    hooks.progress("render", 1, 1, 50.0)
    path = Path(workdir) / f"{request.name}.mp4"
    write_test_video(path)
    return Animation(
        path=str(path),
        width=64,
        height=64,
        fps=25,
        frames=25,
        chunks=1,
        duration_seconds=1.0,
        seed=7,
        timings={"render": 0.1},
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(worker: subprocess.Popen, port: int, log_path: Path, limit_s: float = 300.0) -> None:
    """Until the worker accepts connections (start-up checks + model loading); fails if it exits first."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert worker.poll() is None, f"the worker exited: {log_path.read_text()[-3000:]}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"the worker did not listen within {limit_s} s: {log_path.read_text()[-3000:]}")


@contextlib.contextmanager
def serving_worker(env: Dict[str, str], log_path: Path, limit_s: float) -> Iterator[str]:
    """``python -m tests.support.workerproc --rp_serve_api`` on a free loopback port with ``env`` (the ``RUNPOD_*``
    and ``R2_*`` variables of this process left out), its output in ``log_path``; yields its base URL and stops
    it after."""
    port = free_port()
    base = {key: value for key, value in os.environ.items() if not key.startswith(("RUNPOD_", "R2_"))}
    argv = [sys.executable, "-m", "tests.support.workerproc", "--rp_serve_api", "--rp_api_host", "127.0.0.1"]
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [*argv, "--rp_api_port", str(port)],
            cwd=REPO_ROOT,
            env={**base, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(process, port, log_path, limit_s=limit_s)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)


def install_render_gate(gate_dir: Path) -> None:
    """While ``gate_dir/armed`` exists, a job's first written frames touch ``gate_dir/started`` and wait there until
    ``gate_dir/release`` exists: a test holds a job mid-render for as long as it needs, whatever the machine's load."""
    from sadtalker.output.video import VideoWriter

    original = VideoWriter.write

    def gated_write(self, frames):
        if (gate_dir / "armed").exists():
            (gate_dir / "started").touch()
            while not (gate_dir / "release").exists():
                time.sleep(0.05)
        return original(self, frames)

    setattr(VideoWriter, "write", gated_write)  # noqa: B010  (a stand-in method, patched for this process only)


def main() -> None:
    import handler
    from sadtalker.worker.logs import configure_logging
    from sadtalker.worker.settings import Settings

    configure_logging()
    handler._SETTINGS = Settings.from_env()
    if os.environ.get("SMALL_MODELS"):
        from tests.support.smallbundle import small_bundle

        handler._BUNDLE = small_bundle(os.environ["SMALL_MODELS"], os.environ)
        if os.environ.get("RENDER_GATE_DIR"):
            install_render_gate(Path(os.environ["RENDER_GATE_DIR"]))
    else:
        stand_in = types.ModuleType("sadtalker.pipeline")
        setattr(stand_in, "animate", fake_animate)  # noqa: B010  (the module double's one function)
        sys.modules["sadtalker.pipeline"] = stand_in
        handler._BUNDLE = object()
    handler.serve(handler._SETTINGS)


if __name__ == "__main__":
    main()
