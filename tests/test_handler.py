"""The RunPod handler: cheap import, every failure as {success, error, error_type}, job mechanics, success dict.

``sadtalker.pipeline`` is replaced by a double whose ``animate`` writes a real 1-second MP4 with ffmpeg, so the
storage and inline paths run for real. ``BAD_INPUTS`` is the table of refused inputs that
``bench/bad_inputs_table.py`` prints; every row is also a test here.
"""

import base64
import dataclasses
import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
import types
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import handler
from sadtalker.core.contract import Animation, RenderOptions
from sadtalker.core.errors import NoFaceDetected
from sadtalker.worker.settings import Settings
from tests.support import REPO_ROOT
from tests.support.workerproc import write_test_video

FACE_JPEG = (REPO_ROOT / "assets" / "astronaut.jpg").read_bytes()
R2_ENV = ("R2_ENDPOINT_URL", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "R2_BUCKET_NAME")


def b64(data):
    return base64.b64encode(data).decode("ascii")


def wav(seconds, rate=16000, level=3000):
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        t = np.arange(int(seconds * rate)) / rate
        out.writeframes((level * np.sin(2 * np.pi * 220 * t)).astype("<i2").tobytes())
    return buffer.getvalue()


def image_bytes(width, height, fmt):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 90, 60)).save(buffer, format=fmt)
    return buffer.getvalue()


IMAGE = b64(FACE_JPEG)
AUDIO = b64(wav(1.0))


def silent_video_bytes(seconds):
    """A real 64x64 25 fps H.264 MP4 without sound (:func:`write_test_video`), as bytes."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.mp4"
        write_test_video(path, seconds)
        return path.read_bytes()


VIDEO_2S = b64(silent_video_bytes(2))
PNG_300 = image_bytes(300, 300, "PNG")


def valid(**fields):
    """A valid job input with ``fields`` changed (``...`` deletes a field)."""
    raw = {"image_base64": IMAGE, "audio_base64": AUDIO}
    raw.update(fields)
    return {key: value for key, value in raw.items() if value is not ...}


def url_image(url):
    return valid(image_base64=..., image_url=url)


# A recognisable secret: no response or log line may ever contain it.
SECRET = "SeCrEt-r2-KEY-0123456789abcdef"
R2_WITH_SECRET = {
    "endpoint_url": "https://acct.r2.cloudflarestorage.com",
    "access_key_id": "AKID",
    "secret_access_key": SECRET,
    "bucket_name": "b",
}


# A 256-only worker: its CHECKPOINTS_DIR lacks SadTalker_V0.0.2_512.safetensors (the environment fixture gives every
# other case a folder that has it).
NO_512_DIR = str(REPO_ROOT / "tests" / "no-512-weights-here")
# The caller's r2 pointing at a loopback port nothing listens on (port 1, tcpmux, is never served in a test).
R2_NOWHERE = {
    "endpoint_url": "http://127.0.0.1:1",
    "access_key_id": "AKID",
    "secret_access_key": SECRET,
    "bucket_name": "videos",
}

# (case, job input, error_type expected, environment for the case). The input "NO_INPUT" means a job without one.
BAD_INPUTS = [
    ("job without input", "NO_INPUT", "invalid_input", {}),
    ("input is a list", [], "invalid_input", {}),
    ("input is a string", "make a video", "invalid_input", {}),
    ("empty input", {}, "invalid_input", {}),
    ("both image_url and image_base64", valid(image_url="https://example.com/a.png"), "invalid_input", {}),
    ("no audio", valid(audio_base64=...), "invalid_input", {}),
    ("image_url ftp://", url_image("ftp://example.com/a.png"), "invalid_input", {}),
    ("image_url file://", url_image("file:///etc/passwd"), "invalid_input", {}),
    ("image_url without scheme", url_image("example.com/a.png"), "invalid_input", {}),
    ("image_url port 99999", url_image("http://example.com:99999/a.png"), "invalid_input", {}),
    ("image_base64 not base64", valid(image_base64="this is not base64!"), "invalid_input", {}),
    ("image_base64 a number", valid(image_base64=12345), "invalid_input", {}),
    ("audio_base64 empty string", valid(audio_base64=""), "invalid_input", {}),
    ('size "256" (string)', valid(size="256"), "invalid_input", {}),
    ("size true", valid(size=True), "invalid_input", {}),
    ("size 384", valid(size=384), "invalid_input", {}),
    ("size 256.0", valid(size=256.0), "invalid_input", {}),
    ("pose_style 46", valid(pose_style=46), "invalid_input", {}),
    ("pose_style 1.5", valid(pose_style=1.5), "invalid_input", {}),
    ("expression_scale NaN", valid(expression_scale=float("nan")), "invalid_input", {}),
    ('expression_scale "1.0"', valid(expression_scale="1.0"), "invalid_input", {}),
    ("expression_scale 3.5", valid(expression_scale=3.5), "invalid_input", {}),
    ('still_mode "true"', valid(still_mode="true"), "invalid_input", {}),
    ("still_mode 1", valid(still_mode=1), "invalid_input", {}),
    ('enhancer "GFPGAN"', valid(enhancer="GFPGAN"), "invalid_input", {}),
    ('preprocess "ExtCrop" (case)', valid(preprocess="ExtCrop"), "invalid_input", {}),
    ('paste "feather" with preprocess "crop"', valid(paste="feather"), "invalid_input", {}),
    ('paste "seamless" with preprocess "extcrop"', valid(preprocess="extcrop", paste="seamless"), "invalid_input", {}),
    ('paste "Feather" (case)', valid(preprocess="full", paste="Feather"), "invalid_input", {}),
    ("paste null", valid(preprocess="full", paste=None), "invalid_input", {}),
    ('fps "30" (a string)', valid(fps="30"), "invalid_input", {}),
    ("fps 29.97", valid(fps=29.97), "invalid_input", {}),
    ("fps 30.0 (not an integer)", valid(fps=30.0), "invalid_input", {}),
    ("fps 19", valid(fps=19), "invalid_input", {}),
    ("fps 61", valid(fps=61), "invalid_input", {}),
    ("fps true", valid(fps=True), "invalid_input", {}),
    ("fps null", valid(fps=None), "invalid_input", {}),
    ("input_yaw a bare number 15", valid(input_yaw=15), "invalid_input", {}),
    ("input_pitch an empty list", valid(input_pitch=[]), "invalid_input", {}),
    ("input_roll 17 keyframes", valid(input_roll=[0] * 17), "invalid_input", {}),
    ("input_yaw [0, 95] out of range", valid(input_yaw=[0, 95]), "invalid_input", {}),
    ('input_yaw ["10"]', valid(input_yaw=["10"]), "invalid_input", {}),
    ("pose_scale 2.5", valid(pose_scale=2.5), "invalid_input", {}),
    ('pose_scale "1"', valid(pose_scale="1"), "invalid_input", {}),
    ("use_blink 0", valid(use_blink=0), "invalid_input", {}),
    (
        "both ref_video_url and ref_video_base64",
        valid(ref_video_url="https://example.com/v.mp4", ref_video_base64=VIDEO_2S),
        "invalid_input",
        {},
    ),
    ("ref_info without a reference video", valid(ref_info="pose"), "invalid_input", {}),
    ('ref_info "eyes"', valid(ref_video_base64=VIDEO_2S, ref_info="eyes"), "invalid_input", {}),
    ("ref_video_base64 not base64", valid(ref_video_base64="not base64!"), "invalid_input", {}),
    ("ref video is text", valid(ref_video_base64=b64(b"hello, not a video" * 20)), "unsupported_media", {}),
    ("ref video is a WAV (no video stream)", valid(ref_video_base64=b64(wav(1.0))), "unsupported_media", {}),
    (
        "ref video 2 s over MAX_REF_VIDEO_SECONDS=1",
        valid(ref_video_base64=VIDEO_2S),
        "invalid_input",
        {"MAX_REF_VIDEO_SECONDS": "1"},
    ),
    (
        "no audio and a reference video without sound",
        valid(audio_base64=..., ref_video_base64=VIDEO_2S),
        "invalid_input",
        {},
    ),
    ("ref_video_url private 10.0.0.1", valid(ref_video_url="http://10.0.0.1/v.mp4"), "download_failed", {}),
    ("audio and idle_seconds", valid(idle_seconds=5), "invalid_input", {}),
    ("idle_seconds 0.5", valid(audio_base64=..., idle_seconds=0.5), "invalid_input", {}),
    ("idle_seconds 61", valid(audio_base64=..., idle_seconds=61), "invalid_input", {}),
    ('idle_seconds "5"', valid(audio_base64=..., idle_seconds="5"), "invalid_input", {}),
    ("seed -1", valid(seed=-1), "invalid_input", {}),
    ("seed 2**32", valid(seed=2**32), "invalid_input", {}),
    ('seed "42"', valid(seed="42"), "invalid_input", {}),
    ("unknown field sise", valid(sise=512), "invalid_input", {}),
    ("r2 a string", valid(r2="https://r2.example"), "invalid_input", {}),
    (
        "r2 JSON-encoded (a string holding the secret)",
        valid(r2=json.dumps({"secret_access_key": SECRET})),
        "invalid_input",
        {},
    ),
    ("r2 double-encoded", valid(r2=json.dumps(json.dumps(R2_WITH_SECRET))), "invalid_input", {}),
    ("r2.secret_access_key a number", valid(r2={**R2_WITH_SECRET, "secret_access_key": 1234567}), "invalid_input", {}),
    ("input is the JSON-encoded job", json.dumps(valid(r2=R2_WITH_SECRET)), "invalid_input", {}),
    (
        "image_url with credentials is a list",
        url_image([f"https://user:{SECRET}@example.com/a.png"]),
        "invalid_input",
        {},
    ),
    (
        "image_url with a signed query, unreachable",
        url_image(f"https://nonexistent.invalid/a.png?sig={SECRET}"),
        "download_failed",
        {},
    ),
    ("r2 unknown field region", valid(r2={"region": "auto"}), "invalid_input", {}),
    ("r2 only bucket_name, no R2_* env", valid(r2={"bucket_name": "b"}), "invalid_input", {}),
    (
        "r2 endpoint on metadata address",
        valid(
            r2={
                "endpoint_url": "http://169.254.169.254",
                "access_key_id": "a",
                "secret_access_key": "s",
                "bucket_name": "b",
            }
        ),
        "invalid_input",
        {},
    ),
    ("image 100x100", valid(image_base64=b64(image_bytes(100, 100, "PNG"))), "invalid_input", {}),
    (
        "image 300x1100 over MAX_IMAGE_SIDE=1024",
        valid(image_base64=b64(image_bytes(1100, 300, "PNG"))),
        "invalid_input",
        {"MAX_IMAGE_SIDE": "1024"},
    ),
    ("audio with 0 samples", valid(audio_base64=b64(wav(0))), "invalid_input", {}),
    ("audio of 20 ms", valid(audio_base64=b64(wav(0.02))), "invalid_input", {}),
    ("image is a GIF", valid(image_base64=b64(image_bytes(300, 300, "GIF"))), "unsupported_media", {}),
    ("image is a BMP", valid(image_base64=b64(image_bytes(300, 300, "BMP"))), "unsupported_media", {}),
    ("image is text", valid(image_base64=b64(b"hello, not an image")), "unsupported_media", {}),
    ("image is a truncated PNG", valid(image_base64=b64(PNG_300[:60])), "unsupported_media", {}),
    ("audio is garbage bytes", valid(audio_base64=b64(b"\x01\x02 not audio" * 50)), "unsupported_media", {}),
    ("audio is a PNG", valid(audio_base64=b64(PNG_300)), "unsupported_media", {}),
    (
        "audio 3 s over MAX_AUDIO_SECONDS=2",
        valid(audio_base64=b64(wav(3.0))),
        "audio_too_long",
        {"MAX_AUDIO_SECONDS": "2"},
    ),
    ("image_url http://127.0.0.1/", url_image("http://127.0.0.1/a.png"), "download_failed", {}),
    ("image_url http://localhost/", url_image("http://localhost/a.png"), "download_failed", {}),
    ("image_url decimal http://2130706433/", url_image("http://2130706433/a.png"), "download_failed", {}),
    ("image_url hex http://0x7f000001/", url_image("http://0x7f000001/a.png"), "download_failed", {}),
    ("image_url hex short http://0x7f.1/", url_image("http://0x7f.1/a.png"), "download_failed", {}),
    ("image_url octal http://0177.0.0.1/", url_image("http://0177.0.0.1/a.png"), "download_failed", {}),
    ("image_url octal whole http://017700000001/", url_image("http://017700000001/a.png"), "download_failed", {}),
    ("image_url short http://127.1/", url_image("http://127.1/a.png"), "download_failed", {}),
    ("image_url IPv6 loopback [::1]", url_image("http://[::1]/a.png"), "download_failed", {}),
    ("image_url IPv4-mapped [::ffff:127.0.0.1]", url_image("http://[::ffff:127.0.0.1]/a.png"), "download_failed", {}),
    (
        "image_url IPv4-mapped hex [::ffff:a9fe:a9fe]",
        url_image("http://[::ffff:a9fe:a9fe]/latest/meta-data/"),
        "download_failed",
        {},
    ),
    (
        "image_url metadata 169.254.169.254",
        url_image("http://169.254.169.254/latest/meta-data/"),
        "download_failed",
        {},
    ),
    ("image_url private 10.0.0.1", url_image("http://10.0.0.1/a.png"), "download_failed", {}),
    ("image_url private 172.16.0.1", url_image("https://172.16.0.1/a.png"), "download_failed", {}),
    ("image_url private 192.168.0.1", url_image("http://192.168.0.1/a.png"), "download_failed", {}),
    ("image_url unspecified 0.0.0.0", url_image("http://0.0.0.0/a.png"), "download_failed", {}),
    ("image_url unspecified [::]", url_image("http://[::]/a.png"), "download_failed", {}),
    ("image_url link-local [fe80::1]", url_image("http://[fe80::1]/a.png"), "download_failed", {}),
    ("image_url unique-local [fd00::1]", url_image("http://[fd00::1]/a.png"), "download_failed", {}),
    ("image_url multicast 224.0.0.1", url_image("http://224.0.0.1/a.png"), "download_failed", {}),
    ("image_url reserved 240.0.0.1", url_image("http://240.0.0.1/a.png"), "download_failed", {}),
    ("image_url CGNAT 100.64.0.1", url_image("http://100.64.0.1/a.png"), "download_failed", {}),
    ("image_url 6to4 wrapping 127.0.0.1", url_image("http://[2002:7f00:1::]/a.png"), "download_failed", {}),
    ("audio_url private 10.1.2.3", valid(audio_base64=..., audio_url="http://10.1.2.3/a.wav"), "download_failed", {}),
    (
        "valid job, result over INLINE_RESULT_MAX_BYTES=100",
        valid(),
        "upload_failed",
        {"INLINE_RESULT_MAX_BYTES": "100"},
    ),
    (
        "size 512 on a 256-only worker (no 512 weights, LOAD_512=lazy)",
        valid(size=512),
        "invalid_input",
        {"CHECKPOINTS_DIR": NO_512_DIR, "LOAD_512": "lazy"},
    ),
    (
        "r2 endpoint where nothing listens (checked before any work)",
        valid(r2=R2_NOWHERE),
        "upload_failed",
        {"ALLOW_LOOPBACK_URLS": "true"},
    ),
]


class PipelineDouble:
    """Stands in for sadtalker.pipeline: records calls, reports progress, writes a real MP4 (or raises)."""

    def __init__(self):
        self.calls = []
        self.raises = None

    def animate(self, bundle, settings, request, workdir, hooks):
        self.calls.append(
            dict(
                bundle=bundle,
                settings=settings,
                request=request,
                options=request.options,
                image=request.image_rgb,
                wav=request.wav16k,
                seed=request.seed,
                job_id=request.name,
                workdir=workdir,
                workdir_existed=os.path.isdir(workdir),
                hooks=hooks,
            )
        )
        hooks.progress("render", 1, 2, 25.0)
        hooks.progress("render", 2, 2, 50.0)
        if self.raises is not None:
            raise self.raises
        hooks.progress("encode", 2, 2, 100.0)
        path = Path(workdir) / "result.mp4"
        write_test_video(path)
        return Animation(
            path=str(path),
            width=64,
            height=64,
            fps=25,
            frames=25,
            chunks=1,
            duration_seconds=1.0,
            seed=1234,
            timings={"render": 0.5},
        )

    def as_module(self):
        return types.SimpleNamespace(animate=self.animate)


@pytest.fixture
def pipeline(monkeypatch):
    double = PipelineDouble()
    monkeypatch.setitem(sys.modules, "sadtalker.pipeline", double.as_module())
    monkeypatch.setattr(handler, "_BUNDLE", "BUNDLE")
    return double


@pytest.fixture
def progress(monkeypatch):
    sent = []
    monkeypatch.setattr(handler, "_send_progress", lambda job, payload: sent.append(payload))
    return sent


@pytest.fixture(scope="session")
def weights_with_512(tmp_path_factory):
    """A CHECKPOINTS_DIR holding the 512 renderer's file (sparse, its official size): the worker serves size 512."""
    from sadtalker.weights import table

    folder = tmp_path_factory.mktemp("checkpoints")
    weight = table.by_name("SadTalker_V0.0.2_512.safetensors")
    with open(folder / weight.name, "wb") as handle:
        handle.truncate(weight.size_bytes)
    return folder


@pytest.fixture(autouse=True)
def environment(monkeypatch, loopback_only, weights_with_512):
    """No storage and no loopback from the developer's shell; no connection except to loopback; a worker that has
    both sizes."""
    for name in R2_ENV + (
        "ALLOW_LOOPBACK_URLS",
        "MAX_AUDIO_SECONDS",
        "INLINE_RESULT_MAX_BYTES",
        "MAX_IMAGE_SIDE",
        "MAX_REF_VIDEO_SECONDS",
        "LOAD_512",
        "CHECK_WEIGHT_SIZES",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHECKPOINTS_DIR", str(weights_with_512))


def run_case(job_input, env, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    job = {"id": "bad-input"} if job_input == "NO_INPUT" else {"id": "bad-input", "input": job_input}
    return handler.handler(job)


@pytest.mark.parametrize("case, job_input, error_type, env", BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_gets_its_error_type(case, job_input, error_type, env, monkeypatch, pipeline, progress, caplog):
    caplog.set_level(logging.DEBUG)
    result = run_case(job_input, env, monkeypatch)
    assert set(result) == {"success", "error", "error_type"}
    assert result["success"] is False and result["error_type"] == error_type, result
    assert result["error"].startswith(f"{error_type}: ") and result["error"][len(error_type) + 2 :].strip()
    assert SECRET not in json.dumps(result) and SECRET not in caplog.text


def test_the_table_covers_forty_cases_and_every_input_error_type():
    assert len(BAD_INPUTS) >= 40
    covered = {row[2] for row in BAD_INPUTS}
    assert covered >= {"invalid_input", "download_failed", "unsupported_media", "audio_too_long", "upload_failed"}


class TestBeforeAnyWork:
    """Refusals that come before any download or model work: a size the worker lacks, a caller's bad r2."""

    def test_a_256_only_worker_refuses_512_with_the_sizes_it_has_and_logs_the_operators_hint(
        self, monkeypatch, pipeline, progress, caplog
    ):
        caplog.set_level(logging.WARNING, logger="handler")
        result = run_case(valid(size=512), {"CHECKPOINTS_DIR": NO_512_DIR, "LOAD_512": "lazy"}, monkeypatch)
        assert result["error"] == "invalid_input: size 512 is not available on this worker; it renders size 256"
        assert pipeline.calls == [] and progress == []
        assert "SadTalker_V0.0.2_512.safetensors" in caplog.text and "--size 512" in caplog.text

    def test_the_same_worker_renders_256(self, monkeypatch, pipeline, progress):
        result = run_case(valid(size=256), {"CHECKPOINTS_DIR": NO_512_DIR, "LOAD_512": "lazy"}, monkeypatch)
        assert result["success"] is True and len(pipeline.calls) == 1

    def test_a_callers_unreachable_r2_fails_before_any_download_or_model(self, monkeypatch, pipeline, progress, caplog):
        caplog.set_level(logging.DEBUG)
        result = run_case(valid(r2=R2_NOWHERE), {"ALLOW_LOOPBACK_URLS": "true"}, monkeypatch)
        assert result["error"] == (
            "upload_failed: cannot reach the storage endpoint http://127.0.0.1:1 for bucket "
            "'videos': EndpointConnectionError"
        )
        assert pipeline.calls == [] and progress == []
        assert SECRET not in caplog.text

    def test_the_operators_r2_is_not_checked_per_job(self, monkeypatch, pipeline, progress):
        """The operator's R2_* were checked at start-up; a job without r2 goes straight to work (and its upload
        then fails here, after the render, naming how long the video took)."""
        for name, value in zip(R2_ENV, ("http://127.0.0.1:1", "AKID", SECRET, "videos"), strict=True):
            monkeypatch.setenv(name, value)
        result = handler.handler({"id": "job-env-r2", "input": valid()})
        assert len(pipeline.calls) == 1 and result["error_type"] == "upload_failed"
        assert re.search(r"\(the video took \d+\.\d s to make and is not kept\)$", result["error"]), result


class TestImport:
    def test_importing_the_handler_loads_no_heavy_module(self):
        heavy = ("torch", "runpod", "boto3", "botocore", "sadtalker.pipeline", "cv2", "librosa", "basicsr")
        code = f"import sys, handler; print([m for m in {heavy!r} if m in sys.modules])"
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "[]"

    def test_invalid_input_is_answered_without_any_model(self, monkeypatch, pipeline, progress):
        monkeypatch.setattr(handler, "_BUNDLE", None)
        result = handler.handler({"id": "j", "input": {"size": 512}})
        assert result["error_type"] == "invalid_input" and pipeline.calls == []


class TestSuccess:
    def test_the_requested_fps_reaches_the_pipeline(self, pipeline, progress):
        assert handler.handler({"id": "job-fps", "input": valid(fps=30)})["success"] is True
        assert handler.handler({"id": "job-25", "input": valid()})["success"] is True
        assert [call["request"].options.fps for call in pipeline.calls] == [30, 25]

    def test_inline_result_has_every_documented_field(self, pipeline, progress):
        result = handler.handler({"id": "job-ok", "input": valid(seed=99)})
        assert result["success"] is True, result
        assert set(result) == {
            "success",
            "video_base64",
            "duration_seconds",
            "chunks_processed",
            "processing_time_seconds",
            "width",
            "height",
            "fps",
            "frames",
            "seed",
            "timings",
        }
        assert base64.b64decode(result["video_base64"])[4:8] == b"ftyp"
        assert (result["width"], result["height"], result["fps"], result["frames"]) == (64, 64, 25, 25)
        assert result["duration_seconds"] == 1.0 and result["chunks_processed"] == 1 and result["seed"] == 1234
        assert set(result["timings"]) == {"download", "decode", "upload", "render"}
        assert result["processing_time_seconds"] >= 0

    def test_animate_gets_the_decoded_image_audio_and_options(self, pipeline, progress):
        handler.handler({"id": "job-args", "input": valid(size=512, still_mode=True)})
        (call,) = pipeline.calls
        assert call["bundle"] == "BUNDLE" and call["job_id"] == "job-args" and call["workdir_existed"]
        assert call["image"].shape == (512, 512, 3) and call["image"].dtype == np.uint8
        assert call["wav"].dtype == np.float32 and call["wav"].shape == (16000,)
        assert isinstance(call["options"], RenderOptions) and call["options"].size == 512
        assert call["settings"] == Settings.from_env()  # the worker's settings, passed in
        assert call["hooks"].stop is None and not call["hooks"].streaming  # a plain call: no cancel, no segments
        # what rendering needs and nothing else: no sources, no storage credentials
        assert {f.name for f in dataclasses.fields(call["request"])} == {
            "image_rgb",
            "wav16k",
            "options",
            "seed",
            "name",
            "source_audio",
            "ref_frames",
        }
        assert call["request"].source_audio.path.startswith(call["workdir"])  # the recording as sent, for the video

    def test_idle_mode_animates_silence_of_idle_seconds(self, pipeline, progress):
        result = handler.handler({"id": "job-idle", "input": valid(audio_base64=..., idle_seconds=2.5)})
        assert result["success"] is True, result
        (call,) = pipeline.calls
        assert call["wav"].shape == (40000,) and not call["wav"].any()
        assert call["options"].idle_seconds == 2.5 and call["request"].ref_frames is None

    def test_reference_video_is_decoded_at_25_fps_and_gives_its_sound(self, pipeline, progress, tmp_path):
        from sadtalker.output.ffmpeg import ffmpeg_exe

        path = tmp_path / "ref.mp4"
        subprocess.run(
            [
                ffmpeg_exe(),
                "-nostdin",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=64x48:rate=30",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=300:sample_rate=22050",
                "-t",
                "1.2",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                str(path),
            ],
            check=True,
        )
        job = valid(audio_base64=..., ref_video_base64=b64(path.read_bytes()), ref_info="pose+blink")
        result = handler.handler({"id": "job-ref", "input": job})
        assert result["success"] is True, result
        (call,) = pipeline.calls
        assert call["request"].ref_frames.shape == (30, 48, 64, 3)  # 1.2 s at 25 fps, resampled from 30 fps
        assert call["options"].ref_info == "pose+blink"
        assert abs(call["wav"].shape[0] / 16000 - 1.2) < 0.05  # no audio given: the video's own sound

    def test_image_and_audio_can_come_from_urls(self, pipeline, progress, monkeypatch, file_server):
        monkeypatch.setenv("ALLOW_LOOPBACK_URLS", "true")
        result = handler.handler(
            {
                "id": "job-urls",
                "input": {"image_url": f"{file_server}/face.jpg?sig=abc", "audio_url": f"{file_server}/speech.wav"},
            }
        )
        assert result["success"] is True, result
        assert pipeline.calls[0]["image"].shape == (512, 512, 3)

    def test_urls_on_loopback_are_refused_by_default(self, pipeline, progress, file_server):
        result = handler.handler(
            {"id": "job-urls", "input": valid(image_base64=..., image_url=f"{file_server}/face.jpg")}
        )
        assert result["error_type"] == "download_failed" and "loopback" in result["error"]

    def test_test_input_json_is_a_valid_job(self, pipeline, progress):
        job = json.loads((REPO_ROOT / "test_input.json").read_text())
        result = handler.handler({"id": "local_test", **job})
        assert result["success"] is True, result
        (call,) = pipeline.calls
        assert call["image"].shape == (512, 512, 3)
        assert 2.0 < call["wav"].shape[0] / 16000 < 6.0
        assert call["seed"] == 42


class TestMechanics:
    def test_progress_goes_through_every_stage_in_order(self, pipeline, progress):
        handler.handler({"id": "job-progress", "input": valid()})
        assert [p["stage"] for p in progress] == ["download", "decode", "render", "render", "encode", "upload", "done"]
        assert all(set(p) == {"stage", "chunk", "chunks", "percent"} for p in progress)
        percents = [p["percent"] for p in progress]
        assert percents == sorted(percents) and percents[-1] == 100.0
        assert progress[3] == {"stage": "render", "chunk": 2, "chunks": 2, "percent": 50.0}

    def test_the_job_folder_is_removed_after_success(self, pipeline, progress):
        handler.handler({"id": "job-clean", "input": valid()})
        assert not os.path.exists(pipeline.calls[0]["workdir"])

    def test_the_job_folder_is_removed_after_failure(self, pipeline, progress):
        pipeline.raises = NoFaceDetected("no face in the image; send a photo with one clear, frontal face")
        result = handler.handler({"id": "job-fail", "input": valid()})
        assert result == {
            "success": False,
            "error_type": "no_face_detected",
            "error": "no_face_detected: no face in the image; send a photo with one clear, frontal face",
        }
        assert not os.path.exists(pipeline.calls[0]["workdir"])

    def test_two_jobs_share_no_folder_or_input(self, pipeline, progress):
        handler.handler({"id": "same-id", "input": valid(audio_base64=b64(wav(1.0)))})
        handler.handler({"id": "same-id", "input": valid(audio_base64=b64(wav(2.0)))})
        first, second = pipeline.calls
        assert first["workdir"] != second["workdir"]
        assert (first["wav"].shape, second["wav"].shape) == ((16000,), (32000,))

    def test_an_unexpected_exception_is_internal_error_without_its_text(self, pipeline, progress, caplog):
        pipeline.raises = ValueError("detail with /secret/path in it")
        result = handler.handler({"id": "job-bug", "input": valid()})
        assert result == {
            "success": False,
            "error_type": "internal_error",
            "error": "internal_error: internal error (ValueError); the worker log has the details",
        }
        assert "detail with /secret/path" in caplog.text  # the traceback went to the log

    def test_cuda_out_of_memory_asks_runpod_to_refresh_the_worker(self, pipeline, progress):
        pipeline.raises = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        result = handler.handler({"id": "job-oom", "input": valid()})
        assert result["error_type"] == "internal_error" and result["refresh_worker"] is True
        assert "out of memory" in result["error"]

    def test_torch_out_of_memory_error_is_recognised(self, pipeline, progress):
        import torch

        pipeline.raises = torch.cuda.OutOfMemoryError("allocation failed")
        assert handler.handler({"id": "job-oom2", "input": valid()})["refresh_worker"] is True

    def test_other_errors_do_not_refresh_the_worker(self, pipeline, progress):
        pipeline.raises = RuntimeError("shape mismatch")
        assert "refresh_worker" not in handler.handler({"id": "job-x", "input": valid()})

    def test_a_valid_job_without_loaded_models_is_internal_error(self, pipeline, progress, monkeypatch):
        monkeypatch.setattr(handler, "_BUNDLE", None)
        result = handler.handler({"id": "job-nomodels", "input": valid()})
        assert result["error_type"] == "internal_error" and "not loaded" in result["error"]

    @pytest.mark.parametrize("raw", ["../../etc/passwd", "a/b", "", None, "x" * 500, "sync-1f2e-u1"])
    def test_job_ids_become_safe_file_and_key_names(self, raw):
        safe = handler._safe_job_id(raw)
        assert safe and "/" not in safe and not safe.startswith(".") and len(safe) <= 128
        assert safe.replace("-", "").replace("_", "").replace(".", "").isalnum()

    def test_runpod_job_ids_are_kept(self):
        assert handler._safe_job_id("sync-1f2e3d-u1") == "sync-1f2e3d-u1"


class TestStartup:
    @pytest.mark.slow  # a worker process
    def test_without_weights_the_worker_stops_with_the_download_command(self, tmp_path):
        env = {**os.environ, "CHECKPOINTS_DIR": str(tmp_path / "empty"), "DEVICE": "cpu"}
        run = subprocess.run(
            [sys.executable, "handler.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode != 0
        assert "missing" in run.stderr and "download_models.sh" in run.stderr
        assert "SadTalker_V0.0.2_256.safetensors" in run.stderr

    def test_a_bad_environment_stops_the_worker_naming_the_variable(self):
        env = {**os.environ, "MAX_AUDIO_SECONDS": "ten"}
        run = subprocess.run(
            [sys.executable, "handler.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 2 and "MAX_AUDIO_SECONDS" in run.stderr


class FileHandler(BaseHTTPRequestHandler):
    files = {"/face.jpg": FACE_JPEG, "/speech.wav": wav(1.0)}

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = self.files.get(self.path.split("?")[0])
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")


@pytest.fixture(scope="module")
def file_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FileHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
