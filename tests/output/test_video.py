"""The streaming MP4 encoder, checked with ffprobe and by parsing the file's boxes."""

import shutil
import subprocess

import numpy as np
import pytest

from sadtalker.core.constants import num_frames
from sadtalker.core.contract import SourceAudio
from sadtalker.output.ffmpeg import ffmpeg_exe
from sadtalker.output.video import (
    EncoderError,
    VideoWriter,
    audio_span,
    choose_codec,
    even_size,
    mp4_top_level_boxes,
    pad_to_even,
    write_wav,
)
from tests.support.mediacheck import decode_rgb, ffprobe

SR = 16000
needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed (apt ffmpeg)")


def tone(seconds: float, extra: int = 0) -> np.ndarray:
    n = int(seconds * SR) + extra
    return (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / SR)).astype(np.float32)


def encode(path, frames: np.ndarray, audio, n_frames=None, batch: int = 8, queue_batches: int = 0):
    with VideoWriter(
        path, frames.shape[2], frames.shape[1], audio, n_frames=n_frames, codec="libx264", queue_batches=queue_batches
    ) as writer:
        for i in range(0, len(frames), batch):
            writer.write(frames[i : i + batch])
    return writer


@needs_ffprobe
@pytest.mark.parametrize("queue_batches", [0, 3])
def test_array_audio_gives_h264_yuv420p_25fps_aac_of_the_audio_length(tmp_path, queue_batches):
    wav = tone(1.5, extra=555)  # 1.534 s: 38 whole frames, 35 ms left over
    frames = np.random.default_rng(0).integers(0, 256, (num_frames(len(wav)), 64, 96, 3), dtype=np.uint8)
    encode(tmp_path / "out.mp4", frames, wav, queue_batches=queue_batches)
    info = ffprobe(tmp_path / "out.mp4")
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["codec_name"], video["pix_fmt"], video["r_frame_rate"]) == ("h264", "yuv420p", "25/1")
    assert (video["width"], video["height"], int(video["nb_frames"])) == (96, 64, 38)
    assert (audio["codec_name"], audio["sample_rate"], audio["channels"]) == ("aac", "16000", 1)
    assert abs(float(info["format"]["duration"]) - len(wav) / SR) <= 0.04
    assert abs(float(audio["duration"]) - float(video["duration"])) <= 0.04


def test_faststart_puts_moov_before_mdat(tmp_path):
    wav = tone(0.5)
    encode(tmp_path / "out.mp4", np.zeros((12, 32, 32, 3), np.uint8), wav)
    boxes = mp4_top_level_boxes(tmp_path / "out.mp4")
    assert boxes.index("moov") < boxes.index("mdat")


def test_box_parser_sees_moov_after_mdat_without_faststart(tmp_path):
    path = tmp_path / "plain.mp4"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=black:s=32x32:r=25",
            "-frames:v",
            "5",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    boxes = mp4_top_level_boxes(path)
    assert boxes.index("moov") > boxes.index("mdat")


@needs_ffprobe
def test_audio_file_path_is_muxed_and_cut_to_the_video(tmp_path):
    src = tmp_path / "speech.mp3"  # 44.1 kHz stereo, 1.3 s: longer than the 30 frames we encode
    tone_src = "sine=frequency=300:sample_rate=44100:duration=1.3"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", tone_src, "-ac", "2", str(src)], check=True)
    encode(tmp_path / "out.mp4", np.full((30, 48, 48, 3), 128, np.uint8), SourceAudio(str(src), 44100, 2), n_frames=30)
    info = ffprobe(tmp_path / "out.mp4")
    assert {s["codec_name"] for s in info["streams"]} == {"h264", "aac"}
    assert abs(float(info["format"]["duration"]) - 1.2) <= 0.04


@needs_ffprobe
def test_odd_frame_size_is_padded_to_even(tmp_path):
    wav = tone(0.4)
    frames = np.zeros((10, 33, 51, 3), np.uint8)
    writer = encode(tmp_path / "odd.mp4", frames, wav)
    video = next(s for s in ffprobe(tmp_path / "odd.mp4")["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (52, 34) == (writer.out_size)


def test_pad_to_even_copies_the_last_row_and_column():
    frames = np.arange(2 * 3 * 5 * 3, dtype=np.uint8).reshape(2, 3, 5, 3)
    padded = pad_to_even(frames)
    assert padded.shape == (2, 4, 6, 3)
    np.testing.assert_array_equal(padded[:, :3, :5], frames)
    np.testing.assert_array_equal(padded[:, 3, :5], frames[:, 2])
    np.testing.assert_array_equal(padded[:, :3, 5], frames[:, :, 4])
    assert even_size(51, 33) == (52, 34) and even_size(52, 34) == (52, 34)


def test_colours_survive_in_rgb_order(tmp_path):
    frames = np.zeros((5, 32, 32, 3), np.uint8)
    frames[..., 0] = 220  # red
    frames[:, :, 16:, 2] = 200  # right half magenta-ish: red + blue
    encode(tmp_path / "red.mp4", frames, tone(0.2))
    decoded = decode_rgb(tmp_path / "red.mp4", 32, 32)
    assert len(decoded) == 5
    np.testing.assert_allclose(decoded[2, 8, 4], [220, 0, 0], atol=12)
    np.testing.assert_allclose(decoded[2, 8, 28], [220, 0, 200], atol=12)


def test_missing_frames_are_refused_and_leave_no_file(tmp_path):
    wav = tone(0.4)  # 10 frames
    writer = VideoWriter(tmp_path / "short.mp4", 32, 32, wav, codec="libx264")
    writer.write(np.zeros((9, 32, 32, 3), np.uint8))
    with pytest.raises(EncoderError, match="got 9 frames for a 10-frame video"):
        writer.close()
    assert not (tmp_path / "short.mp4").exists()
    assert not (tmp_path / "short.audio.wav").exists()


def test_extra_frames_are_refused(tmp_path):
    writer = VideoWriter(tmp_path / "long.mp4", 32, 32, tone(0.4), codec="libx264")
    writer.write(np.zeros((8, 32, 32, 3), np.uint8))
    with pytest.raises(EncoderError, match="got 11 frames for a 10-frame video"):
        writer.write(np.zeros((3, 32, 32, 3), np.uint8))


def test_wrong_frame_shape_or_dtype_is_refused(tmp_path):
    writer = VideoWriter(tmp_path / "x.mp4", 32, 32, tone(0.4), codec="libx264")
    with pytest.raises(ValueError, match=r"\(B, 32, 32, 3\)"):
        writer.write(np.zeros((2, 32, 30, 3), np.uint8))
    writer = VideoWriter(tmp_path / "y.mp4", 32, 32, tone(0.4), codec="libx264")
    with pytest.raises(ValueError):
        writer.write(np.zeros((2, 32, 32, 3), np.float32))


@pytest.mark.parametrize("queue_batches", [0, 2])
def test_ffmpeg_failure_raises_with_its_stderr(tmp_path, queue_batches):
    frames = np.zeros((40, 64, 64, 3), np.uint8)
    with pytest.raises(EncoderError, match="No such file or directory"):
        encode(
            tmp_path / "out.mp4",
            frames,
            SourceAudio(str(tmp_path / "missing.wav"), 16000, 1),
            n_frames=40,
            batch=4,
            queue_batches=queue_batches,
        )
    assert not (tmp_path / "out.mp4").exists()


def test_queued_writer_copies_batches_the_caller_reuses(tmp_path):
    buffer = np.zeros((5, 32, 32, 3), np.uint8)
    with VideoWriter(tmp_path / "q.mp4", 32, 32, tone(0.4), codec="libx264", queue_batches=4) as writer:
        for value in (40, 200):  # the same buffer, overwritten right after each write
            buffer[:] = value
            writer.write(buffer)
    decoded = decode_rgb(tmp_path / "q.mp4", 32, 32)
    assert abs(int(decoded[2].mean()) - 40) <= 3 and abs(int(decoded[7].mean()) - 200) <= 3


def test_audio_shorter_than_one_frame_is_refused(tmp_path):
    with pytest.raises(ValueError, match="n_frames"):
        VideoWriter(tmp_path / "x.mp4", 32, 32, tone(0.0, extra=639))


def test_codec_choice_validates_names():
    assert choose_codec("libx264") == "libx264"
    assert choose_codec("auto") in ("libx264", "h264_nvenc")
    with pytest.raises(ValueError, match="codec"):
        choose_codec("vp9")


@pytest.mark.parametrize("start,frames,fps", [(0, 10, 25), (10, 25, 25), (85, 22, 25), (3, 30, 30), (7, 30, 30)])
def test_a_piece_from_the_array_is_the_piece_ffmpeg_seeks_to_in_the_whole_audio(tmp_path, start, frames, fps):
    """A streamed segment's WAV holds only its stretch of the array; the MP4 is byte for byte the one made from the
    whole audio's WAV with ffmpeg seeking to the segment's start (how every segment was made before). At 30 fps, frame
    3 starts on a sample (0.1 s), frame 7 does not (ffmpeg still seeks in the whole array)."""
    wav = tone(4.3) * np.linspace(0.2, 1.0, int(4.3 * SR), dtype=np.float32)  # no two stretches alike
    write_wav(tmp_path / "whole.wav", wav)
    pictures = np.random.default_rng(start).integers(0, 256, (frames, 32, 32, 3), dtype=np.uint8)
    made = []
    for name, audio in (("seek", SourceAudio(str(tmp_path / "whole.wav"), SR, 1)), ("span", wav)):
        path = tmp_path / f"{name}.mp4"
        with VideoWriter(path, 32, 32, audio, n_frames=frames, codec="libx264", start_frame=start, fps=fps) as writer:
            writer.write(pictures)
        made.append(path.read_bytes())
    assert made[0] == made[1]


def test_audio_span_is_the_pieces_samples_and_one_frame_more():
    wav = np.arange(110 * 640, dtype=np.float32)
    piece, seek = audio_span(wav, 10, 25)
    assert seek == 0 and piece[0] == 10 * 640 and len(piece) == 26 * 640
    piece, seek = audio_span(wav, 100, 10)  # the last piece: cut at the array's end
    assert seek == 0 and piece[0] == 100 * 640 and len(piece) == 10 * 640
    whole, seek = audio_span(wav, 1, 5, fps=30)  # 1/30 s is no whole sample: ffmpeg seeks in the whole array
    assert whole is wav and seek == 1
