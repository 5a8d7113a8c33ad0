"""The enhance stage: GFPGAN restoration of aligned faces, batched, no per-frame face detection.

Where the reference runs RetinaFace on every frame, warps the face to GFPGAN's 512 template, restores, warps back
and doubles the frame size, we already know where the face is:

- ``crop`` / ``resize`` renders: the rendered frame is the face, aligned FFHQ-style by the crop, so the whole frame
  is resized to 512, restored and resized back to the render size;
- ``full``: the face crop is restored before paste-back (ask for the box's size with ``size=``) and
  :mod:`sadtalker.output.paste` places it.

Input in [0, 1] is mapped to [-1, 1] (the network's range) and back. The output keeps the input's size: no 2x
upscale.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sadtalker.core.precision import check_precision, precision_context
from sadtalker.enhance.gfpgan import OFFICIAL, EnhancerDims, gfpgan_forward

DEFAULT_BATCH = 8  # faces per forward; 512x512 faces cost ~0.6 GB each in fp32 on a GPU


def _to_nchw(frames: Union[np.ndarray, Tensor], device: torch.device) -> Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    return tensor.to(device).permute(0, 3, 1, 2)


def _resize(x: Tensor, size: Tuple[int, int]) -> Tensor:
    """Bilinear resize of (B, C, H, W) to ``size`` = (height, width), antialiased when shrinking."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[2] or size[1] < x.shape[3]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


class FaceEnhancer:
    """A face restorer (GFPGAN, or RestoreFormer with its ``forward``) for aligned faces, on the network's device
    and dtype. ``forward(net, x)`` maps (B, 3, S, S) in [-1, 1] to the restored faces, S = ``dims.out_size``."""

    def __init__(
        self,
        net: nn.Module,
        dims: EnhancerDims = OFFICIAL,
        batch_size: int = DEFAULT_BATCH,
        precision: str = "fp32",
        memory_format: torch.memory_format = torch.contiguous_format,
        forward: Callable[[nn.Module, Tensor], Tensor] = gfpgan_forward,
    ) -> None:
        self.net = net.eval().requires_grad_(False)  # prepared by sadtalker.kernels.enhancer.prepare_enhancer
        self.forward = forward
        self.dims = dims
        self.batch_size = batch_size
        self.precision = check_precision(precision)  # see sadtalker.core.precision
        first = next(net.parameters())
        self.device, self.dtype = first.device, first.dtype
        self.memory_format = memory_format  # the layout the weights were given

    @torch.no_grad()
    def restore_tensor(self, faces: Tensor, size: Optional[Tuple[int, int]] = None) -> Tensor:
        """(B, 3, H, W) RGB float in [0, 1] -> restored (B, 3, h, w) float32 in [0, 1].

        ``size`` = (h, w) of the output, default the input's (H, W). One forward for the whole batch.
        """
        out_size = (faces.shape[2], faces.shape[3]) if size is None else size
        side = self.dims.out_size
        x = _resize(faces.to(self.device, torch.float32), (side, side)) * 2.0 - 1.0
        x = x.to(self.dtype).contiguous(memory_format=self.memory_format)
        with precision_context(self.device, self.precision):
            restored = self.forward(self.net, x)
        restored = (restored.float().contiguous().clamp(-1.0, 1.0) + 1.0) / 2.0
        return _resize(restored, out_size).clamp(0.0, 1.0)

    @overload
    def restore(self, frames: np.ndarray, size: Optional[Tuple[int, int]] = None) -> np.ndarray: ...

    @overload
    def restore(self, frames: Tensor, size: Optional[Tuple[int, int]] = None) -> Tensor: ...

    def restore(
        self, frames: Union[np.ndarray, Tensor], size: Optional[Tuple[int, int]] = None
    ) -> Union[np.ndarray, Tensor]:
        """uint8 (B, H, W, 3) RGB faces -> restored uint8 (B, h, w, 3); numpy in gives numpy out.

        Runs in sub-batches of ``batch_size``; each face is restored independently of the others.
        """
        is_uint8 = frames.dtype == (np.uint8 if isinstance(frames, np.ndarray) else torch.uint8)
        if not is_uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"expected uint8 (B, H, W, 3) frames, got {frames.dtype} {tuple(frames.shape)}")
        parts = []
        for start in range(0, len(frames), self.batch_size):
            faces = _to_nchw(frames[start : start + self.batch_size], self.device).float() / 255.0
            restored = self.restore_tensor(faces, size)
            parts.append((restored * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1))
        out = torch.cat(parts) if parts else _to_nchw(frames, self.device).permute(0, 2, 3, 1)
        return out.cpu().numpy() if isinstance(frames, np.ndarray) else out
