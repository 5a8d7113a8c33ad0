"""Mel features and per-frame windows: golden scenario A (reference run) and the indexing rules."""

import numpy as np
import pytest
import soundfile

from sadtalker.motion import mel as audio

MEL_TOLERANCE = 1e-4  # golden README: mel / indiv_mels atol 1e-4


@pytest.fixture(scope="module")
def golden_audio(golden_a_dir):
    return np.load(golden_a_dir / "audio.npz")


@pytest.fixture(scope="module")
def scenario_wav(golden_a_dir):
    wav, rate = soundfile.read(str(golden_a_dir / "scenario_a.wav"), dtype="float32")
    assert rate == audio.SAMPLE_RATE
    return wav


def test_wav_read_as_float32_matches_the_reference_load(scenario_wav, golden_audio):
    frames = audio.num_frames(len(scenario_wav))
    np.testing.assert_array_equal(audio.fit_to_frames(scenario_wav, frames), golden_audio["wav"])


def test_frame_count_of_scenario_a_is_75(scenario_wav, golden_audio):
    assert audio.num_frames(len(scenario_wav)) == int(golden_audio["T"]) == 75


def test_mel_matches_golden_a(golden_audio):
    mel = audio.melspectrogram(golden_audio["wav"])
    assert mel.dtype == np.float64
    assert mel.shape == golden_audio["mel"].shape == (80, 241)
    assert np.abs(mel - golden_audio["mel"]).max() <= MEL_TOLERANCE


def test_mel_windows_match_golden_a(golden_audio):
    windows = audio.mel_windows(audio.melspectrogram(golden_audio["wav"]), int(golden_audio["T"]))
    assert windows.dtype == np.float32 and windows.shape == (75, 80, 16)
    assert np.abs(windows - golden_audio["indiv_mels"]).max() <= MEL_TOLERANCE


def test_mel_values_are_clipped_to_plus_minus_four():
    rng = np.random.default_rng(0)
    loud = (rng.standard_normal(16000) * 10).astype(np.float32)
    silent = np.zeros(16000, dtype=np.float32)
    assert audio.melspectrogram(loud).max() == pytest.approx(4.0)
    assert audio.melspectrogram(silent).min() == pytest.approx(-4.0)


def test_mel_has_one_frame_per_200_samples_plus_one():
    assert audio.melspectrogram(np.zeros(6400, dtype=np.float32)).shape == (80, 33)


@pytest.mark.parametrize("samples,frames", [(0, 0), (639, 0), (640, 1), (48000, 75), (48639, 75)])
def test_num_frames_floors_to_whole_25fps_frames(samples, frames):
    assert audio.num_frames(samples) == frames


def test_fit_to_frames_cuts_and_zero_pads():
    wav = np.arange(1, 1001, dtype=np.float32)
    assert len(audio.fit_to_frames(wav, 1)) == 640
    padded = audio.fit_to_frames(wav, 2)
    assert len(padded) == 1280 and padded.dtype == np.float32
    assert np.all(padded[1000:] == 0) and padded[999] == 1000


@pytest.mark.parametrize("frame,start", [(0, -6), (1, -3), (2, 0), (3, 3), (4, 6), (7, 16), (27, 80)])
def test_window_start_truncates_toward_zero(frame, start):
    assert audio.window_start(frame) == start


def test_windows_clamp_to_the_first_and_last_mel_frame():
    mel = np.tile(np.arange(20, dtype=np.float64), (80, 1))  # value = mel frame index
    windows = audio.mel_windows(mel, 8)
    assert list(windows[0, 0]) == [0] * 7 + list(range(1, 10))
    assert list(windows[7, 0]) == list(range(16, 20)) + [19] * 12
