"""The pipeline end to end: chunked long audio, full mode, the enhancer, seeds, and `python handler.py`.

Plumbing tests use the real coefficient networks (strictly loaded from the generated official-format
weights) with small renderer and GFPGAN networks, so ~100 s of audio runs in a few minutes on CPU.
The end-to-end test runs the worker as a user does, on the official network sizes.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import requests

from sadtalker.core.constants import MODEL_FPS, SAMPLE_RATE, num_frames
from sadtalker.core.contract import AnimationHooks, AnimationRequest, RenderOptions
from sadtalker.face.stage import preprocess_image
from sadtalker.motion.chunking import plan_chunks
from sadtalker.motion.mel import fit_to_frames, mel_windows, melspectrogram
from sadtalker.motion.seams import seam_jumps
from sadtalker.motion.stage import chunked_coefficients
from sadtalker.output.paste import Paster
from sadtalker.pipeline import animate
from tests.support import REPO_ROOT
from tests.support.mediacheck import FRAME_S, assert_browser_mp4, decode_rgb, video_packet_times
from tests.support.pastecases import opencv_paste, share_identical
from tests.support.smallbundle import ASTRONAUT, astronaut, speech_like
from tests.support.workerproc import free_port, wait_for_port

SPEECH = REPO_ROOT / "assets" / "speech.wav"
# The long-audio run uses CHUNK_SECONDS=10 (the cutting logic is the same at any chunk length; 22 s of audio give
# three chunks, as 100 s do at the default 45 s). Quiet gaps in the signal: one inside each search window (the last
# 5 s before 10 s, then before the next chunk's 10 s), and decoys outside the windows that must not be chosen.
CHUNK_S = 10.0
GAPS_S = (7.3, 15.5)
DECOYS_S = (3.0, 11.0)
LONG_S = 22.0


def options(**fields) -> RenderOptions:
    return RenderOptions(**{"enhancer": "none", **fields})


def request(image: np.ndarray, wav: np.ndarray, name: str, seed=None, **fields) -> AnimationRequest:
    return AnimationRequest(image, wav, options(**fields), seed=seed, name=name)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return astronaut()


class Recorder:
    """The ``progress`` callback, recording every call."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, int, int, float]] = []

    def __call__(self, stage, chunk=0, chunks=0, percent=0.0) -> None:
        self.calls.append((stage, chunk, chunks, percent))


@pytest.fixture(scope="module")
def long_run(bundle, settings, image, tmp_path_factory):
    chunked = dataclasses.replace(settings, chunk_seconds=CHUNK_S)
    wav = speech_like(LONG_S, quiet_at=GAPS_S + DECOYS_S)
    progress = Recorder()
    job = request(image, wav, "long", seed=11)
    result = animate(bundle, chunked, job, str(tmp_path_factory.mktemp("long")), AnimationHooks(progress))
    return wav, result, progress


@pytest.mark.slow
class TestChunking:
    def test_long_audio_is_cut_at_the_quiet_gaps_into_three_chunks(self, long_run):
        wav, result, _ = long_run
        chunks = plan_chunks(wav, CHUNK_S)
        assert result.chunks == len(chunks) == 3
        cuts_s = [c.start_frame / MODEL_FPS for c in chunks[1:]]
        for cut, gap in zip(cuts_s, GAPS_S, strict=True):
            assert gap <= cut <= gap + 0.3, (cuts_s, GAPS_S)
        assert all(c.n_frames <= CHUNK_S * MODEL_FPS for c in chunks)

    def test_one_continuous_video_as_long_as_the_audio(self, long_run):
        wav, result, _ = long_run
        frames = num_frames(len(wav))
        assert result.frames == frames and result.duration_seconds == pytest.approx(frames / MODEL_FPS)
        assert_browser_mp4(result.path, len(wav) / SAMPLE_RATE)
        times = video_packet_times(result.path)
        assert len(times) == frames
        assert np.allclose(np.diff(times), FRAME_S, atol=1e-3), "timestamps jump inside the video"

    def test_progress_reports_every_chunk_in_order_and_percent_never_falls(self, long_run):
        _, _, progress = long_run
        stages = [call[0] for call in progress.calls]
        assert stages[0] == "preprocess" and stages[-1] == "encode"
        coeff_chunks = [call[1] for call in progress.calls if call[0] == "audio2coeff" and call[1] > 0]
        assert coeff_chunks == [1, 2, 3]
        render_chunks = [call[1] for call in progress.calls if call[0] == "render"]
        assert render_chunks[0] == 1 and render_chunks[-1] == 3 and render_chunks == sorted(render_chunks)
        percents = [call[3] for call in progress.calls]
        assert percents == sorted(percents) and percents[-1] <= 100.0

    def test_pose_does_not_jump_at_the_seams(self, bundle, image):
        wav = speech_like(LONG_S, quiet_at=GAPS_S + DECOYS_S)
        frames = num_frames(len(wav))
        windows = mel_windows(melspectrogram(fit_to_frames(wav, frames)), frames)
        chunks = plan_chunks(wav, CHUNK_S)
        models = bundle.sizes[256]
        pre = _preprocess(bundle, image)
        carried = coefficients(models, pre, windows, chunks)
        # Each chunk alone (its seed depends only on its index): what the seams look like without carry-over.
        raw = np.concatenate([coefficients(models, pre, windows, [c]) for c in chunks])
        seams = [c.start_frame for c in chunks[1:]]
        after, before = seam_jumps(carried, seams), seam_jumps(raw, seams)
        assert after.worst_ratio <= 1.5, after
        assert before.worst_ratio > after.worst_ratio, (before, after)


def coefficients(models, pre, windows, chunks):
    return chunked_coefficients(models.audio2exp, models.audio2pose, windows, pre.coeff_3dmm, chunks, 5, 0)


def _preprocess(bundle, image):
    return preprocess_image(image, bundle.face_finder, bundle.sizes[256].recon_net, "crop", 256)


class TestModesAndSeeds:
    def test_full_mode_with_enhancer_outputs_twice_the_photo_size(self, bundle, settings, image, tmp_path):
        wav = speech_like(0.4)
        full = request(image, wav, "full", seed=1, preprocess="full", enhancer="gfpgan")
        result = animate(bundle, settings, full, str(tmp_path))
        assert (result.width, result.height) == (2 * image.shape[1], 2 * image.shape[0])
        assert result.warnings == ()
        assert {"enhance", "paste", "render"} <= set(result.timings)
        assert_browser_mp4(result.path, len(wav) / SAMPLE_RATE)

    @pytest.mark.parametrize("method", ["seamless", "feather"])
    def test_full_mode_pastes_each_frame_as_cv2_seamless_clone_or_feathered(
        self, bundle, settings, image, tmp_path, method, monkeypatch
    ):
        """No enhancer, upscale 1: every frame handed to the encoder is the reference's paste_pic of the rendered
        frame (cv2.resize + cv2.seamlessClone at the crop box) within 1 level; "feather" blends instead."""
        calls = []
        paste = Paster.paste

        def recording(paster, frames):
            out = paste(paster, frames)
            calls.append((paster, np.array(frames), np.array(out)))
            return out

        monkeypatch.setattr(Paster, "paste", recording)
        job = request(image, speech_like(0.2), f"paste-{method}", seed=1, preprocess="full", upscale=1, paste=method)
        animate(bundle, settings, job, str(tmp_path))
        box = preprocess_image(image, bundle.face_finder, bundle.sizes[256].recon_net, "full", 256).crop_info.box
        height, width = image.shape[:2]
        assert calls and all(paster.method == method and paster.box == box for paster, _, _ in calls)
        for _, rendered, pasted in calls:
            for face, frame in zip(rendered, pasted[:, :height, :width], strict=True):
                worst, _, inside = share_identical(frame, opencv_paste(face, image, box), box)
                if method == "seamless":
                    assert worst <= 1 and inside >= 0.99
                else:
                    assert worst > 1  # the feathered blend is not OpenCV's

    def test_crop_mode_with_enhancer_and_upscale_1_keeps_the_render_size(self, bundle, settings, image, tmp_path):
        crop = request(image, speech_like(0.6), "crop", seed=1, enhancer="gfpgan", upscale=1)
        result = animate(bundle, settings, crop, str(tmp_path))
        crop_w, crop_h = _preprocess(bundle, image).crop_info.size
        assert (result.width, result.height) == (256, int(256 * crop_h / crop_w) // 2 * 2)

    def test_crop_mode_with_enhancer_doubles_the_render_size_by_default(self, bundle, settings, image, tmp_path):
        job = request(image, speech_like(0.3), "crop2", seed=1, enhancer="gfpgan")
        result = animate(bundle, settings, job, str(tmp_path))
        crop_w, crop_h = _preprocess(bundle, image).crop_info.size
        assert (result.width, result.height) == (512, int(512 * crop_h / crop_w) // 2 * 2)

    def test_an_output_over_max_output_side_is_scaled_down_with_a_warning(self, bundle, settings, image, tmp_path):
        capped = dataclasses.replace(settings, max_output_side=768)
        full = request(image, speech_like(0.3), "capped", seed=1, preprocess="full", upscale=2)
        result = animate(bundle, capped, full, str(tmp_path))
        assert (result.width, result.height) == (768, 768)
        assert len(result.warnings) == 1 and "MAX_OUTPUT_SIDE=768" in result.warnings[0]
        assert_browser_mp4(result.path, 0.3)

    @pytest.mark.slow  # three whole jobs
    def test_same_seed_gives_identical_frames_and_another_seed_differs(self, bundle, settings, image, tmp_path):
        wav = speech_like(1.0, seed=3)

        def frames(seed, name):
            result = animate(bundle, settings, request(image, wav, name, seed=seed, preprocess="full"), str(tmp_path))
            return result, decode_rgb(result.path, result.width, result.height)

        first, a = frames(7, "a")
        _, b = frames(7, "b")
        _, c = frames(8, "c")
        assert first.seed == 7
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)

    def test_without_a_seed_one_is_drawn_and_returned(self, bundle, settings, image, tmp_path):
        result = animate(bundle, settings, request(image, speech_like(0.3), "noseed"), str(tmp_path))
        assert isinstance(result.seed, int) and 0 <= result.seed < 2**32

    def test_a_second_job_on_the_same_image_reuses_the_preprocessing(self, bundle, settings, image, tmp_path):
        before = bundle.cache.hits
        for name in ("one", "two"):
            job = request(image, speech_like(0.3), name, seed=1, preprocess="resize")
            animate(bundle, settings, job, str(tmp_path))
        assert bundle.cache.hits >= before + 1


@pytest.mark.slow
def test_python_handler_py_serves_a_real_size_job_as_an_inline_mp4(test_checkpoints_dir, tmp_path):
    """The worker as a user runs it: `python handler.py --rp_serve_api`, official network sizes, generated
    official-format weights, dlib faces, one POST /runsync. (RunPod's test_input.json mode would run the same
    job, but it logs the result cut to 4096 characters, so the inline video could not be read back.)"""
    seconds = 0.4  # 10 frames: the plumbing of a real-size job, not its length
    wav = np.clip(speech_like(seconds) * 32767, -32768, 32767).astype("<i2")
    audio = tmp_path / "speech.wav"
    _write_wav16(audio, wav)
    job_input = {
        "image_base64": base64.b64encode(ASTRONAUT.read_bytes()).decode(),
        "audio_base64": base64.b64encode(audio.read_bytes()).decode(),
        "enhancer": "none",
        "seed": 1,
    }
    env = {
        **os.environ,
        "CHECKPOINTS_DIR": str(test_checkpoints_dir),
        "FACE_DETECTOR": "dlib",
        "CHECK_WEIGHT_SIZES": "false",
        "DEVICE": "cpu",
        "RENDER_BATCH_SIZE": "4",
    }
    port = free_port()
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "handler.py", "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(worker, port, log_path)
            response = requests.post(f"http://127.0.0.1:{port}/runsync", json={"input": job_input}, timeout=1800)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    assert response.status_code == 200, response.text[:2000]
    body = response.json()
    assert body["status"] == "COMPLETED", (body, log_path.read_text()[-3000:])
    result = body["output"]
    assert result["success"] is True and result["chunks_processed"] == 1
    assert result["frames"] == num_frames(len(wav)) and (result["width"], result["height"]) == (256, 256)
    assert {"download", "decode", "preprocess", "audio2coeff", "render", "encode"} <= set(result["timings"])
    video = tmp_path / "out.mp4"
    video.write_bytes(base64.b64decode(result["video_base64"]))
    if os.environ.get("TEST_ARTIFACTS_DIR"):  # keep the video for a person to look at or probe
        shutil.copy(video, Path(os.environ["TEST_ARTIFACTS_DIR"]) / "end_to_end.mp4")
    assert_browser_mp4(video, len(wav) / SAMPLE_RATE)


def _write_wav16(path: Path, samples: np.ndarray) -> None:
    import wave

    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLE_RATE)
        handle.writeframes(samples.tobytes())
