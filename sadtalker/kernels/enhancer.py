"""GFPGAN's inference paths for the network's device, attached once after loading.

On the CPU: Winograd F(4x4, 3x3) for the 3x3 convs it speeds up, plain and modulated (see docs/performance.md).
On CUDA: channels-last layout (:data:`CHANNELS_LAST_ON_CUDA`).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from sadtalker.enhance.gfpgan import prepare_gfpgan
from sadtalker.kernels.winograd import (
    WinogradConv3x3, default_winograd_tile, prepare_convs, unprepare_convs, winograd_gains,
)

# Tensor-core convolutions work in NHWC; in NCHW cuDNN transposes around them. bench/benchmark.py
# --enhancer-nchw measures the other layout.
CHANNELS_LAST_ON_CUDA = True


def prepare_enhancer(net: nn.Module, winograd_tile: Optional[int] = -1) -> nn.Module:
    """:func:`~sadtalker.enhance.gfpgan.prepare_gfpgan`, then the paths for the network's device; returns ``net``.

    ``winograd_tile`` -1 picks :func:`~sadtalker.kernels.winograd.default_winograd_tile` for the device. Call again
    after changing the weights or the device.
    """
    prepare_gfpgan(net)
    from gfpgan.archs.stylegan2_clean_arch import ModulatedConv2d

    device = next(net.parameters()).device
    tile = default_winograd_tile(device) if winograd_tile == -1 else winograd_tile
    unprepare_convs(net)
    if tile:
        prepare_convs(net, tile)
    with torch.no_grad():
        for layer in net.modules():
            if not isinstance(layer, ModulatedConv2d):
                continue
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
