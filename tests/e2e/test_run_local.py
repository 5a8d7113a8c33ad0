"""scripts/run_local.py (what `make run` runs) and the Makefile's run / weights targets.

The end-to-end test runs the script as `make run` does, in a subprocess, on the generated official-format weights
with a tiny job (0.2 s of speech, no enhancer: five real-size frames). The others need no weights.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from tests.support import REPO_ROOT
from tests.support.mediacheck import assert_browser_mp4

SCRIPT = REPO_ROOT / "scripts" / "run_local.py"
ASTRONAUT = REPO_ROOT / "assets" / "astronaut.jpg"
SPEECH = REPO_ROOT / "assets" / "speech.wav"


def load_run_local():
    spec = importlib.util.spec_from_file_location("run_local", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def speech_clip(path: Path, start_s: float, seconds: float) -> Path:
    """``seconds`` of assets/speech.wav from ``start_s``, as a wav file of the same format."""
    with wave.open(str(SPEECH), "rb") as source:
        params = source.getparams()
        source.setpos(int(start_s * params.framerate))
        frames = source.readframes(int(seconds * params.framerate))
    with wave.open(str(path), "wb") as clip:
        clip.setparams(params)
        clip.writeframes(frames)
    return path


def write_job(path: Path, job_input: dict, **extra) -> Path:
    path.write_text(json.dumps({"input": job_input, **extra}))
    return path


def run(args, env_extra: dict, cwd: Path = REPO_ROOT, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_a_tiny_real_size_job_writes_a_playable_mp4_and_prints_its_path_not_base64(test_checkpoints_dir, tmp_path):
    audio = speech_clip(tmp_path / "clip.wav", 1.0, 0.2)
    job = write_job(
        tmp_path / "job.json",
        {
            "image_base64": base64.b64encode(ASTRONAUT.read_bytes()).decode(),
            "audio_base64": base64.b64encode(audio.read_bytes()).decode(),
            "enhancer": "none",
            "seed": 1,
        },
    )
    env = {
        "CHECKPOINTS_DIR": str(test_checkpoints_dir),
        "CHECK_WEIGHT_SIZES": "false",
        "FACE_DETECTOR": "dlib",
        "DEVICE": "cpu",
    }
    out = tmp_path / "out"
    result = run([job, "--out", out, "--id", "tiny job/1"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    shown = json.loads(result.stdout)
    video = out / "tiny_job_1.mp4"  # the id made file-safe, as the handler makes it
    assert shown["success"] is True and shown["video_file"] == str(video)
    assert shown["video_bytes"] == video.stat().st_size > 0
    assert "video_base64" not in shown and len(result.stdout) < 4000
    assert shown["frames"] == 5 and (shown["width"], shown["height"]) == (256, 256)
    assert_browser_mp4(video, 0.2)
    assert f"run_local: video: {video}" in result.stderr
    if os.environ.get("TEST_ARTIFACTS_DIR"):  # keep the video for a person to look at or probe
        shutil.copy(video, Path(os.environ["TEST_ARTIFACTS_DIR"]) / "run_local.mp4")


@pytest.mark.slow  # a worker process
def test_missing_weights_exit_1_with_the_download_command_and_no_video(tmp_path):
    out = tmp_path / "out"
    result = run(
        [REPO_ROOT / "test_input.json", "--out", out], {"CHECKPOINTS_DIR": str(tmp_path / "empty"), "DEVICE": "cpu"}
    )
    assert result.returncode == 1
    assert "weight file(s) missing" in result.stderr and "Fetch them with: CHECKPOINTS_DIR=" in result.stderr
    assert result.stdout == "" and not out.exists()


@pytest.mark.parametrize(
    "content, reason",
    [
        ("not json", "is not JSON"),
        ('{"image_url": "https://example.com/a.png"}', 'must hold a job object, {"input": {...}}'),
    ],
)
def test_a_bad_job_file_exits_2_before_anything_loads(tmp_path, content, reason):
    job = tmp_path / "job.json"
    job.write_text(content)
    result = run([job], {"CHECKPOINTS_DIR": str(tmp_path / "empty")}, timeout=120)
    assert result.returncode == 2
    assert f"run_local: {job} {reason}" in result.stderr
    missing = run([tmp_path / "absent.json"], {}, timeout=120)
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_a_failed_job_exits_1_printing_the_error(tmp_path, monkeypatch, capsys):
    """In process, start-up and model loading stubbed: the job is refused before any model would run."""
    import handler
    from sadtalker import bundle
    from sadtalker.worker import startup

    monkeypatch.setattr(startup, "check_or_exit", lambda settings: None)
    monkeypatch.setattr(bundle, "load_models", lambda settings: object())
    monkeypatch.setattr(handler, "_SETTINGS", None)
    monkeypatch.setattr(handler, "_BUNDLE", None)
    job = write_job(
        tmp_path / "job.json", {"image_url": "https://example.com/a.png", "audio_base64": "AAAA", "size": 384}
    )
    code = load_run_local().main([str(job), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    shown = json.loads(captured.out)
    assert shown["success"] is False and shown["error_type"] == "invalid_input"
    assert f"run_local: the job failed: {shown['error']}" in captured.err
    assert not (tmp_path / "out").exists()


class TestWriteVideo:
    def test_the_inline_video_becomes_a_file_and_its_path(self, tmp_path):
        run_local = load_run_local()
        result = {"success": True, "video_base64": base64.b64encode(b"mp4 bytes").decode(), "frames": 5}
        shown = run_local.write_video(result, tmp_path / "out", "job-1")
        assert (tmp_path / "out" / "job-1.mp4").read_bytes() == b"mp4 bytes"
        assert shown == {
            "success": True,
            "video_file": str(tmp_path / "out" / "job-1.mp4"),
            "video_bytes": 9,
            "frames": 5,
        }
        assert not list((tmp_path / "out").glob("*.part"))

    def test_a_video_in_r2_and_a_failure_are_printed_as_they_are(self, tmp_path):
        run_local = load_run_local()
        in_r2 = {"success": True, "video_url": "https://r2.example/x.mp4?X-Amz-Signature=...", "r2_key": "x.mp4"}
        failed = {"success": False, "error": "invalid_input: size", "error_type": "invalid_input"}
        assert run_local.write_video(in_r2, tmp_path / "out", "x") == in_r2
        assert run_local.write_video(failed, tmp_path / "out", "x") == failed
        assert not (tmp_path / "out").exists()


class TestMakefile:
    def dry_run(self, *args: str) -> str:
        result = subprocess.run(["make", "-n", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def test_make_run_installs_then_fetches_the_missing_weights_then_runs_run_local(self):
        lines = self.dry_run("-W", "requirements.txt", "run").splitlines()  # -W: as if the install were due

        def first(text: str) -> int:
            return next(i for i, line in enumerate(lines) if text in line)

        install = first("pip install -r requirements-torch.txt -r requirements.txt")
        weights = first("bash scripts/download_models.sh --size 256 --dir ./checkpoints")
        job = first("scripts/run_local.py test_input.json --out output")
        assert install < weights < job

    def test_make_demo_generates_the_weights_once_then_runs_the_job_with_the_settings_they_need(self):
        lines = self.dry_run("-W", "tests/support/checkpoints.py", "demo").splitlines()
        writer = "-m tests.support.checkpoints .cache/demo_checkpoints"
        write = next(i for i, line in enumerate(lines) if writer in line)
        assert "SadTalker_V0.0.2_256.safetensors" in lines[write] and "512" not in lines[write]
        job = next(i for i, line in enumerate(lines) if "scripts/run_local.py test_input.json --out output" in line)
        settings = " ".join(lines[write + 1 : job + 1])
        assert write < job and "download_models.sh" not in "\n".join(lines)
        for setting in (
            "CHECKPOINTS_DIR=.cache/demo_checkpoints",
            "CHECK_WEIGHT_SIZES=false",
            "FACE_DETECTOR=dlib",
            "DEVICE=cpu",
        ):
            assert setting in settings, setting

    def test_the_weights_folder_follows_checkpoints_dir_as_the_worker_does(self):
        assert "--dir /data/ckpt" in self.dry_run("run", "CHECKPOINTS_DIR=/data/ckpt", "WEIGHTS_SIZE=all")
        assert "--size all" in self.dry_run("weights", "WEIGHTS_SIZE=all")

    def test_make_weights_without_network_fails_with_the_one_message(self, tmp_path):
        with socket.socket() as probe:  # a loopback port nothing listens on: connections are refused
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, "WEIGHTS_BASE_URL": f"http://127.0.0.1:{port}/w", "WEIGHTS_CURL_RETRIES": "0"}
        result = subprocess.run(
            ["make", "--no-print-directory", "weights", f"CHECKPOINTS_DIR={tmp_path / 'ck'}"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0
        assert f"http://127.0.0.1:{port}/w/SadTalker_V0.0.2_256.safetensors: curl: (7)" in result.stderr
        assert "Still missing in" in result.stderr and "6 file(s)" in result.stderr
        assert result.stderr.count("download_models:") == 1, result.stderr
