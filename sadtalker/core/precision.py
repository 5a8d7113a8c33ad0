"""Precision regions: the arithmetic (fp32, tf32, fp16, bf16) of one block of inference code."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from sadtalker.core.constants import PRECISIONS

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`sadtalker.core.constants.PRECISIONS`, else ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@contextlib.contextmanager
def precision_context(device: torch.device, precision: str) -> Iterator[None]:
    """The arithmetic of one region (renderer or enhancer).

    ``fp32``: as loaded, with CUDA's TF32 tensor cores off for convolutions and matrix products (TF32 keeps
    10 mantissa bits; with it on, cuDNN's fp32 convolutions leave golden A's tolerance). ``tf32``: fp32 weights
    and activations, TF32 tensor cores allowed. ``fp16`` / ``bf16``: autocast. The global TF32 flags are
    restored on exit. They are process-wide while the region is open: the renderer enters it per batch and
    leaves it before each yield, so code between batches never runs under another region's setting.
    """
    check_precision(precision)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    tf32 = precision != "fp32"
    dtype = AUTOCAST_DTYPES.get(precision)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        # fp32 / tf32 switch autocast off explicitly, so an enclosing autocast region cannot lower them
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
