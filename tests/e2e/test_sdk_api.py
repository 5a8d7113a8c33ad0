"""The handler under the runpod SDK's own local API server: what a caller of /runsync receives, and what the
worker log holds (no video URL, no inline video, the error code in the failure text)."""

from __future__ import annotations

import base64
import io
import wave

import numpy as np
import pytest
import requests
from PIL import Image

from tests.support.workerproc import serving_worker

pytestmark = pytest.mark.slow  # a worker process under the SDK: `make test-fast` leaves it out


def wav_b64(seconds: float) -> str:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.sin(np.arange(int(16000 * seconds)) / 8) * 8000).astype("<i2").tobytes())
    return base64.b64encode(buffer.getvalue()).decode()


def png_b64() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), (120, 90, 60)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """``python -m tests.support.workerproc --rp_serve_api``: the real handler and SDK, a pipeline double.
    Yields (url, log)."""
    log_path = tmp_path_factory.mktemp("sdk") / "worker.log"
    with serving_worker({}, log_path, limit_s=60) as url:
        yield url, log_path


def test_a_successful_job_leaves_neither_the_video_nor_its_address_in_the_log(worker):
    url, log_path = worker
    response = requests.post(
        f"{url}/runsync", json={"input": {"image_base64": png_b64(), "audio_base64": wav_b64(1.0)}}, timeout=120
    )
    body = response.json()
    assert body["status"] == "COMPLETED", body
    video = body["output"]["video_base64"]
    assert len(video) > 1000
    log = log_path.read_text()
    assert "progress" in log  # the worker did log its job
    assert video[:200] not in log and "video_base64" not in log and "video_url" not in log
    assert "Handler output" not in log  # the SDK's DEBUG line that prints every output
    assert "Failed to return job results" not in log and "ERROR" not in log  # no progress posted off the platform


def test_a_failed_job_tells_the_caller_its_error_code(worker):
    url, _ = worker
    response = requests.post(
        f"{url}/runsync",
        json={"input": {"image_base64": png_b64(), "audio_base64": wav_b64(1.0), "size": 384}},
        timeout=120,
    )
    body = response.json()
    assert body["status"] == "FAILED"
    assert body["error"].startswith("invalid_input: size must be the integer 256 or 512"), body
