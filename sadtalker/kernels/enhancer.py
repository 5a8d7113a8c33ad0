"""GFPGAN's inference paths, attached by :func:`prepare_enhancer` (``sadtalker.bundle.load_enhancer``, once).

:func:`prepare_enhancer` is the one step that changes the loaded network (``EnhancerPaths(fast=False)``, the
worker's ``FAST_PATHS=false``, changes nothing). What it attaches (listed where the network is built,
:func:`sadtalker.enhance.gfpgan.build_gfpgan`):

- every gfpgan ``ModulatedConv2d.forward``: :func:`~sadtalker.enhance.gfpgan.batched_modulated_forward` (one
  ordinary convolution over the batch instead of a grouped one), and its kernel's energy as a buffer;
- every ``StyleConv``: its noise strength as a number (no device sync per layer);
- on the CPU, Winograd F(4x4, 3x3) for the 3x3 convs it speeds up, plain (``conv.winograd`` takes over the conv's
  forward) and modulated (``layer.winograd``, read by the batched forward); see docs/performance.md;
- on CUDA, channels-last weights (tensor cores work in NHWC).

With them the enhancer runs :func:`~sadtalker.enhance.gfpgan.gfpgan_forward`; without, gfpgan's own forward
(:func:`~sadtalker.enhance.gfpgan.gfpgan_plain_forward`). Both compute the same function up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from sadtalker.enhance.gfpgan import batched_modulated_forward, gfpgan_forward, gfpgan_plain_forward, kernel_energy
from sadtalker.kernels.winograd import (
    AUTO,
    OFF,
    Tile,
    WinogradConv3x3,
    prepare_convs,
    resolve_tile,
    unprepare_convs,
    winograd_gains,
)


@dataclass(frozen=True)
class EnhancerPaths:
    """Which inference paths :func:`prepare_enhancer` attaches; ``sadtalker.bundle`` builds it from the settings."""

    # False (FAST_PATHS=false): none; gfpgan's GFPGANv1Clean runs as written.
    fast: bool = True
    # Winograd output tile for the 3x3 convs: "auto" (4 on the CPU, "off" elsewhere), "off", 2 or 4.
    winograd_tile: Tile = AUTO
    # Channels-last weights and inputs on CUDA (ENHANCER_CHANNELS_LAST); bench/benchmark.py --enhancer-nchw
    # measures the other layout.
    channels_last_on_cuda: bool = True


DEFAULT_ENHANCER_PATHS = EnhancerPaths()  # every fast path for the device


def _gfpgan_classes() -> tuple:
    """gfpgan's ``ModulatedConv2d`` and ``StyleConv`` (imported with the torchvision alias in place)."""
    from sadtalker.core.compat import patch_torchvision

    patch_torchvision()  # gfpgan imports basicsr, which needs the torchvision alias
    from gfpgan.archs.stylegan2_clean_arch import ModulatedConv2d, StyleConv

    return ModulatedConv2d, StyleConv


def prepare_enhancer(net: nn.Module, paths: EnhancerPaths = DEFAULT_ENHANCER_PATHS) -> nn.Module:
    """Attach ``paths`` for the network's device; returns ``net``.

    What an earlier call attached goes first, so ``EnhancerPaths(fast=False)`` leaves gfpgan's classes as written.
    Call again after changing the weights or the device.
    """
    unprepare_enhancer(net)
    if not paths.fast:
        return net
    batch_modulated_convs(net)
    modulated, style_conv = _gfpgan_classes()
    device = next(net.parameters()).device
    tile = resolve_tile(paths.winograd_tile, device)
    if tile != OFF:
        prepare_convs(net, int(tile))
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, style_conv):
                layer.noise_strength = float(layer.weight)
            elif isinstance(layer, modulated):
                layer.register_buffer("kernel_energy", kernel_energy(layer.weight), persistent=False)
                kernel = layer.weight[0]
                if tile != OFF and layer.kernel_size == 3 and winograd_gains(kernel):
                    layer.winograd = WinogradConv3x3(kernel, None, int(tile))
    if memory_format_for(device, paths) == torch.channels_last:
        to_channels_last(net)
    return net


def unprepare_enhancer(net: nn.Module) -> nn.Module:
    """Drop everything :func:`prepare_enhancer` attached: gfpgan's classes run as written, in NCHW."""
    modulated, style_conv = _gfpgan_classes()
    unprepare_convs(net)
    for layer in net.modules():
        if isinstance(layer, modulated):
            for name in ("forward", "winograd"):
                layer.__dict__.pop(name, None)
            layer._modules.pop("winograd", None)
            layer._buffers.pop("kernel_energy", None)
        elif isinstance(layer, style_conv):
            layer.__dict__.pop("noise_strength", None)
    with torch.no_grad():
        for param in net.parameters():
            param.data = param.data.contiguous()
    return net


def batch_modulated_convs(net: nn.Module) -> int:
    """Give every gfpgan ``ModulatedConv2d`` in ``net`` the batched forward; returns how many (idempotent)."""
    modulated, _ = _gfpgan_classes()
    count = 0
    for module in net.modules():
        if isinstance(module, modulated):
            module.forward = batched_modulated_forward.__get__(module)
            count += 1
    return count


def enhancer_forward(paths: EnhancerPaths = DEFAULT_ENHANCER_PATHS) -> Callable[[nn.Module, Tensor], Tensor]:
    """The forward a :class:`~sadtalker.enhance.stage.FaceEnhancer` runs on a network prepared with ``paths``."""
    return gfpgan_forward if paths.fast else gfpgan_plain_forward


def memory_format_for(device: torch.device, paths: EnhancerPaths = DEFAULT_ENHANCER_PATHS) -> torch.memory_format:
    """GFPGAN's layout on ``device``: channels-last on CUDA with the fast paths (unless turned off), else NCHW."""
    channels_last = paths.fast and paths.channels_last_on_cuda and torch.device(device).type == "cuda"
    return torch.channels_last if channels_last else torch.contiguous_format


def to_channels_last(net: nn.Module) -> nn.Module:
    """Every 4-D parameter in channels-last layout (``nn.Module.to`` refuses the 5-D modulated kernels)."""
    with torch.no_grad():
        for param in net.parameters():
            if param.dim() == 4:
                param.data = param.data.contiguous(memory_format=torch.channels_last)
    return net
