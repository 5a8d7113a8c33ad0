"""The size of the video's frames: the render (crop modes) or the photo (full modes), times ``upscale``.

The reference's enhancer returns every frame at twice its size (``GFPGANer(upscale=2)``): a 256 render becomes a
512 video, and in ``full`` mode the whole photo doubles. ``upscale`` 1 keeps the render's or the photo's size.
A frame never gets a side above ``max_side``: a larger one is scaled down to fit, keeping its aspect, and the caller
gets a warning instead of a failure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class FrameSize:
    width: int
    height: int
    warning: Optional[str] = None  # set when the size was scaled down to fit ``max_side``


def _even(value: float) -> int:
    """Rounded up to even, as the paster pads an odd side."""
    return max(2, math.ceil(value / 2) * 2)


def _even_below(value: float) -> int:
    return max(2, math.floor(value / 2) * 2)


def crop_frame_size(render_size: int, crop_size: Tuple[int, int], upscale: int, max_side: int) -> FrameSize:
    """``crop`` / ``resize``: the reference restores the crop's aspect, (size, int(size * h / w)), times upscale."""
    crop_w, crop_h = crop_size
    width = render_size * upscale
    return _fit(width, int(width * crop_h / crop_w), max_side)


def photo_frame_size(photo_size: Tuple[int, int], upscale: int, max_side: int) -> FrameSize:
    """``full``: the photo's (width, height) times upscale, rounded to even."""
    width, height = photo_size
    return _fit(_even(width * upscale), _even(height * upscale), max_side)


def _fit(width: int, height: int, max_side: int) -> FrameSize:
    if max(width, height) <= max_side:
        return FrameSize(width, height)
    scale = max_side / max(width, height)
    fitted_w, fitted_h = _even_below(width * scale), _even_below(height * scale)
    warning = (
        f"the output would be {width}x{height}, above MAX_OUTPUT_SIDE={max_side}; "
        f"it was scaled down to {fitted_w}x{fitted_h}"
    )
    return FrameSize(fitted_w, fitted_h, warning)
