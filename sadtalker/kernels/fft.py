"""Large-kernel convolutions through FFTs of overlapping tiles."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TiledFFTConv(nn.Module):
    """A conv with a large k x k kernel over H and W (``weight`` (O, C, kd, k, k), odd k, padding k // 2 in H and
    W, ``depth_padding`` in D), computed through FFTs of overlapping tiles.

    The input's H x W plane is cut into tiles of ``tile`` + k - 1 pixels at a stride of ``tile``; each tile's 2-D
    spectrum times the kernel's spectrum gives ``tile`` x ``tile`` outputs of the linear convolution. The channel
    sums and the kd depth taps become one complex matrix product per frequency and tap. For the dense-motion
    network's 7x7x7 mask conv (112 -> 16 channels) that is about 8x fewer multiply-adds than the direct conv, and
    faster on the CPU (docs/performance.md); exact up to float rounding. Several convs of the same k and tile can share
    one input transform (:meth:`spectra`, then :meth:`from_spectra`).
    """

    kernel: Tensor
    bias: Optional[Tensor]

    def __init__(self, weight: Tensor, bias: Optional[Tensor], depth_padding: int, tile: int = 18) -> None:
        super().__init__()
        out_channels, _, self.depth_taps, k, k2 = weight.shape
        if k != k2 or k % 2 == 0:
            raise ValueError(f"TiledFFTConv needs an odd square kernel in H and W, got {tuple(weight.shape[3:])}")
        self.k, self.tile, self.depth_padding = k, tile, depth_padding
        n = tile + k - 1
        # conv2d correlates; the spectrum product convolves: flip the kernel in H and W
        spectrum = torch.fft.rfft2(torch.flip(weight.detach(), dims=(-2, -1)), s=(n, n))  # (O, C, kd, n, n//2+1)
        bins = n * (n // 2 + 1)
        self.register_buffer(
            "kernel", spectrum.reshape(*spectrum.shape[:3], bins).permute(3, 2, 0, 1).contiguous(), persistent=False
        )  # (bins, kd, O, C)
        self.register_buffer("bias", None if bias is None else bias.detach().clone(), persistent=False)
        self.out_channels = out_channels

    @staticmethod
    def spectra(x: Tensor, k: int, tile: int, depth_padding: int) -> Tuple[Tensor, Tuple[int, ...]]:
        """(B, C, D, H, W) -> tile spectra (bins, C, D + 2 * depth_padding, B, tiles) and the geometry."""
        b, c, d, h, w = x.shape
        p, n = k // 2, tile + k - 1
        th, tw = -(-h // tile), -(-w // tile)
        padded = F.pad(x, (p, p + tw * tile - w, p, p + th * tile - h, depth_padding, depth_padding))
        patches = padded.unfold(3, n, tile).unfold(4, n, tile)  # (B, C, Dp, th, tw, n, n)
        spectrum = torch.fft.rfft2(patches)
        bins = n * (n // 2 + 1)
        spectrum = spectrum.reshape(b, c, d + 2 * depth_padding, th * tw, bins).permute(4, 1, 2, 0, 3).contiguous()
        return spectrum, (b, d, h, w, th, tw, depth_padding)

    def from_spectra(self, spectrum: Tensor, geometry: Tuple[int, ...]) -> Tensor:
        """The conv's output (B, O, D_out, H, W) from :meth:`spectra` of its input."""
        b, d, h, w, th, tw, padded_by = geometry
        k, tile, n = self.k, self.tile, self.tile + self.k - 1
        first = padded_by - self.depth_padding  # the spectra may carry more depth padding than this conv uses
        d_out = d + 2 * self.depth_padding - self.depth_taps + 1
        bins, cin = spectrum.shape[:2]
        products: Optional[Tensor] = None  # (bins, O, D_out * B * tiles)
        for tap, kernel in enumerate(self.kernel.unbind(1)):
            window = spectrum[:, :, first + tap : first + tap + d_out].reshape(bins, cin, -1)
            products = torch.bmm(kernel, window) if products is None else products.add_(torch.bmm(kernel, window))
        assert products is not None  # the kernel has at least one depth tap
        tiles = products.view(n, n // 2 + 1, self.out_channels, d_out, b, th, tw).permute(4, 2, 3, 5, 6, 0, 1)
        out = torch.fft.irfft2(tiles, s=(n, n))[..., k - 1 :, k - 1 :]  # the tile's valid outputs
        out = out.permute(0, 1, 2, 3, 5, 4, 6).reshape(b, self.out_channels, d_out, th * tile, tw * tile)
        out = out[..., :h, :w]
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1, 1)
        return out.contiguous()

    def forward(self, x: Tensor) -> Tensor:
        return self.from_spectra(*self.spectra(x, self.k, self.tile, self.depth_padding))
