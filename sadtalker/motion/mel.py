"""Audio features for the audio-to-motion networks: frame count, mel spectrogram, per-frame windows.

Reproduces the reference's Wav2Lip-style features: pre-emphasis, a centred
STFT, an 80-band Slaney mel filterbank, dB with a floor, and a symmetric normalisation to [-4, 4].
The arithmetic is float64 end to end, as in the reference (its pre-emphasis ``lfilter`` upcasts the
float32 wave); only the windows handed to the networks are float32.

All functions take and return numpy arrays; nothing here touches torch or files.
"""

from __future__ import annotations

import functools

import numpy as np

from sadtalker.core.constants import MODEL_FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, num_frames  # noqa: F401 (re-exported)

# Wav2Lip hyper-parameters used by SadTalker.
N_FFT = 800
HOP_LENGTH = 200  # 12.5 ms: 80 mel frames per second
WIN_LENGTH = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0  # symmetric normalisation: output in [-4, 4]

MEL_FRAMES_PER_SECOND = 80.0  # SAMPLE_RATE / HOP_LENGTH
WINDOW_MEL_FRAMES = 16  # mel frames per video frame window (0.2 s)
WINDOW_LEAD_FRAMES = 2  # a window starts two video frames before its own frame


def fit_to_frames(wav: np.ndarray, frames: int) -> np.ndarray:
    """Cut or zero-pad the wave to exactly ``frames`` * 640 samples (same dtype)."""
    length = frames * SAMPLES_PER_FRAME
    if len(wav) >= length:
        return wav[:length]
    return np.pad(wav, (0, length - len(wav)), mode="constant", constant_values=0)


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    """(80, 401) float32 Slaney filterbank (librosa's default dtype, as in the reference)."""
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)


def _preemphasis(wav: np.ndarray) -> np.ndarray:
    """y[n] = x[n] - 0.97 x[n-1] in float64 (first sample unchanged)."""
    from scipy import signal

    return signal.lfilter([1.0, -PREEMPHASIS], [1.0], wav)


def melspectrogram(wav16k: np.ndarray) -> np.ndarray:
    """Normalised log-mel spectrogram.

    Parameters
    ----------
    wav16k : (n,) float32 mono wave at 16 kHz, already fitted to whole frames.

    Returns
    -------
    (80, 1 + n // 200) float64, values in [-4, 4].
    """
    import librosa

    emphasised = _preemphasis(np.asarray(wav16k))
    spectrum = librosa.stft(y=emphasised, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH)
    mel = np.dot(_mel_basis(), np.abs(spectrum))
    # dB with a floor at MIN_LEVEL_DB (amplitude 1e-5), relative to REF_LEVEL_DB.
    floor = np.exp(MIN_LEVEL_DB / 20 * np.log(10))
    db = 20 * np.log10(np.maximum(floor, mel)) - REF_LEVEL_DB
    scaled = (2 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB)) - MAX_ABS_VALUE
    return np.clip(scaled, -MAX_ABS_VALUE, MAX_ABS_VALUE)


def window_start(frame: int) -> int:
    """First mel frame of video frame ``frame``'s window, truncated toward zero (-6, -3, 0, 3, ...)."""
    return int(MEL_FRAMES_PER_SECOND * ((frame - WINDOW_LEAD_FRAMES) / float(MODEL_FPS)))


def mel_windows(mel: np.ndarray, frames: int) -> np.ndarray:
    """Cut one 16-frame mel window per video frame, indices clamped to the spectrogram.

    Parameters
    ----------
    mel : (80, M) spectrogram from :func:`melspectrogram`.
    frames : T, the number of video frames.

    Returns
    -------
    (T, 80, 16) float32.
    """
    last = mel.shape[1] - 1
    starts = np.array([window_start(i) for i in range(frames)], dtype=np.int64).reshape(-1, 1)
    index = np.clip(starts + np.arange(WINDOW_MEL_FRAMES), 0, last)  # (T, 16)
    windows = mel[:, index]  # (80, T, 16)
    return np.ascontiguousarray(windows.transpose(1, 0, 2)).astype(np.float32)
