"""The video carries the caller's recording as it was sent: channels, sample rate, bandwidth, cut to the video.

Each case makes a real file with ffmpeg, runs it through the worker's decoder (``decode_audio``: what the models
hear, and the file kept for the video) and the encoder, then decodes the MP4's sound track and looks at it.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from sadtalker.core.constants import num_frames
from sadtalker.output.ffmpeg import ffmpeg_exe
from sadtalker.output.video import VideoWriter
from sadtalker.worker.media import decode_audio
from tests.support.mediacheck import FRAME_S, ffprobe

SECONDS = 1.5


def make_audio(path, *lavfi_and_args: str) -> bytes:
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", *lavfi_and_args, "-t", str(SECONDS), str(path)], check=True
    )
    return path.read_bytes()


def render(tmp_path, data: bytes):
    """decode_audio + VideoWriter, as a job does; returns (the decoded audio, the MP4's audio stream info, path)."""
    workdir = tmp_path / "job"
    workdir.mkdir()
    audio = decode_audio(data, workdir, max_seconds=600)
    frames = num_frames(len(audio.samples))
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 32, 32, audio.source, n_frames=frames, codec="libx264") as writer:
        writer.write(np.zeros((frames, 32, 32, 3), np.uint8))
    stream = next(s for s in ffprobe(out)["streams"] if s["codec_type"] == "audio")
    return audio, stream, out


def track(path, rate: int, channels: int) -> np.ndarray:
    """The MP4's sound track decoded to float32 (n, channels)."""
    raw = subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-f",
            "f32le",
            "-ac",
            str(channels),
            "-ar",
            str(rate),
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, "<f4").reshape(-1, channels)


def level_db(signal: np.ndarray, rate: int, hz: float) -> float:
    """Amplitude (dBFS) of the sine at ``hz``: the windowed FFT's peak within 50 Hz of it."""
    window = np.hanning(len(signal))
    spectrum = np.abs(np.fft.rfft(signal * window)) * 2 / window.sum()
    freqs = np.fft.rfftfreq(len(signal), 1 / rate)
    return float(20 * np.log10(spectrum[np.abs(freqs - hz) <= 50].max() + 1e-12))


def test_stereo_44k_keeps_both_channels_and_both_tones(tmp_path):
    data = make_audio(
        tmp_path / "in.wav",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=9000:sample_rate=44100",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=13000:sample_rate=44100",
        "-filter_complex",
        "[0:a][1:a]join=inputs=2:channel_layout=stereo[a]",
        "-map",
        "[a]",
        "-c:a",
        "pcm_s16le",
    )
    audio, stream, out = render(tmp_path, data)
    assert (stream["sample_rate"], stream["channels"]) == ("44100", 2)
    left, right = track(out, 44100, 2)[4410:-4410].T  # skip the encoder's edges
    source_level = level_db(np.sin(2 * np.pi * 9000 * np.arange(44100) / 44100) / 8, 44100, 9000)
    levels = {
        name: (level_db(signal, 44100, 9000), level_db(signal, 44100, 13000))
        for name, signal in (("left", left), ("right", right))
    }
    print(
        f"out: {stream['sample_rate']} Hz, {stream['channels']} channels; input tone level {source_level:.2f} dBFS; "
        + "; ".join(f"{name} 9 kHz {a:.2f} dBFS, 13 kHz {b:.2f} dBFS" for name, (a, b) in levels.items())
    )
    assert abs(level_db(left, 44100, 9000) - source_level) < 1.0  # lavfi's sine is at 1/8 full scale
    assert abs(level_db(right, 44100, 13000) - source_level) < 1.0
    assert level_db(left, 44100, 13000) < source_level - 40 and level_db(right, 44100, 9000) < source_level - 40
    assert abs(float(stream["duration"]) - num_frames(len(audio.samples)) * FRAME_S) <= FRAME_S


def test_16k_mono_stays_16k_mono(tmp_path):
    data = make_audio(tmp_path / "in.wav", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000")
    _, stream, _ = render(tmp_path, data)
    assert (stream["sample_rate"], stream["channels"]) == ("16000", 1)


def test_48k_surround_comes_out_stereo(tmp_path):
    data = make_audio(
        tmp_path / "in.wav",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-af",
        "pan=5.1|FL=c0|FR=c0|FC=c0|LFE=c0|BL=c0|BR=c0",
    )
    audio, stream, _ = render(tmp_path, data)
    assert audio.source.channels == 6
    assert (stream["sample_rate"], stream["channels"]) == ("48000", 2)


@pytest.mark.parametrize("name, codec, rate", [("in.mp3", "libmp3lame", 44100), ("in.ogg", "libopus", 48000)])
def test_compressed_recordings_keep_their_rate(tmp_path, name, codec, rate):
    data = make_audio(tmp_path / name, "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}", "-c:a", codec)
    _, stream, _ = render(tmp_path, data)
    assert (stream["sample_rate"], stream["channels"]) == (str(rate), 1)


def test_a_rate_aac_does_not_have_becomes_48k(tmp_path):
    data = make_audio(tmp_path / "in.wav", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=37800")
    _, stream, _ = render(tmp_path, data)
    assert stream["sample_rate"] == "48000"
