"""Images decode to upright RGB uint8 within the size limits; audio decodes with ffmpeg to 16 kHz mono float32."""

import io
import struct
import subprocess
import wave
import zlib

import numpy as np
import pytest
from PIL import Image

from sadtalker.core.errors import AudioTooLong, InvalidInput, UnsupportedMedia
from sadtalker.output.ffmpeg import ffmpeg_exe
from sadtalker.worker.media import (
    MIN_AUDIO_SAMPLES,
    SAMPLE_RATE,
    _ffmpeg_to_wav,
    decode_audio,
    decode_image,
    parse_float_wav,
)

MAX_SIDE = 4096


def encoded(array, fmt, **save_args):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def gradient(height=300, width=320):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x % 256, y % 256, (x + y) % 256], axis=2).astype(np.uint8)


def wav_bytes(samples_int16, rate=SAMPLE_RATE, channels=1):
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.asarray(samples_int16, dtype="<i2").tobytes())
    return buffer.getvalue()


def sine(seconds, rate, freq=440.0, amplitude=0.5):
    t = np.arange(int(round(seconds * rate))) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def ffmpeg_encode(tmp_path, name, args, seconds=2.0):
    """A 440 Hz tone of ``seconds`` encoded by ffmpeg with ``args`` into tmp_path/name; returns its bytes."""
    out = tmp_path / name
    subprocess.run(
        [
            ffmpeg_exe(),
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:duration={seconds}:sample_rate=48000",
            *args,
            str(out),
        ],
        check=True,
    )
    return out.read_bytes()


class TestImages:
    @pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
    def test_lossless_formats_decode_to_the_exact_pixels(self, fmt):
        pixels = gradient()
        extra = {"lossless": True} if fmt == "WEBP" else {}
        decoded = decode_image(encoded(pixels, fmt, **extra), MAX_SIDE)
        assert decoded.dtype == np.uint8 and decoded.shape == (300, 320, 3)
        np.testing.assert_array_equal(decoded, pixels)

    def test_jpeg_decodes_to_rgb_close_to_the_source(self):
        pixels = np.full((300, 300, 3), (200, 40, 90), dtype=np.uint8)
        decoded = decode_image(encoded(pixels, "JPEG", quality=95), MAX_SIDE)
        assert decoded.shape == (300, 300, 3)
        assert np.abs(decoded.astype(int) - pixels).max() <= 3

    def test_exif_orientation_is_applied(self):
        stored = np.zeros((300, 400, 3), dtype=np.uint8)  # stored landscape, white block top-left
        stored[:100, :100] = 255
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
        decoded = decode_image(encoded(stored, "JPEG", quality=95, exif=exif), MAX_SIDE)
        assert decoded.shape == (400, 300, 3)  # displayed portrait
        assert decoded[:90, -90:].mean() > 240  # the block moved to the top-right corner
        assert decoded[:90, :90].mean() < 15

    def test_alpha_is_dropped_keeping_the_colour_channels(self):
        rgba = np.dstack([gradient(), np.full((300, 320), 7, dtype=np.uint8)])
        decoded = decode_image(encoded(rgba, "PNG"), MAX_SIDE)
        np.testing.assert_array_equal(decoded, rgba[:, :, :3])

    def test_greyscale_png_becomes_three_equal_channels(self):
        grey = gradient()[:, :, 0]
        decoded = decode_image(encoded(grey, "PNG"), MAX_SIDE)
        assert decoded.shape == (300, 320, 3)
        np.testing.assert_array_equal(decoded[:, :, 1], grey)

    def test_16_bit_greyscale_is_scaled_not_clipped(self):
        grey16 = np.full((260, 260), 32896, dtype=np.uint16)
        grey16[0, 0] = 65535
        image = Image.fromarray(grey16)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        decoded = decode_image(buffer.getvalue(), MAX_SIDE)
        assert decoded[1, 1].tolist() == [128, 128, 128] and decoded[0, 0].tolist() == [255, 255, 255]

    def test_paletted_png_decodes(self):
        paletted = Image.fromarray(gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        buffer = io.BytesIO()
        paletted.save(buffer, format="PNG")
        assert decode_image(buffer.getvalue(), MAX_SIDE).shape == (300, 320, 3)

    @pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
    def test_other_image_formats_are_unsupported_media(self, fmt):
        with pytest.raises(UnsupportedMedia, match="send PNG, JPEG or WebP"):
            decode_image(encoded(gradient(), fmt), MAX_SIDE)

    def test_bytes_that_are_no_image_are_unsupported_media(self):
        with pytest.raises(UnsupportedMedia, match="not a format we can read"):
            decode_image(b"hello, I am text and not a picture", MAX_SIDE)

    def test_truncated_png_is_unsupported_media(self):
        data = encoded(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8), "PNG")
        with pytest.raises(UnsupportedMedia, match="corrupt or truncated"):
            decode_image(data[: len(data) // 2], MAX_SIDE)

    @pytest.mark.parametrize("shape", [(255, 300), (300, 255), (64, 64)])
    def test_images_under_256_pixels_a_side_are_invalid_input(self, shape):
        with pytest.raises(InvalidInput, match="at least 256x256"):
            decode_image(encoded(np.zeros(shape + (3,), np.uint8), "PNG"), MAX_SIDE)

    def test_exactly_256_is_accepted(self):
        assert decode_image(encoded(np.zeros((256, 256, 3), np.uint8), "PNG"), MAX_SIDE).shape == (256, 256, 3)

    def test_side_over_the_setting_is_invalid_input(self):
        with pytest.raises(InvalidInput, match="largest side allowed is 500"):
            decode_image(encoded(np.zeros((300, 501, 3), np.uint8), "PNG"), 500)

    def test_a_header_claiming_a_giant_image_is_refused_before_decoding(self):
        with pytest.raises(InvalidInput, match="largest side allowed"):
            decode_image(png_with_claimed_size(100_000, 100_000), MAX_SIDE)

    def test_pixel_bombs_are_refused_even_under_a_generous_side_limit(self):
        with pytest.raises(InvalidInput, match="too many pixels"):
            decode_image(png_with_claimed_size(60_000, 60_000), 100_000)


def png_with_claimed_size(width, height):
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression-bomb shape)."""
    data = bytearray(encoded(np.zeros((1, 1, 3), np.uint8), "PNG"))
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes of header fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


class TestAudio:
    def test_16k_mono_wav_passes_through_unchanged(self, tmp_path):
        ints = (sine(1.5, SAMPLE_RATE) * 32767).astype(np.int16)
        audio = decode_audio(wav_bytes(ints), tmp_path, max_seconds=600)
        assert audio.samples.dtype == np.float32 and audio.samples.shape == (24000,)
        np.testing.assert_array_equal(audio.samples, ints.astype(np.float32) / 32768)
        assert audio.duration_s == 1.5

    def test_stereo_44k_is_averaged_and_resampled_to_16k(self, tmp_path):
        rate = 44100
        left, right = sine(2.0, rate, amplitude=0.6), sine(2.0, rate, amplitude=0.2)
        interleaved = (np.stack([left, right], axis=1) * 32767).astype(np.int16).ravel()
        audio = decode_audio(wav_bytes(interleaved, rate=rate, channels=2), tmp_path, max_seconds=600)
        assert audio.samples.shape == (32000,)  # ceil(88200 * 16000 / 44100)
        expected = sine(2.0, SAMPLE_RATE, amplitude=0.4)  # the mean of the two channels
        middle = slice(800, -800)
        assert np.abs(audio.samples[middle] - expected[middle]).max() < 2e-3

    @pytest.mark.parametrize(
        "name, args",
        [
            ("tone.mp3", ["-c:a", "libmp3lame"]),
            ("tone.m4a", ["-c:a", "aac"]),
            ("tone.ogg", ["-c:a", "libopus"]),
            ("tone.flac", ["-c:a", "flac"]),
            ("tone.webm", ["-c:a", "libopus"]),
        ],
    )
    def test_compressed_formats_decode_to_their_length(self, tmp_path, name, args):
        data = ffmpeg_encode(tmp_path, name, args)
        audio = decode_audio(data, tmp_path, max_seconds=600)
        assert abs(audio.duration_s - 2.0) < 0.06  # encoder priming/padding only
        assert 0.05 < audio.peak < 0.2  # ffmpeg's sine source has amplitude 1/8

    def test_undecodable_bytes_are_unsupported_media_with_ffmpegs_message(self, tmp_path):
        with pytest.raises(UnsupportedMedia, match="ffmpeg could not decode the audio: .+") as caught:
            decode_audio(b"\x00\x01garbage that is no audio" * 100, tmp_path, max_seconds=600)
        assert str(tmp_path) not in caught.value.message  # the temporary path is not shown

    def test_an_image_sent_as_audio_is_unsupported_media(self, tmp_path):
        with pytest.raises(UnsupportedMedia, match="no audio stream"):
            decode_audio(encoded(gradient(), "PNG"), tmp_path, max_seconds=600)

    def test_audio_over_the_limit_is_audio_too_long(self, tmp_path):
        data = wav_bytes(np.zeros(3 * SAMPLE_RATE, np.int16) + 1000)
        with pytest.raises(AudioTooLong, match="longer than the 2 s limit"):
            decode_audio(data, tmp_path, max_seconds=2.0)

    def test_audio_exactly_at_the_limit_is_accepted(self, tmp_path):
        data = wav_bytes(np.zeros(2 * SAMPLE_RATE, np.int16) + 1000)
        assert decode_audio(data, tmp_path, max_seconds=2.0).duration_s == 2.0

    def test_decoding_stops_shortly_after_the_limit(self, tmp_path):
        path = tmp_path / "long.wav"
        path.write_bytes(wav_bytes(np.zeros(30 * SAMPLE_RATE, np.int16)))
        rate, channels, samples = parse_float_wav(_ffmpeg_to_wav(str(path), 3.0))
        assert (rate, channels) == (SAMPLE_RATE, 1) and samples.shape == (3 * SAMPLE_RATE,)

    @pytest.mark.parametrize("n_samples", [0, 320, MIN_AUDIO_SAMPLES - 1])
    def test_audio_shorter_than_one_frame_is_invalid_input(self, tmp_path, n_samples):
        with pytest.raises(InvalidInput, match="one video frame"):
            decode_audio(wav_bytes(np.full(n_samples, 500, np.int16)), tmp_path, max_seconds=600)

    def test_one_frame_of_audio_is_enough(self, tmp_path):
        audio = decode_audio(wav_bytes(np.full(MIN_AUDIO_SAMPLES, 500, np.int16)), tmp_path, max_seconds=600)
        assert audio.samples.shape == (MIN_AUDIO_SAMPLES,)

    def test_silent_audio_is_accepted_and_marked_silent(self, tmp_path):
        audio = decode_audio(wav_bytes(np.zeros(SAMPLE_RATE, np.int16)), tmp_path, max_seconds=600)
        assert audio.silent and audio.peak == 0.0 and audio.duration_s == 1.0
        assert not np.any(audio.samples)

    def test_speech_is_not_marked_silent(self, tmp_path):
        audio = decode_audio(wav_bytes((sine(1.0, SAMPLE_RATE) * 32767).astype(np.int16)), tmp_path, 600)
        assert not audio.silent

    def test_the_recording_is_kept_as_sent_in_the_work_folder_only(self, tmp_path):
        data = wav_bytes(np.zeros(SAMPLE_RATE, np.int16))
        audio = decode_audio(data, tmp_path, max_seconds=600)
        assert list(tmp_path.iterdir()) == [tmp_path / "audio.input"]  # removed with the job's folder
        assert (tmp_path / "audio.input").read_bytes() == data
        assert (audio.source.path, audio.source.sample_rate, audio.source.channels) == (
            str(tmp_path / "audio.input"),
            SAMPLE_RATE,
            1,
        )

    def test_parse_float_wav_refuses_non_wav_output(self):
        with pytest.raises(UnsupportedMedia):
            parse_float_wav(b"not a wav file at all")
