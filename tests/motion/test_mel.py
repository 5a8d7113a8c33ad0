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


# The spectrogram in pieces (mel_columns, MelWindows) against the whole audio's, bit for bit.


def pieces(total: int, size: int):
    """[start, stop) ranges of ``size`` tiling 0..total, the last one shorter when ``size`` does not divide it."""
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def speech_like_wave(samples: int) -> np.ndarray:
    rng = np.random.default_rng(samples)
    t = np.arange(samples) / audio.SAMPLE_RATE
    voice = np.sin(2 * np.pi * 140 * t) + 0.5 * np.sin(2 * np.pi * 1100 * t) + 0.05 * rng.standard_normal(samples)
    return (0.2 * voice * (0.4 + 0.3 * np.abs(np.sin(2 * np.pi * 2.7 * t)))).astype(np.float32)


# 38200 samples: 192 columns (a multiple of 1, 3, 64); 78720 samples (123 frames): 394 columns (none of 7, 64, 100).
@pytest.mark.parametrize("samples", [38200, 78720])
@pytest.mark.parametrize("size", [1, 3, 7, 64, 100])
def test_mel_columns_in_pieces_equal_the_whole_spectrogram(samples, size):
    wav = speech_like_wave(samples)
    whole = audio.melspectrogram(wav)
    assert whole.shape[1] == audio.mel_column_count(samples)
    parts = [audio.mel_columns(wav, start, stop) for start, stop in pieces(whole.shape[1], size)]
    assert parts[-1].shape == (80, whole.shape[1] % size or size)  # the last piece, short or not
    for (start, stop), part in zip(pieces(whole.shape[1], size), parts, strict=True):
        np.testing.assert_array_equal(part, whole[:, start:stop], err_msg=f"columns {start}:{stop}")
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)


def test_mel_columns_refuse_columns_outside_the_spectrogram():
    with pytest.raises(ValueError, match="outside"):
        audio.mel_columns(np.zeros(6400, dtype=np.float32), 30, 34)  # 33 columns


@pytest.mark.parametrize("size", [1, 25, 32, 59, 123])
def test_mel_windows_in_pieces_equal_the_windows_of_the_whole_spectrogram(size):
    frames = 123  # 25 and 59 leave a short last piece, 1 and 123 do not
    wav = audio.fit_to_frames(speech_like_wave(frames * audio.SAMPLES_PER_FRAME + 300), frames)
    whole = audio.mel_windows(audio.melspectrogram(wav), frames)
    lazy = audio.MelWindows(wav, frames)
    assert lazy.shape == whole.shape and len(lazy) == frames
    for start, stop in pieces(frames, size):
        piece = np.asarray(lazy[start:stop])
        assert piece.dtype == np.float32
        np.testing.assert_array_equal(piece, whole[start:stop], err_msg=f"frames {start}:{stop}")
    np.testing.assert_array_equal(np.asarray(lazy[10:100][5:]), whole[15:100])  # a piece of a piece
    assert np.asarray(lazy[50:50]).shape == (0, 80, 16)


def test_mel_windows_in_pieces_equal_golden_a_whole_windows(golden_audio):
    frames = int(golden_audio["T"])
    whole = audio.mel_windows(audio.melspectrogram(golden_audio["wav"]), frames)
    lazy = audio.MelWindows(golden_audio["wav"], frames)
    np.testing.assert_array_equal(np.concatenate([np.asarray(lazy[a:b]) for a, b in pieces(frames, 32)]), whole)


@pytest.mark.filterwarnings("ignore:n_fft=800 is too large")  # librosa, on the whole 640-sample wave
@pytest.mark.parametrize("frames", [1, 2, 4])
def test_mel_windows_of_audio_shorter_than_one_fft_equal_the_whole(frames):
    wav = audio.fit_to_frames(speech_like_wave(frames * audio.SAMPLES_PER_FRAME), frames)
    whole = audio.mel_windows(audio.melspectrogram(wav), frames)
    for start in range(frames):
        np.testing.assert_array_equal(np.asarray(audio.MelWindows(wav, frames)[start : start + 1]), whole[start:][:1])
