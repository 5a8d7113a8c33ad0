"""Checks on encoded videos shared by the encoder, pipeline and end-to-end tests (ffprobe from Debian's ffmpeg)."""

import json
import subprocess
from fractions import Fraction

import numpy as np

from sadtalker.output.ffmpeg import ffmpeg_exe
from sadtalker.output.video import mp4_top_level_boxes

FRAME_S = 0.04  # one video frame at 25 fps


def ffprobe(path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def decode_rgb(path, width: int, height: int) -> np.ndarray:
    """Every frame of the video as uint8 (N, height, width, 3)."""
    raw = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def video_packet_times(path) -> np.ndarray:
    """Presentation times (s) of the video stream's packets, in order."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return np.sort(np.array([float(line) for line in out.split() if line.strip()]))


def assert_browser_mp4(path, audio_seconds: float, fps: int = 25) -> dict:
    """H.264 yuv420p at ``fps``, AAC, faststart, video as long as the audio within one frame. Returns ffprobe's
    info."""
    info = ffprobe(path)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = [s for s in info["streams"] if s["codec_type"] == "audio"]
    assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p", video
    assert Fraction(video["avg_frame_rate"]) == Fraction(video["r_frame_rate"]) == fps, video["avg_frame_rate"]
    assert len(audio) == 1 and audio[0]["codec_name"] == "aac", audio
    assert int(video["width"]) % 2 == 0 and int(video["height"]) % 2 == 0
    assert abs(float(video["duration"]) - audio_seconds) <= 1 / fps, (video["duration"], audio_seconds)
    boxes = mp4_top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    return info
