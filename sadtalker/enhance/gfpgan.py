"""GFPGAN v1.4 (Wang et al., CVPR 2021): the network built from its dims, and our inference forward.

The network is the ``gfpgan`` package's ``GFPGANv1Clean`` (a U-Net encoder whose features modulate a StyleGAN2
decoder through spatial feature transforms), built with the official v1.4 arguments (:data:`OFFICIAL`). Its
weights are loaded by :mod:`sadtalker.weights.loader`.

Batching: StyleGAN2's modulated convolution scales the shared kernel per face and runs one grouped convolution
(groups = batch), a layout convolution libraries are rarely tuned for. :func:`batched_modulated_forward` computes the
same thing as one ordinary convolution over the batch: the input is scaled by the style, convolved with the shared
kernel, and the output scaled by the demodulation factor (``conv(x, W * s * d) == d * conv(x * s, W)``, exact up to
float rounding). The weights are untouched.

Two forwards, chosen by ``sadtalker.kernels.enhancer.enhancer_forward``: :func:`gfpgan_plain_forward` (gfpgan's own,
``FAST_PATHS=false``) and :func:`gfpgan_forward`, the same function up to float rounding with less memory traffic
around the convolutions: the StyleGAN2 layers' scaling, noise, bias and SFT steps run in place, in the
convolution's dtype, and the SFT conditions are not copied. It reads what
:func:`sadtalker.kernels.enhancer.prepare_enhancer` attached (each listed in :func:`build_gfpgan`) when it is there.

Determinism: the reference calls GFPGAN with ``randomize_noise=True`` (fresh StyleGAN2 noise per layer, per frame).
We call it with ``randomize_noise=False``, so each layer adds the fixed noise map stored in the weight file: the
same frame always restores to the same image, on one device, and no random generator is involved.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:  # gfpgan ships no type information (pyproject.toml types it as Any)
    from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean


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
    """A ``GFPGANv1Clean`` for ``dims``, randomly initialised on ``device`` ("meta": no init, no memory).

    Fast paths (attached to the built network by :func:`sadtalker.kernels.enhancer.prepare_enhancer`):
    every ``ModulatedConv2d.forward`` is replaced by :func:`batched_modulated_forward` and gets a ``kernel_energy``
    buffer (and on the CPU a ``winograd`` conv for its kernel); every ``StyleConv`` a ``noise_strength`` number; on
    the CPU the wide plain 3x3 ``nn.Conv2d.forward`` by a Winograd conv (``conv.winograd``).
    """
    from sadtalker.core.compat import patch_torchvision

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
    winograd = getattr(conv, "winograd", None)  # attached on the CPU by prepare_enhancer
    out = winograd(x) if winograd is not None else F.conv2d(x, conv.weight[0].to(x.dtype), padding=conv.padding)
    if not conv.demodulate:
        return out, None
    # d[b, o] = 1 / sqrt(sum_c (s[b, c]^2 sum_ij W[o, c, i, j]^2) + eps)
    energy = getattr(conv, "kernel_energy", None)  # attached by prepare_enhancer
    if energy is None:
        energy = kernel_energy(conv.weight)
    with torch.autocast(device_type=x.device.type, enabled=False):
        demod = torch.rsqrt(scale.to(energy.dtype).square() @ energy.t() + conv.eps)  # (B, C_out)
    return out, demod


def kernel_energy(weight: Tensor) -> Tensor:
    """(C_out, C_in) sums of squared taps of a modulated conv's (1, C_out, C_in, k, k) kernel, at least float32."""
    kernel = weight.detach()[0]
    return kernel.to(torch.promote_types(kernel.dtype, torch.float32)).square().sum(dim=(2, 3))


def batched_modulated_forward(self, x: Tensor, style: Tensor) -> Tensor:
    """StyleGAN2 modulated conv as one ordinary convolution over the batch (see the module docstring); replaces
    ``ModulatedConv2d.forward`` (attached by :func:`sadtalker.kernels.enhancer.prepare_enhancer`).

    x: (B, C_in, H, W); style: (B, num_style_feat) -> (B, C_out, H', W'). ``self`` is a gfpgan
    ``ModulatedConv2d`` (weight (1, C_out, C_in, k, k), modulation Linear, demodulate, sample_mode, eps).
    """
    out, demod = _modulated_conv(self, x, style)
    return out if demod is None else out * demod[:, :, None, None].to(out.dtype)


def _style_conv(layer, x: Tensor, style: Tensor, noise: Tensor) -> Tensor:
    """gfpgan ``StyleConv`` with its stored noise map: leaky_relu(sqrt(2) d conv(x s) + bias + strength * noise).

    The demodulation factor and the sqrt(2) are one scaling. The steps after the convolution run in place in
    its dtype: under autocast the map is never copied to float32, while the float32 bias, gain and noise are
    read as they are and each step rounds once (no bias rounded to half precision).
    """
    out, demod = _modulated_conv(layer.modulated_conv, x, style)
    gain = torch.full((1, 1, 1, 1), math.sqrt(2.0), device=out.device) if demod is None else demod * math.sqrt(2.0)
    strength = getattr(layer, "noise_strength", None)  # attached by prepare_enhancer
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


def gfpgan_forward(net: GFPGANv1Clean, x: Tensor) -> Tensor:
    """``GFPGANv1Clean.forward(x, return_rgb=False, randomize_noise=False)[0]`` for inference, written for speed.

    The same function up to float rounding (tests/enhance/test_stage.py compares it with gfpgan's forward in float64);
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
    for block, skip, scale, shift in zip(
        net.conv_body_up, reversed(skips), net.condition_scale, net.condition_shift, strict=True
    ):
        feat = _res_block(block, feat + skip)
        conditions.append((scale(feat), shift(feat)))

    decoder = net.stylegan_decoder
    noises = [getattr(decoder.noises, f"noise{i}") for i in range(decoder.num_layers)]
    out = _style_conv(decoder.style_conv1, decoder.constant_input(latent.shape[0]), latent[:, 0], noises[0])
    image = decoder.to_rgb1(out, latent[:, 1])
    pairs = zip(decoder.style_convs[::2], decoder.style_convs[1::2], decoder.to_rgbs, strict=True)
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


def gfpgan_plain_forward(net: nn.Module, x: Tensor) -> Tensor:
    """gfpgan's own ``GFPGANv1Clean.forward`` with the stored noise: (B, 3, S, S) in [-1, 1] -> restored faces."""
    return net(x, return_rgb=False, randomize_noise=False)[0]
