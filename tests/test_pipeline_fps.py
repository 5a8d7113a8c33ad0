"""The ``fps`` input end to end: motion resampled in time, 25 fps unchanged, the MP4's rate, lips in sync.

Jobs on the small renderer with the real-format coefficient networks: the same request and seed at 25, 50 and 30
fps, the rendered frames taken from the renderer before encoding. Frames are rendered one at a time (render batch 1)
so that equal windows give equal frames whatever their place in a batch (batching changes only float rounding,
tests/render/test_stage.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sadtalker import pipeline
from sadtalker.core.constants import SAMPLE_RATE
from sadtalker.core.contract import NO_HOOKS, AnimationHooks, AnimationRequest, RenderOptions
from sadtalker.core.errors import InvalidInput
from sadtalker.core.timeline import Timeline
from sadtalker.motion.chunking import plan_chunks
from tests.support.lipsync import BURSTS_S, ONSET_RATES, mouth_column, mouth_track, onsets, tone_bursts
from tests.support.mediacheck import assert_browser_mp4, ffprobe
from tests.support.rendertap import render_job
from tests.support.smallbundle import astronaut, speech_like

SECONDS = 2.03  # 50 rows at 25 fps (and a part of a frame), 101 frames at 50 fps, 60 at 30
SEED = 5


def run(bundle, settings, wav, fps, workdir, hooks=NO_HOOKS, **fields):
    """Animate ``wav`` at ``fps``; returns the result and every rendered frame (before paste and encode)."""
    options = RenderOptions(enhancer="none", fps=fps, **fields)
    request = AnimationRequest(astronaut(), wav, options, seed=SEED, name=f"clip{fps}")
    return render_job(bundle, settings, request, workdir, hooks)


@pytest.fixture(scope="module")
def jobs(bundle, settings, tmp_path_factory):
    one_by_one = dataclasses.replace(settings, render_batch_size=1, chunk_seconds=1.0)
    wav = speech_like(SECONDS, quiet_at=(0.7,))
    return {fps: run(bundle, one_by_one, wav, fps, tmp_path_factory.mktemp(f"fps{fps}")) for fps in (25, 50, 30)}


@pytest.mark.slow  # three renders, 211 frames
class TestResampledFrames:
    def test_frame_counts_follow_the_rate(self, jobs):
        samples = int(SECONDS * SAMPLE_RATE)
        for fps, (result, frames) in jobs.items():
            assert result.frames == len(frames) == samples * fps // SAMPLE_RATE
            assert (result.fps, result.duration_seconds) == (fps, round(result.frames / fps, 3))

    def test_50_fps_even_frames_are_the_25_fps_frames(self, jobs):
        today, doubled = jobs[25][1], jobs[50][1]
        assert len(doubled) == 2 * len(today) + 1  # 2.03 s: the 101st frame starts at 2.0 s, after row 49
        np.testing.assert_array_equal(doubled[: 2 * len(today) : 2], today)
        assert not np.array_equal(doubled[1:-1:2], today[:-1])  # odd frames are new instants

    def test_30_fps_frames_at_shared_instants_are_the_25_fps_frames(self, jobs):
        today, thirty = jobs[25][1], jobs[30][1]
        np.testing.assert_array_equal(thirty[::6], today[::5])
        for offset in range(1, 6):
            assert not np.array_equal(thirty[offset::6][:9], today[: 5 * 9 : 5])

    def test_a_30_fps_mp4_has_exactly_30_fps_and_the_audios_length(self, jobs):
        result = jobs[30][0]
        probe = ffprobe(result.path)
        video = next(s for s in probe["streams"] if s["codec_type"] == "video")
        audio = next(s for s in probe["streams"] if s["codec_type"] == "audio")
        assert video["r_frame_rate"] == "30/1" and video["avg_frame_rate"] == "30/1"
        assert int(video["nb_frames"]) == result.frames == 60
        assert abs(float(video["duration"]) - SECONDS) < 1 / 30
        assert abs(float(audio["duration"]) - float(video["duration"])) < 1 / 30
        assert_browser_mp4(result.path, SECONDS, fps=30)


def test_streamed_segments_and_progress_count_output_frames(bundle, settings, tmp_path):
    """At 30 fps, 0.5 s segments hold 15 frames and start every 0.5 s; render progress crosses the chunks (cut
    on 25 fps rows) at the output frames of their instants, and reaches the end."""
    chunked = dataclasses.replace(settings, chunk_seconds=1.0)
    wav = speech_like(SECONDS, quiet_at=(0.7,))
    segments, progress = [], []
    hooks = AnimationHooks(
        lambda *call: progress.append(call), on_segment=segments.append, segment_seconds=0.5, first_segment_seconds=0.2
    )
    result, frames = run(bundle, chunked, wav, 30, tmp_path, hooks)
    assert [s.frames for s in segments] == [6, 15, 15, 15, 9]
    assert [s.start_seconds for s in segments] == [0.0, 0.2, 0.7, 1.2, 1.7]
    assert [s.duration_seconds for s in segments] == [0.2, 0.5, 0.5, 0.5, 0.3]
    assert sum(s.frames for s in segments) == result.frames == len(frames) == 60
    chunks = plan_chunks(wav, 1.0)
    assert len(chunks) > 1 and result.chunks == len(chunks)
    ends = [-(-chunk.end_frame * 30 // 25) for chunk in chunks[:-1]]  # a chunk's last instant, in 30 fps frames
    render_calls = [call for call in progress if call[0] == "render"]
    assert len(render_calls) == 60 // 2  # one call per batch of 2
    for _, chunk, total, percent in render_calls:
        done = round((percent - 10.0) / 88.0 * 60)
        assert (chunk, total) == (1 + sum(done >= end for end in ends), len(chunks)), (done, ends)
    assert render_calls[-1][3] == pytest.approx(98.0)


# ---- lip sync: the mouth's onsets at the same instants at every rate ----------------------------------------


@pytest.fixture(scope="module")
def mouth_tracks(bundle):
    wav = tone_bursts()
    return {fps: mouth_track(bundle, wav, fps) for fps in ONSET_RATES}


def test_the_mouths_onsets_fall_at_the_same_instants_at_24_25_and_30_fps(mouth_tracks):
    """The expression coefficient that moves most between silence and the bursts (the mouth's, whatever the
    generated weights make of it) starts to move at the same instants in seconds, within one output frame
    (``python -m bench.lip_sync`` prints them)."""
    column = mouth_column(mouth_tracks[25])
    found = {fps: onsets(track, column, fps) for fps, track in mouth_tracks.items()}
    assert (np.abs(found[25] - np.array(BURSTS_S)) < 0.12).all(), found  # every burst moves it, at its start
    for fps in ONSET_RATES:
        np.testing.assert_allclose(found[fps], found[25], rtol=0, atol=1 / fps + 1e-9, err_msg=str(found))


# ---- what is made at 25 fps and read at each frame's instant: camera keyframes, the reference video ----------


@pytest.mark.parametrize(("fps", "step", "rows"), [(50, 2, 1), (30, 6, 5)])
def test_camera_keyframes_are_spread_over_the_25_fps_rows_and_read_at_each_frames_instant(fps, step, rows):
    samples = 3 * SAMPLE_RATE
    options = RenderOptions(input_yaw=(0.0, 20.0, -5.0), input_roll=(7.0,), fps=fps)
    today = pipeline.camera_for(dataclasses.replace(options, fps=25), Timeline.of_audio(samples))
    camera = pipeline.camera_for(options, Timeline.of_audio(samples, fps))
    assert camera.shape == (samples * fps // SAMPLE_RATE, 3)
    np.testing.assert_array_equal(camera[::step], today[::rows])
    assert np.isnan(camera[:, 1]).all() and (camera[:, 2] == 7.0).all()  # pitch stays predicted
    row, _ = Timeline.of_audio(samples, fps).positions(0, len(camera))
    below, above = today[np.minimum(row, len(today) - 1), 0], today[np.minimum(row + 1, len(today) - 1), 0]
    assert ((camera[:, 0] >= np.minimum(below, above)) & (camera[:, 0] <= np.maximum(below, above))).all()


@pytest.mark.slow  # a reference video preprocessed twice, two short renders
def test_a_reference_video_drives_the_50_fps_video_as_the_25_fps_one_at_shared_instants(bundle, settings, tmp_path):
    image = astronaut()
    shifts = [np.roll(image, (dy, dx), axis=(0, 1)) for dy, dx in ((0, 0), (4, 2), (8, 4), (4, 6), (0, 8), (-4, 4))]
    one_by_one = dataclasses.replace(settings, render_batch_size=1)
    wav = speech_like(0.6)
    frames = {}
    for fps in (25, 50):
        options = RenderOptions(enhancer="none", fps=fps, ref_info="pose+blink", input_yaw=(0.0, 15.0))
        request = AnimationRequest(image, wav, options, seed=SEED, name=f"ref{fps}", ref_frames=np.stack(shifts))
        frames[fps] = render_job(bundle, one_by_one, request, tmp_path)[1]
    assert len(frames[50]) == 2 * len(frames[25]) == 30
    np.testing.assert_array_equal(frames[50][::2], frames[25])


def test_audio_shorter_than_one_frame_at_the_rate_is_refused_before_any_model_work(bundle, settings, tmp_path):
    wav = speech_like(0.045)  # 720 samples: one 40 ms coefficient row, but less than one 50 ms frame at 20 fps
    request = AnimationRequest(astronaut(), wav, RenderOptions(enhancer="none", fps=20), seed=SEED, name="short")
    with pytest.raises(InvalidInput, match="shorter than one video frame at 20 fps"):
        pipeline.animate(bundle, settings, request, str(tmp_path))
    assert not list(tmp_path.iterdir())
    assert (
        pipeline.animate(
            bundle, settings, dataclasses.replace(request, options=RenderOptions(enhancer="none")), str(tmp_path)
        ).frames
        == 1
    )
