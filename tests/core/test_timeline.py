"""Output frames against the 25 fps coefficient rows: counts, instants, the rows a batch needs."""

from __future__ import annotations

import numpy as np
import pytest

from sadtalker.core.constants import FPS_RANGE, MODEL_FPS, SAMPLE_RATE, num_frames
from sadtalker.core.timeline import Timeline

LENGTHS = (640, 1000, 16000, 16319, 16320, 16640, 47999, 160000 + 123)  # samples of 16 kHz audio
RATES = range(FPS_RANGE[0], FPS_RANGE[1] + 1)


@pytest.mark.parametrize("samples", LENGTHS)
def test_at_25_fps_the_frame_count_is_the_references(samples):
    timeline = Timeline.of_audio(samples)
    assert timeline.frames == timeline.model_frames == num_frames(samples) == samples // 640
    assert timeline.native


@pytest.mark.parametrize("samples", LENGTHS)
@pytest.mark.parametrize("fps", RATES)
def test_the_video_ends_less_than_one_frame_before_the_audio(samples, fps):
    timeline = Timeline.of_audio(samples, fps)
    audio_s = samples / SAMPLE_RATE
    assert 0 <= audio_s - timeline.seconds(timeline.frames) < 1 / fps


@pytest.mark.parametrize("fps", RATES)
def test_each_frame_sits_at_its_own_instant_among_the_rows(fps):
    timeline = Timeline.of_audio(SAMPLE_RATE * 7, fps)
    row, fraction = timeline.positions(0, timeline.frames)
    instants = np.arange(timeline.frames) / fps
    np.testing.assert_allclose((row + fraction) / MODEL_FPS, instants, rtol=0, atol=1e-12)
    assert ((fraction >= 0) & (fraction < 1)).all()


def test_instants_shared_with_25_fps_land_exactly_on_a_row():
    for fps, step, rows in ((25, 1, 1), (50, 2, 1), (30, 6, 5), (40, 8, 5), (60, 12, 5), (20, 4, 5)):
        timeline = Timeline.of_audio(SAMPLE_RATE * 3, fps)
        row, fraction = timeline.positions(0, timeline.frames)
        shared = np.arange(0, timeline.frames, step)
        assert (fraction[shared] == 0.0).all()
        assert np.array_equal(row[shared], shared // step * rows)
        others = np.setdiff1d(np.arange(timeline.frames), shared)
        assert (fraction[others] > 0).all(), fps  # nothing else is on a row


def test_rows_for_a_batch_cover_its_windows_and_the_row_after_a_fractional_instant():
    native = Timeline.of_audio(SAMPLE_RATE * 4)
    assert [native.rows_for(stop, 13) for stop in (0, 1, 10, 87, 100)] == [0, 14, 23, 100, 100]
    thirty = Timeline.of_audio(SAMPLE_RATE * 4, 30)  # 100 rows, 120 frames
    assert thirty.rows_for(6, 13) == 5 + 13 + 1  # frame 5 is row 4 + 1/6: rows up to 4 + 1 + 13
    assert thirty.rows_for(7, 13) == 5 + 13 + 1  # frame 6 is row 5 exactly: up to 5 + 13
    assert thirty.rows_for(120, 13) == 100


def test_first_frame_at_a_row_is_the_first_frame_not_before_it():
    timeline = Timeline.of_audio(SAMPLE_RATE * 10, 30)
    for row in range(0, 250, 7):
        frame = timeline.first_frame_at(row)
        assert frame / 30 >= row / 25 > (frame - 1) / 30
