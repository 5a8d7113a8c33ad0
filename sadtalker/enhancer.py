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

Inference path (:func:`prepare_enhancer` once, then :func:`gfpgan_forward`): the same function as gfpgan's forward
up to float rounding, with less memory traffic around the convolutions (the StyleGAN2 layers' scaling, noise, bias
and SFT steps in place, in the convolution's dtype; no copies of the SFT conditions); on the CPU Winograd for the
wide 3x3 convs, on CUDA channels-last layout. Bytes moved per face in bf16 autocast, measured on the CPU with a
dispatch counter (batch 4): 6.4 GB before, 3.4 GB after, of which the convolutions' own 1.0 GB.

Input ``x`` in [0, 1] is mapped to [-1, 1] (the network's range) and back. The output keeps the input's
size: no 2x upscale. Determinism: the reference calls GFPGAN with ``randomize_noise=True`` (fresh
StyleGAN2 noise per layer, per frame). We call it with ``randomize_noise=False``, so each layer adds
the fixed noise map stored in the weight file: the same frame always restores to the same image, on
one device, and no random generator is involved.
"""
from __future__ import annotations

import logging
import math
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
# Tensor-core convolutions work in NHWC; in NCHW cuDNN transposes around them. Not yet timed on a GPU:
# scripts/benchmark.py --enhancer-nchw measures the other layout.
CHANNELS_LAST_ON_CUDA = True


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


def _modulated_conv(conv, x: Tensor, style: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
    """A gfpgan ``ModulatedConv2d`` as one ordinary convolution over the batch, demodulation left to the caller.

    x: (B, C_in, H, W); style: (B, num_style_feat). Returns ``conv(resample(x) * s, W)`` (B, C_out, H', W') and
    the demodulation factor d (B, C_out), at least float32 whatever the autocast type (None when the layer does
    not demodulate). The style scale s is per input channel, so it is applied before the bilinear resampling
    (the same result, on the smaller map when upsampling).
    """
    scale = conv.modulation(style)  # (B, C_in)
    x = x * scale[:, :, None, None].to(x.dtype)
    if conv.sample_mode == "upsample":
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    elif conv.sample_mode == "downsample":
        x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
    winograd = getattr(conv, "winograd", None)
    out = winograd(x) if winograd is not None else F.conv2d(x, conv.weight[0].to(x.dtype), padding=conv.padding)
    if not conv.demodulate:
        return out, None
    # d[b, o] = 1 / sqrt(sum_c (s[b, c]^2 sum_ij W[o, c, i, j]^2) + eps)
    energy = getattr(conv, "kernel_energy", None)
    if energy is None:
        energy = _kernel_energy(conv.weight)
    with torch.autocast(device_type=x.device.type, enabled=False):
        demod = torch.rsqrt(scale.to(energy.dtype).square() @ energy.t() + conv.eps)  # (B, C_out)
    return out, demod


def _kernel_energy(weight: Tensor) -> Tensor:
    """(C_out, C_in) sums of squared taps of a modulated conv's (1, C_out, C_in, k, k) kernel, at least float32."""
    kernel = weight.detach()[0]
    return kernel.to(torch.promote_types(kernel.dtype, torch.float32)).square().sum(dim=(2, 3))


def _batched_modulated_forward(self, x: Tensor, style: Tensor) -> Tensor:
    """StyleGAN2 modulated conv as one ordinary convolution over the batch (see the module docstring).

    x: (B, C_in, H, W); style: (B, num_style_feat) -> (B, C_out, H', W'). ``self`` is a gfpgan
    ``ModulatedConv2d`` (weight (1, C_out, C_in, k, k), modulation Linear, demodulate, sample_mode, eps).
    """
    out, demod = _modulated_conv(self, x, style)
    return out if demod is None else out * demod[:, :, None, None].to(out.dtype)


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


def _style_conv(layer, x: Tensor, style: Tensor, noise: Tensor) -> Tensor:
    """gfpgan ``StyleConv`` with its stored noise map: leaky_relu(sqrt(2) d conv(x s) + bias + strength * noise).

    The demodulation factor and the sqrt(2) are one scaling. The steps after the convolution run in place in
    its dtype: under autocast the map is never copied to float32, while the float32 bias, gain and noise are
    read as they are and each step rounds once (no bias rounded to half precision).
    """
    out, demod = _modulated_conv(layer.modulated_conv, x, style)
    gain = torch.full((1, 1, 1, 1), math.sqrt(2.0), device=out.device) if demod is None else demod * math.sqrt(2.0)
    strength = getattr(layer, "noise_strength", None)  # set by prepare_enhancer
    with torch.autocast(device_type=out.device.type, enabled=False):  # autocast would widen `out` to float32
        torch.addcmul(layer.bias, out, gain.view(gain.shape[0], -1, 1, 1), out=out)  # out * gain + bias
        out.add_(noise, alpha=float(layer.weight) if strength is None else strength)
    return F.leaky_relu_(out, negative_slope=0.2)


def _res_block(block, x: Tensor) -> Tensor:
    """gfpgan's U-Net ``ResBlock`` (down or up by 2). Up: the bias-free 1x1 skip conv runs before the bilinear
    upsampling, on the small map (both are linear per pixel and per channel, so they commute)."""
    out = F.leaky_relu_(block.conv1(x), negative_slope=0.2)
    out = F.interpolate(out, scale_factor=block.scale_factor, mode="bilinear", align_corners=False)
    out = F.leaky_relu_(block.conv2(out), negative_slope=0.2)
    if block.scale_factor > 1 and block.skip.bias is None:
        skip = F.interpolate(block.skip(x), scale_factor=block.scale_factor, mode="bilinear", align_corners=False)
    else:
        skip = block.skip(F.interpolate(x, scale_factor=block.scale_factor, mode="bilinear", align_corners=False))
    return out.add_(skip)


def gfpgan_forward(net: nn.Module, x: Tensor) -> Tensor:
    """``GFPGANv1Clean.forward(x, return_rgb=False, randomize_noise=False)[0]`` for inference, written for speed.

    The same function up to float rounding (tests/test_enhancer.py compares it with gfpgan's forward in float64);
    what differs: no copies of the SFT conditions and no split/cat (the SFT half is modulated in place), the
    StyleGAN2 layers' elementwise steps fused and kept in the convolution's dtype, the U-Net up blocks' skip
    convs on the small map. Works in any memory format (the style code is reshaped, not viewed). Needs the
    v1.4 layout: ``input_is_latent`` and ``different_w``.
    """
    if not (net.input_is_latent and net.different_w):
        raise ValueError("gfpgan_forward needs a GFPGANv1Clean with input_is_latent=True and different_w=True")
    feat = F.leaky_relu_(net.conv_body_first(x), negative_slope=0.2)
    skips = []
    for block in net.conv_body_down:
        feat = _res_block(block, feat)
        skips.append(feat)
    feat = F.leaky_relu_(net.final_conv(feat), negative_slope=0.2)
    latent = net.final_linear(feat.reshape(feat.shape[0], -1)).view(feat.shape[0], -1, net.num_style_feat)

    conditions = []
    for block, skip, scale, shift in zip(net.conv_body_up, reversed(skips), net.condition_scale, net.condition_shift):
        feat = _res_block(block, feat + skip)
        conditions.append((scale(feat), shift(feat)))

    decoder = net.stylegan_decoder
    noises = [getattr(decoder.noises, f"noise{i}") for i in range(decoder.num_layers)]
    out = _style_conv(decoder.style_conv1, decoder.constant_input(latent.shape[0]), latent[:, 0], noises[0])
    image = decoder.to_rgb1(out, latent[:, 1])
    pairs = zip(decoder.style_convs[::2], decoder.style_convs[1::2], decoder.to_rgbs)
    for level, (conv1, conv2, to_rgb) in enumerate(pairs):
        i = 2 * level + 1
        out = _style_conv(conv1, out, latent[:, i], noises[i])
        if level < len(conditions):
            scale, shift = conditions[level]
            target = out[:, out.shape[1] // 2 :] if decoder.sft_half else out
            with torch.autocast(device_type=out.device.type, enabled=False):
                torch.addcmul(shift, target, scale, out=target)  # target * scale + shift, in place
        out = _style_conv(conv2, out, latent[:, i + 1], noises[i + 1])
        image = to_rgb(out, latent[:, i + 2], image)
    return image


def prepare_enhancer(net: nn.Module, winograd_tile: Optional[int] = -1) -> nn.Module:
    """Attach the inference paths of :func:`gfpgan_forward` for the network's device; returns ``net``.

    Everywhere: the batched modulated convs, each with its kernel's energy (for the demodulation) computed once.
    On CPU: Winograd F(4x4, 3x3) for the 3x3 convs it speeds up, plain and modulated (measured there; see
    README "CPU speed"). On CUDA: channels-last layout (:data:`CHANNELS_LAST_ON_CUDA`). Call again after
    changing the weights or the device.
    """
    from sadtalker.renderer.fast import (
        WinogradConv3x3, default_winograd_tile, prepare_convs, unprepare_convs, winograd_gains,
    )

    batch_modulated_convs(net)  # imports gfpgan with the torchvision alias in place
    from gfpgan.archs.stylegan2_clean_arch import ModulatedConv2d, StyleConv
    device = next(net.parameters()).device
    tile = default_winograd_tile(device) if winograd_tile == -1 else winograd_tile
    unprepare_convs(net)
    if tile:
        prepare_convs(net, tile)
    with torch.no_grad():
        for layer in list(net.modules()):
            if isinstance(layer, StyleConv):  # the noise strength as a number: no device sync per layer
                layer.noise_strength = float(layer.weight)
            if not isinstance(layer, ModulatedConv2d):
                continue
            layer.register_buffer("kernel_energy", _kernel_energy(layer.weight), persistent=False)
            kernel = layer.weight[0]
            if tile and layer.kernel_size == 3 and winograd_gains(kernel):
                layer.winograd = WinogradConv3x3(kernel, None, tile)
            elif hasattr(layer, "winograd"):
                del layer.winograd
    if memory_format_for(device) == torch.channels_last:
        to_channels_last(net)
    return net


def memory_format_for(device: torch.device) -> torch.memory_format:
    """GFPGAN's layout on ``device``: channels-last on CUDA (:data:`CHANNELS_LAST_ON_CUDA`), else NCHW."""
    channels_last = device.type == "cuda" and CHANNELS_LAST_ON_CUDA
    return torch.channels_last if channels_last else torch.contiguous_format


def to_channels_last(net: nn.Module) -> nn.Module:
    """Every 4-D parameter in channels-last layout (``nn.Module.to`` refuses the 5-D modulated kernels)."""
    with torch.no_grad():
        for param in net.parameters():
            if param.dim() == 4:
                param.data = param.data.contiguous(memory_format=torch.channels_last)
    return net


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
        self.net = prepare_enhancer(net.eval().requires_grad_(False))
        self.dims = dims
        self.batch_size = batch_size
        self.precision = check_precision(precision)  # see sadtalker.renderer.stage.precision_context
        first = next(net.parameters())
        self.device, self.dtype = first.device, first.dtype
        self.memory_format = memory_format_for(self.device)  # the layout prepare_enhancer gave the weights

    @torch.no_grad()
    def restore_tensor(self, faces: Tensor, size: Optional[Tuple[int, int]] = None) -> Tensor:
        """(B, 3, H, W) RGB float in [0, 1] -> restored (B, 3, h, w) float32 in [0, 1].

        ``size`` = (h, w) of the output, default the input's (H, W). One forward for the whole batch.
        """
        out_size = tuple(faces.shape[2:]) if size is None else tuple(size)
        side = self.dims.out_size
        x = _resize(faces.to(self.device, torch.float32), (side, side)) * 2.0 - 1.0
        x = x.to(self.dtype).contiguous(memory_format=self.memory_format)
        with precision_context(self.device, self.precision):
            restored = gfpgan_forward(self.net, x)
        restored = (restored.float().contiguous().clamp(-1.0, 1.0) + 1.0) / 2.0
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
