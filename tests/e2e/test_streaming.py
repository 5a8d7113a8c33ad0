"""Streaming: playable segments while the video renders, the same frames as the whole video, delivered through the
runpod SDK's local API server (/run + /stream, /runsync) with the real pipeline on small networks."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import threading
import time

import numpy as np
import pytest
import requests

from sadtalker import pipeline
from sadtalker.core.contract import AnimationHooks, AnimationRequest, RenderOptions
from sadtalker.output.video import VideoWriter
from tests.support.mediacheck import FRAME_S, assert_browser_mp4, decode_rgb, ffprobe
from tests.support.smallbundle import astronaut, astronaut_base64, speech_like, wav_base64
from tests.support.workerproc import serving_worker

SECONDS = 2.3  # 57 frames: segments of 25, 25 and 7
pytestmark = pytest.mark.slow  # whole streamed jobs and a worker process: `make test-fast` leaves them out


@pytest.fixture(scope="module")
def streamed(bundle, settings, tmp_path_factory):
    """One animation with 1 s segments; every frame array handed to a writer is recorded, with the order of events."""
    workdir = tmp_path_factory.mktemp("stream")
    written, events, segments = {}, [], []
    original_write = VideoWriter.write

    def recording_write(self, frames):
        written.setdefault(self.path, []).append(np.array(frames))
        return original_write(self, frames)

    def on_segment(segment):
        events.append(("segment", segment.index))
        segments.append(segment)

    def progress(stage, chunk=0, chunks=0, percent=0.0):
        events.append((stage, percent))

    request = AnimationRequest(astronaut(), speech_like(SECONDS), RenderOptions(enhancer="none"), seed=3, name="clip")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(VideoWriter, "write", recording_write)
        hooks = AnimationHooks(progress, on_segment=on_segment, segment_seconds=1.0)
        animation = pipeline.animate(bundle, settings, request, str(workdir), hooks)
    return animation, segments, written, events


def test_segments_are_contiguous_and_add_up_to_the_video(streamed):
    animation, segments, _, _ = streamed
    assert [s.frames for s in segments] == [25, 25, 7]
    assert [s.start_frame for s in segments] == [0, 25, 50]
    assert sum(s.frames for s in segments) == animation.frames
    assert [s.start_seconds for s in segments] == [0.0, 1.0, 2.0]


def test_segments_get_the_same_frames_as_the_whole_video_before_encoding(streamed):
    animation, segments, written, _ = streamed
    whole = np.concatenate(written[animation.path])
    pieces = np.concatenate([frame for s in segments for frame in written[s.path]])
    assert whole.shape[0] == animation.frames and np.array_equal(whole, pieces)


def test_every_segment_plays_with_its_frames_and_sound(streamed):
    _, segments, _, _ = streamed
    for segment in segments:
        info = assert_browser_mp4(segment.path, segment.duration_seconds)
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        assert int(video["nb_frames"]) == segment.frames


def test_decoded_segments_line_up_with_the_decoded_video(streamed):
    animation, segments, _, _ = streamed
    whole = decode_rgb(animation.path, animation.width, animation.height).astype(int)
    pieces = np.concatenate([decode_rgb(s.path, animation.width, animation.height) for s in segments]).astype(int)
    assert pieces.shape == whole.shape
    same = np.abs(pieces - whole).mean(axis=(1, 2, 3))
    shifted = np.abs(pieces[1:] - whole[:-1]).mean(axis=(1, 2, 3))
    assert same.max() < 2.0, same  # two encodes of the same frames: within a couple of levels
    assert same[1:].mean() < shifted.mean(), "the segments' frames are out of step with the video's"


def test_a_segment_is_handed_over_before_the_next_batch_renders(streamed):
    _, _, _, events = streamed
    renders = [i for i, event in enumerate(events) if event[0] == "render"]
    for index in (0, 1):
        at = events.index(("segment", index))
        assert any(r > at for r in renders), "the segment waited for the end of the render"
        # the progress report of the batch that completed the segment comes right after it
        assert events[at + 1][0] == "render"


@pytest.fixture(scope="module")
def render_gate(tmp_path_factory):
    """The folder of the worker's render gate (tests/support/workerproc.py: install_render_gate)."""
    return tmp_path_factory.mktemp("gate")


@pytest.fixture(scope="module")
def streaming_worker(test_checkpoints_dir, tmp_path_factory, render_gate):
    """The real handler and SDK (`--rp_serve_api`) with STREAM_SEGMENT_SECONDS=1, the small bundle."""
    log_path = tmp_path_factory.mktemp("streaming") / "worker.log"
    env = {
        "SMALL_MODELS": str(test_checkpoints_dir),
        "STREAM_SEGMENT_SECONDS": "1",
        "DEVICE": "cpu",
        "RENDER_GATE_DIR": str(render_gate),
    }
    with serving_worker(env, log_path, limit_s=120) as url:
        yield url


def test_stream_delivers_playable_segments_then_the_whole_video(streaming_worker, tmp_path):
    job = {
        "input": {
            "image_base64": astronaut_base64(),
            "audio_base64": wav_base64(SECONDS),
            "enhancer": "none",
            "seed": 3,
        }
    }
    job_id = requests.post(f"{streaming_worker}/run", json=job, timeout=30).json()["id"]
    body = requests.post(f"{streaming_worker}/stream/{job_id}", timeout=300).json()
    assert body["status"] == "COMPLETED", body
    items = [entry["output"] for entry in body["stream"]]
    *segments, final = items
    assert [item["segment"] for item in segments] == [0, 1, 2]
    assert [item["frames"] for item in segments] == [25, 25, 7]
    assert all(
        set(item) == {"segment", "start_seconds", "duration_seconds", "frames", "video_base64"} for item in segments
    )
    assert final["final"] is True and final["success"] is True and final["frames"] == 57
    for item in segments:
        path = tmp_path / f"segment-{item['segment']}.mp4"
        path.write_bytes(base64.b64decode(item["video_base64"]))
        info = assert_browser_mp4(path, item["duration_seconds"])
        assert int(next(s for s in info["streams"] if s["codec_type"] == "video")["nb_frames"]) == item["frames"]
    whole = tmp_path / "whole.mp4"
    whole.write_bytes(base64.b64decode(final["video_base64"]))
    assert abs(float(ffprobe(whole)["format"]["duration"]) - 57 * FRAME_S) <= FRAME_S


def test_runsync_returns_the_list_and_a_bad_input_one_error_item(streaming_worker):
    job = {"input": {"image_base64": astronaut_base64(), "audio_base64": wav_base64(1.2), "enhancer": "none"}}
    body = requests.post(f"{streaming_worker}/runsync", json=job, timeout=300).json()
    assert body["status"] == "COMPLETED" and [item.get("segment") for item in body["output"]] == [0, 1, None]
    bad = requests.post(f"{streaming_worker}/runsync", json={"input": {**job["input"], "size": 300}}, timeout=60).json()
    assert len(bad["output"]) == 1 and bad["output"][0]["error_type"] == "invalid_input", bad


def wait_for_file(path, limit_s: float = 300.0) -> None:
    deadline = time.monotonic() + limit_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} did not appear within {limit_s} s"
        time.sleep(0.05)


def test_the_api_answers_while_a_job_renders(streaming_worker, render_gate):
    """The job is held mid-render by the worker's gate until the API has answered, so the check never races the job."""
    job = {"input": {"image_base64": astronaut_base64(), "audio_base64": wav_base64(1.2), "enhancer": "none"}}
    done = {}

    def run() -> None:
        done.update(requests.post(f"{streaming_worker}/runsync", json=job, timeout=600).json())

    (render_gate / "armed").touch()
    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for_file(render_gate / "started")  # the job is inside its render now, and stays there
        start = time.monotonic()
        answer = requests.post(f"{streaming_worker}/status/no-such-job", timeout=30)
        answered_s = time.monotonic() - start
        still_rendering = not done and thread.is_alive()
    finally:
        (render_gate / "armed").unlink()
        (render_gate / "release").touch()
        thread.join()
    assert answer.status_code == 200 and answer.json()["status"] == "FAILED", answer.text
    assert still_rendering, "the job was not held by the gate"
    # A generous bound: a blocked event loop would not answer until the job ends, which the gate prevents.
    assert answered_s < 15.0, answered_s
    assert done["status"] == "COMPLETED" and len(done["output"]) == 3, done


def handler_job(seconds: float) -> dict:
    return {
        "id": "inline",
        "input": {
            "image_base64": astronaut_base64(),
            "audio_base64": wav_base64(seconds),
            "enhancer": "none",
            "seed": 3,
        },
    }


def test_inline_segments_and_the_whole_video_share_the_inline_cap(bundle, settings, monkeypatch):
    import handler

    monkeypatch.setattr(handler, "_BUNDLE", bundle)
    for name in [n for n in os.environ if n.startswith("R2_")]:
        monkeypatch.delenv(name)
    settings = dataclasses.replace(settings, stream_segment_seconds=1.0)
    monkeypatch.setattr(handler, "_SETTINGS", settings)
    items = []
    result = handler.handler(handler_job(SECONDS), emit=items.append)
    segment_bytes = sum(len(base64.b64decode(item["video_base64"])) for item in items)
    video_bytes = len(base64.b64decode(result["video_base64"]))
    capped = dataclasses.replace(settings, inline_result_max_bytes=segment_bytes + video_bytes // 2)
    monkeypatch.setattr(handler, "_SETTINGS", capped)
    items = []
    refused = handler.handler(handler_job(SECONDS), emit=items.append)
    assert len(items) == 3  # every segment fitted
    assert refused["error_type"] == "upload_failed" and "configure R2" in refused["error"], refused
    assert "segments already returned" in refused["error"]


def test_a_refused_streaming_job_is_failed_by_the_sdk(monkeypatch):
    """The SDK's own job path (rp_job.handle_job) on the streaming handler: one error item, the job FAILED."""
    from runpod.serverless.modules import rp_job

    import handler

    sent = []

    async def record(session, job_data, job, is_stream=False):
        sent.append((job_data, is_stream))

    monkeypatch.setattr(rp_job, "send_result", record)
    monkeypatch.setattr(rp_job, "stream_result", record)
    config = {"handler": handler.stream_handler, "return_aggregate_stream": True}
    asyncio.run(rp_job.handle_job(None, config, {"id": "bad", "input": {"image_base64": "eA==", "size": 300}}))
    ((final, is_stream),) = [entry for entry in sent if "error" in entry[0] or "output" in entry[0]][-1:]
    assert final["error"].startswith("invalid_input: "), final
