"""Audio features for the audio-to-motion networks: frame count, mel spectrogram, per-frame windows.

Reproduces the reference's Wav2Lip-style features: pre-emphasis, a centred
STFT, an 80-band Slaney mel filterbank, dB with a floor, and a symmetric normalisation to [-4, 4].
The arithmetic is float64 end to end, as in the reference (its pre-emphasis ``lfilter`` upcasts the
float32 wave); only the windows handed to the networks are float32.

All functions take and return numpy arrays; nothing here touches torch or files. :class:`MelWindows` gives the
same windows as :func:`mel_windows` a few frames at a time, each from the samples it covers (:func:`mel_columns`).
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple, Union

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
# The filterbank product runs on blocks of this many columns at fixed places (columns 0-63, 64-127, ...), for the
# whole spectrogram and for a piece alike: each column is then summed by the same BLAS call on the same block, so a
# piece equals the whole bit for bit whatever kernel, block path or thread count BLAS picks on the machine (a BLAS
# product's rounding can depend on how many columns it is given).
MEL_BLOCK_COLUMNS = 64


def fit_to_frames(wav: np.ndarray, frames: int) -> np.ndarray:
    """Cut or zero-pad the wave to exactly ``frames`` * 640 samples (same dtype)."""
    length = frames * SAMPLES_PER_FRAME
    if len(wav) >= length:
        return wav[:length]
    return np.pad(wav, (0, length - len(wav)), mode="constant", constant_values=0)


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    """(80, 401) Slaney filterbank: librosa's float32 values (its default dtype, as in the reference), widened to
    float64 once, as the reference's product with the float64 magnitudes widens them."""
    import librosa

    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
    return basis.astype(np.float64)


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
    return _normalised_mel(spectrum)


def _normalised_mel(spectrum: np.ndarray) -> np.ndarray:
    """(401, M) complex STFT of the columns from a multiple of :data:`MEL_BLOCK_COLUMNS` on -> (80, M) mel bands in
    dB, normalised to [-4, 4]; column by column, the filterbank product in blocks of that many columns."""
    magnitude = np.abs(spectrum)
    basis = _mel_basis()
    mel = np.empty((N_MELS, magnitude.shape[1]))
    for block in range(0, magnitude.shape[1], MEL_BLOCK_COLUMNS):
        columns = slice(block, block + MEL_BLOCK_COLUMNS)
        mel[:, columns] = basis @ np.ascontiguousarray(magnitude[:, columns])
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


def mel_column_count(samples: int) -> int:
    """M, the columns :func:`melspectrogram` gives for ``samples`` samples (a centred STFT: 1 + n // 200)."""
    return 1 + samples // HOP_LENGTH


def _block(start: int, stop: int, total: int) -> Tuple[int, int]:
    """[start, stop) widened to whole :data:`MEL_BLOCK_COLUMNS` blocks of the ``total`` columns."""
    size = MEL_BLOCK_COLUMNS
    return start // size * size, min(-(-stop // size) * size, total)


def mel_columns(wav16k: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Columns [start, stop) of ``melspectrogram(wav16k)``, bit for bit, from the samples they cover.

    Column j is the windowed FFT of the pre-emphasised samples [200 j - 400, 200 j + 400), zeros beyond the wave's
    two ends (the centred STFT's padding); pre-emphasis needs the one sample before the first. The rest is column by
    column. Returns (80, stop - start) float64.
    """
    import librosa

    wav = np.asarray(wav16k)
    total = mel_column_count(len(wav))
    if not 0 <= start <= stop <= total:
        raise ValueError(f"columns [{start}, {stop}) outside the spectrogram's {total}")
    first, last = _block(start, stop, total)
    low, high = first * HOP_LENGTH - N_FFT // 2, (last - 1) * HOP_LENGTH + N_FFT // 2  # samples, may pass the ends
    begin, end = max(low, 0), min(high, len(wav))
    emphasised = _preemphasis(wav[begin - 1 : end])[1:] if begin > 0 else _preemphasis(wav[:end])
    padded = np.pad(emphasised, (begin - low, high - end))
    spectrum = librosa.stft(y=padded, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH, center=False)
    return _normalised_mel(spectrum)[:, start - first : stop - first]


class MelWindows:
    """``mel_windows(melspectrogram(wav16k), frames)`` computed for the frames asked for, when asked for.

    ``windows[a:b]`` is the same kind of object for frames a..b-1 (nothing computed yet); ``np.asarray`` of it
    computes their (b - a, 80, 16) float32 windows from the mel columns they read (:func:`mel_columns`), so the
    coefficients of the first frames need not wait for the whole audio's spectrogram.
    """

    def __init__(self, wav16k: np.ndarray, frames: int, start: int = 0, stop: Optional[int] = None) -> None:
        self.wav, self.frames = wav16k, frames  # the wave fitted to ``frames`` frames (fit_to_frames)
        self.start, self.stop = start, frames if stop is None else stop

    @property
    def shape(self) -> Tuple[int, int, int]:
        return (len(self), N_MELS, WINDOW_MEL_FRAMES)

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, frames: slice) -> "MelWindows":
        if not isinstance(frames, slice) or frames.step not in (None, 1):
            raise TypeError(f"MelWindows takes a slice with step 1, got {frames!r}")
        start, stop, _ = frames.indices(len(self))
        return MelWindows(self.wav, self.frames, self.start + start, self.start + max(start, stop))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if len(self) == 0:
            return np.zeros((0, N_MELS, WINDOW_MEL_FRAMES), dtype=dtype or np.float32)
        total = mel_column_count(len(self.wav))
        starts = np.array([window_start(i) for i in range(self.start, self.stop)], dtype=np.int64).reshape(-1, 1)
        index = np.clip(starts + np.arange(WINDOW_MEL_FRAMES), 0, total - 1)  # (n, 16), as in mel_windows
        first, last = int(index.min()), int(index.max()) + 1
        windows = mel_columns(self.wav, first, last)[:, index - first]  # (80, n, 16)
        out = np.ascontiguousarray(windows.transpose(1, 0, 2)).astype(np.float32)
        return out if dtype is None else out.astype(dtype)


Mels = Union[np.ndarray, MelWindows]  # what the coefficient stage reads: the windows, or the wave to make them from
