"""Face restoration with GFPGAN v1.4 (Wang et al., CVPR 2021), batched, no per-frame face detection.

The network is the ``gfpgan`` package's ``GFPGANv1Clean`` (a U-Net encoder whose features modulate a
StyleGAN2 decoder through spatial feature transforms), built once with the official v1.4 arguments
(:data:`OFFICIAL`) and loaded strictly from ``GFPGANv1.4.pth`` (entry ``params_ema``,
``weights_only=True``).

Where the reference runs RetinaFace on every frame, warps the face to GFPGAN's 512 template, restores,
warps back and doubles the frame size, we already know where the face is:

- ``crop`` / ``resize`` renders: the rendered frame is the face, aligned FFHQ-style by the crop, so the
  whole frame is resized to 512, restored and resized back to the render size;
- ``full``: the face crop is restored before paste-back (ask for the box's size with ``size=``) and
  :mod:`sadtalker.paste` places it.

Batching: StyleGAN2's modulated convolution scales the shared kernel per face and runs one grouped convolution
(groups = batch), a layout convolution libraries are rarely tuned for. :func:`batch_modulated_convs` gives every
such layer a forward that computes the same thing as one ordinary convolution over the batch: the input is
scaled by the style, convolved with the shared kernel, and the output scaled by the demodulation factor
(``conv(x, W * s * d) == d * conv(x * s, W)``, exact up to float rounding). The weights are untouched.

Input ``x`` in [0, 1] is mapped to [-1, 1] (the network's range) and back. The output keeps the input's
size: no 2x upscale. Determinism: the reference calls GFPGAN with ``randomize_noise=True`` (fresh
StyleGAN2 noise per layer, per frame). We call it with ``randomize_noise=False``, so each layer adds
the fixed noise map stored in the weight file: the same frame always restores to the same image, on
one device, and no random generator is involved.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sadtalker.renderer.stage import check_precision, precision_context

log = logging.getLogger(__name__)

WEIGHT_FILE = "GFPGANv1.4.pth"
WEIGHT_ENTRY = "params_ema"  # the EMA weights, what GFPGANer loads
DEFAULT_BATCH = 8  # faces per forward; 512x512 faces cost ~0.6 GB each in fp32 on a GPU


@dataclass(frozen=True)
class EnhancerDims:
    """``GFPGANv1Clean`` constructor arguments (the official v1.4 file fits the defaults)."""

    out_size: int = 512  # face resolution the network works at
    num_style_feat: int = 512  # StyleGAN2 latent width
    channel_multiplier: int = 2  # StyleGAN2 channel multiplier (v1.4: 2)
    num_mlp: int = 8  # StyleGAN2 mapping MLP depth (built, unused: input_is_latent)
    narrow: float = 1.0  # channel width ratio
    different_w: bool = True  # one latent per decoder layer
    sft_half: bool = True  # SFT modulates half of the decoder channels
    input_is_latent: bool = True  # the encoder's code is used as W directly


OFFICIAL = EnhancerDims()


def build_gfpgan(dims: EnhancerDims = OFFICIAL, device: Union[str, torch.device] = "cpu") -> nn.Module:
    """A ``GFPGANv1Clean`` for ``dims``, randomly initialised on ``device`` ("meta": no init, no memory)."""
    from sadtalker.compat import patch_torchvision

    patch_torchvision()  # gfpgan imports basicsr, which needs the torchvision alias
    from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean  # imported before the device context

    with torch.device(device):
        return GFPGANv1Clean(decoder_load_path=None, fix_decoder=False, **asdict(dims))


def _batched_modulated_forward(self, x: Tensor, style: Tensor) -> Tensor:
    """StyleGAN2 modulated conv as one ordinary convolution over the batch (see the module docstring).

    x: (B, C_in, H, W); style: (B, num_style_feat) -> (B, C_out, H', W'). ``self`` is a gfpgan
    ``ModulatedConv2d`` (weight (1, C_out, C_in, k, k), modulation Linear, demodulate, sample_mode, eps).
    """
    scale = self.modulation(style)  # (B, C_in)
    kernel = self.weight[0]  # (C_out, C_in, k, k)
    if self.sample_mode == "upsample":
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    elif self.sample_mode == "downsample":
        x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
    out = F.conv2d(x * scale[:, :, None, None].to(x.dtype), kernel.to(x.dtype), padding=self.padding)
    if self.demodulate:
        # d[b, o] = 1 / sqrt(sum_c,i,j (W[o,c,i,j] s[b,c])^2 + eps), at least float32 whatever the autocast type
        acc = torch.promote_types(kernel.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            energy = scale.to(acc).square() @ kernel.to(acc).square().sum(dim=(2, 3)).t()  # (B, C_out)
            demod = torch.rsqrt(energy + self.eps)
        out = out * demod[:, :, None, None].to(out.dtype)
    return out


def batch_modulated_convs(net: nn.Module) -> int:
    """Give every gfpgan ``ModulatedConv2d`` in ``net`` the batched forward; returns how many (idempotent)."""
    from sadtalker.compat import patch_torchvision

    patch_torchvision()  # gfpgan imports basicsr, which needs the torchvision alias
    from gfpgan.archs.stylegan2_clean_arch import ModulatedConv2d

    count = 0
    for module in net.modules():
        if isinstance(module, ModulatedConv2d):
            module.forward = _batched_modulated_forward.__get__(module)
            count += 1
    return count


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
    """GFPGAN restorer for aligned faces, on the network's device and dtype."""

    def __init__(self, net: nn.Module, dims: EnhancerDims = OFFICIAL, batch_size: int = DEFAULT_BATCH,
                 precision: str = "fp32") -> None:
        self.net = net.eval().requires_grad_(False)
        batch_modulated_convs(self.net)
        self.dims = dims
        self.batch_size = batch_size
        self.precision = check_precision(precision)  # see sadtalker.renderer.stage.precision_context
        first = next(net.parameters())
        self.device, self.dtype = first.device, first.dtype

    @torch.no_grad()
    def restore_tensor(self, faces: Tensor, size: Optional[Tuple[int, int]] = None) -> Tensor:
        """(B, 3, H, W) RGB float in [0, 1] -> restored (B, 3, h, w) float32 in [0, 1].

        ``size`` = (h, w) of the output, default the input's (H, W). One forward for the whole batch.
        """
        out_size = tuple(faces.shape[2:]) if size is None else tuple(size)
        side = self.dims.out_size
        x = _resize(faces.to(self.device, torch.float32), (side, side)) * 2.0 - 1.0
        # contiguous NCHW: GFPGAN flattens a feature map with .view, which channels-last strides break.
        x = x.to(self.dtype).contiguous(memory_format=torch.contiguous_format)
        with precision_context(self.device, self.precision):
            restored, _ = self.net(x, return_rgb=False, randomize_noise=False)
        restored = (restored.float().clamp(-1.0, 1.0) + 1.0) / 2.0
        return _resize(restored, out_size).clamp(0.0, 1.0)

    def restore(self, frames: Union[np.ndarray, Tensor],
                size: Optional[Tuple[int, int]] = None) -> Union[np.ndarray, Tensor]:
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


def load_enhancer(checkpoints_dir: str, device: Union[str, torch.device] = "cpu",
                  dtype: torch.dtype = torch.float32, dims: EnhancerDims = OFFICIAL,
                  batch_size: int = DEFAULT_BATCH, file_name: str = WEIGHT_FILE,
                  precision: str = "fp32") -> FaceEnhancer:
    """The restorer from ``checkpoints_dir/GFPGANv1.4.pth``: strict load of ``params_ema``, eval, on ``device``.

    Raises CheckpointError (from :mod:`sadtalker.loading`) when the file is missing, unreadable, has no
    ``params_ema`` entry, or its keys/shapes do not fit ``dims``. ``precision``: see
    :func:`sadtalker.renderer.stage.precision_context` (fp16 / bf16 autocast; the weights stay in ``dtype``).
    """
    from sadtalker.loading import load_strict, read_torch_entry

    start = time.monotonic()
    state_dict = read_torch_entry(os.path.join(checkpoints_dir, file_name), WEIGHT_ENTRY)
    net = build_gfpgan(dims, device="meta")  # no random init: every tensor comes from the file
    load_strict(net, state_dict, f"{file_name} [{WEIGHT_ENTRY}]", assign=True)
    net = net.to(device=device, dtype=dtype)
    log.info("loaded %s in %.2f s (%s, %s)", file_name, time.monotonic() - start, device, dtype)
    return FaceEnhancer(net, dims, batch_size, precision)
