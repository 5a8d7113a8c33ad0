"""Streamed segments: the video cut into standalone, playable MP4s of a fixed length while it renders.

Each segment is its own H.264 + AAC file with ``+faststart`` (a :class:`~sadtalker.output.video.VideoWriter`), its
sound the matching stretch of the caller's audio. The segments are contiguous in frames and their frame counts add
up to the video's; the last one holds what is left. A segment is handed to ``on_segment`` as soon as its last frame
is encoded, before the next one starts. The first segment may be shorter (``first_frames``) so that a player gets
something to show early.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Union

import numpy as np

from sadtalker.core.constants import MODEL_FPS
from sadtalker.core.contract import Segment, SourceAudio
from sadtalker.output.video import VideoWriter


class Segmenter:
    """Feeds frames (the same arrays the whole video gets) into one segment writer at a time."""

    def __init__(
        self,
        workdir: str,
        name: str,
        width: int,
        height: int,
        audio: Union[SourceAudio, np.ndarray],
        total_frames: int,
        segment_frames: int,
        on_segment: Callable[[Segment], None],
        first_frames: int = 0,
        fps: int = MODEL_FPS,
    ) -> None:
        if segment_frames < 1 or first_frames < 0:
            raise ValueError(f"segment_frames must be >= 1 and first_frames >= 0, got {segment_frames}, {first_frames}")
        self.first_frames = first_frames or segment_frames  # the first segment's length (0: as the others)
        self.workdir, self.name = workdir, name
        self.size = (width, height)
        self.audio = audio
        self.total, self.segment_frames, self.fps = total_frames, segment_frames, fps
        self.on_segment = on_segment
        self.index = 0
        self.start = 0  # first frame of the open segment
        self.writer: Optional[VideoWriter] = None

    def write(self, frames: np.ndarray) -> None:
        """Append a batch, closing (and handing over) every segment it completes."""
        while len(frames):
            writer = self.writer or self._open()
            take = min(len(frames), writer.n_frames - writer.written)
            writer.write(frames[:take])
            frames = frames[take:]
            if writer.written == writer.n_frames:
                self._close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None

    def _open(self) -> VideoWriter:
        frames = min(self.first_frames if self.index == 0 else self.segment_frames, self.total - self.start)
        path = os.path.join(self.workdir, f"{self.name}.segment-{self.index:03d}.mp4")
        self.writer = VideoWriter(path, *self.size, self.audio, n_frames=frames, start_frame=self.start, fps=self.fps)
        return self.writer

    def _close(self) -> None:
        writer, self.writer = self.writer, None
        assert writer is not None  # called right after a write to the open segment
        video = writer.close()
        segment = Segment(
            index=self.index,
            path=video.path,
            start_frame=self.start,
            frames=video.frames,
            start_seconds=round(self.start / self.fps, 3),
            duration_seconds=round(video.frames / self.fps, 3),
        )
        self.index += 1
        self.start += video.frames
        self.on_segment(segment)
