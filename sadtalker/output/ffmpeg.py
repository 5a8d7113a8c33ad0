"""External programs the worker runs, found in one place.

``ffmpeg_exe()`` prefers the system ``ffmpeg`` on PATH (the Docker image and the Makefile install Debian/Ubuntu's,
which comes with ffprobe) and falls back to the static build shipped in the ``imageio-ffmpeg`` wheel.
"""

from __future__ import annotations

import shutil


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary to run: ``ffmpeg`` on PATH, else imageio-ffmpeg's bundled one."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg  # only when there is no system ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()
