"""Building blocks shared by the renderer's networks (face-vid2vid / SadTalker face renderer).

Conventions: 2-D maps are (B, C, H, W), 3-D volumes (B, C, D, H, W). Every BatchNorm runs on its
stored statistics (the networks are only used in eval mode). Attribute names follow the official
checkpoints' state-dict keys, so the weight files load without renaming.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def coordinate_grid(shape: Tuple[int, int, int], dtype: torch.dtype, device: torch.device) -> Tensor:
    """Grid (D, H, W, 3) of (x, y, z) coordinates spanning [-1, 1] along W, H and D."""
    d, h, w = shape

    def axis(n: int) -> Tensor:
        return 2 * (torch.arange(n, dtype=dtype, device=device) / (n - 1)) - 1

    z, y, x = torch.meshgrid(axis(d), axis(h), axis(w), indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def anti_alias_kernel(channels: int, scale: float) -> Tensor:
    """Depthwise Gaussian (channels, 1, k, k) for band-limited downsampling by ``scale``.

    sigma = (1/scale - 1) / 2 and k = 2 * round(4 sigma) + 1: 13x13 with sigma 1.5 for scale 0.25.
    Computed in float32 in the same order as the stored kernel, so the bits agree.
    """
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    grids = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    kernel = torch.ones((size, size), dtype=torch.float32)
    for grid in grids:
        kernel = kernel * torch.exp(-((grid - (size - 1) / 2) ** 2) / (2 * sigma**2))
    kernel = kernel / torch.sum(kernel)
    return kernel.view(1, 1, size, size).repeat(channels, 1, 1, 1)


class AntiAliasDownsample(nn.Module):
    """Gaussian blur then keep every (1/scale)-th pixel: (B, C, H, W) -> (B, C, H*scale, W*scale)."""

    weight: Tensor

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.register_buffer("weight", anti_alias_kernel(channels, scale))
        self.stride = int(1 / scale)
        self.pad = self.weight.shape[-1] // 2

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (self.pad, self.pad, self.pad, self.pad))
        return F.conv2d(x, self.weight, stride=self.stride, groups=x.shape[1])


class SameBlock2d(nn.Module):
    """conv (padding keeps size) + BatchNorm + ReLU (or LeakyReLU 0.01): (B, Cin, H, W) -> (B, Cout, H, W)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, leaky: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2)
        self.norm = nn.BatchNorm2d(cout)
        self.leaky = leaky

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(self.conv(x))
        return F.leaky_relu(x, 0.01) if self.leaky else F.relu(x)


class DownBlock2d(nn.Module):
    """conv3x3 + BatchNorm + ReLU + 2x2 average pool: (B, Cin, H, W) -> (B, Cout, H/2, W/2)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class DownBlock3d(nn.Module):
    """conv3x3x3 + BatchNorm + ReLU + (1, 2, 2) average pool: halves H and W, keeps D."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool3d(F.relu(self.norm(self.conv(x))), (1, 2, 2))


class UpBlock3d(nn.Module):
    """Nearest x2 in H and W, then conv3x3x3 + BatchNorm + ReLU: (B, Cin, D, H, W) -> (B, Cout, D, 2H, 2W).

    Fast path (CPU): ``forward`` is replaced by the conv computed on the small map
    (:class:`sadtalker.kernels.winograd.UpsampledConv`, hung on the block as ``fused``), attached by
    :func:`sadtalker.kernels.renderer.prepare_renderer`.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return F.relu(self.norm(self.conv(x)))


class ResBlock3d(nn.Module):
    """Pre-activation residual block (BN, ReLU, conv3x3x3) x 2 + identity; keeps the shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm3d(channels)
        self.norm2 = nn.BatchNorm3d(channels)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class HourglassEncoder(nn.Module):
    """DownBlock3d chain; returns the input and every level's output (finest first)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        widths = [in_features] + [min(max_features, block_expansion * 2 ** (i + 1)) for i in range(num_blocks)]
        self.down_blocks = nn.ModuleList(DownBlock3d(widths[i], widths[i + 1]) for i in range(num_blocks))

    def forward(self, x: Tensor) -> List[Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class HourglassDecoder(nn.Module):
    """UpBlock3d chain concatenating the encoder's skips, then conv3x3x3 + BN + ReLU.

    Output channels: block_expansion + in_features (112 for the official dense-motion net).
    """

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            cin = (1 if i == num_blocks - 1 else 2) * min(max_features, block_expansion * 2 ** (i + 1))
            blocks.append(UpBlock3d(cin, min(max_features, block_expansion * 2**i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features
        self.conv = nn.Conv3d(self.out_filters, self.out_filters, 3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_filters)

    def forward(self, skips: List[Tensor]) -> Tensor:
        out = skips[-1]
        for block, skip in zip(self.up_blocks, reversed(skips[:-1]), strict=True):
            out = torch.cat([block(out), skip], dim=1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass3d(nn.Module):
    """U-Net over 3-D volumes: (B, in_features, D, H, W) -> (B, block_expansion + in_features, D, H, W)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        self.encoder = HourglassEncoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = HourglassDecoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


class SpectralNormConv2d(nn.Module):
    """Conv2d whose weight is ``weight_orig / sigma``, sigma = u . (W v) from the stored u and v.

    This is torch's spectral-norm parametrisation in eval mode (no power iteration), with the same
    state-dict keys: ``weight_orig``, ``weight_u``, ``weight_v`` and ``bias``.
    """

    weight_u: Tensor
    weight_v: Tensor

    def __init__(self, cin: int, cout: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        self.weight_orig = nn.Parameter(torch.empty(cout, cin, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(cout)) if bias else None
        nn.init.kaiming_uniform_(self.weight_orig, a=5**0.5)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -((cin * kernel_size**2) ** -0.5), (cin * kernel_size**2) ** -0.5)
        # Random init only (checkpoints overwrite u and v): a few power iterations so sigma is the
        # top singular value and a randomly initialised network stays finite.
        matrix = self.weight_orig.detach().reshape(cout, -1)
        u = F.normalize(torch.randn(cout), dim=0)
        for _ in range(3):
            v = F.normalize(torch.mv(matrix.t(), u), dim=0)
            u = F.normalize(torch.mv(matrix, v), dim=0)
        self.register_buffer("weight_u", u)
        self.register_buffer("weight_v", v)

    def weight(self) -> Tensor:
        """The normalised kernel (Cout, Cin, k, k)."""
        matrix = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
        sigma = torch.dot(self.weight_u, torch.mv(matrix, self.weight_v))
        return self.weight_orig / sigma

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight(), self.bias, padding=self.padding)


class SPADE(nn.Module):
    """Spatially adaptive normalisation: InstanceNorm(x) * (1 + gamma(seg)) + beta(seg).

    x (B, C, H, W); seg (B, label_nc, h, w) is nearest-resized to (H, W) first.
    """

    def __init__(self, channels: int, label_nc: int, hidden: int) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: Tensor, seg: Tensor) -> Tensor:
        normalized = F.instance_norm(x, eps=1e-5)
        if seg.shape[2:] != x.shape[2:]:
            seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResBlock(nn.Module):
    """Residual block of two SPADE + LeakyReLU(0.2) + spectral-norm conv3x3 stages.

    (B, fin, H, W) -> (B, fout, H, W); a learned SPADE + 1x1 shortcut when fin != fout.

    Fast path: ``forward`` is replaced by :class:`sadtalker.kernels.renderer.FusedSPADEBlock` (hung on the block as
    ``fused``), attached by :func:`sadtalker.kernels.renderer.prepare_renderer`.
    """

    def __init__(self, fin: int, fout: int, label_nc: int, hidden: int) -> None:
        super().__init__()
        fmiddle = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = SpectralNormConv2d(fin, fmiddle, 3)
        self.conv_1 = SpectralNormConv2d(fmiddle, fout, 3)
        self.norm_0 = SPADE(fin, label_nc, hidden)
        self.norm_1 = SPADE(fmiddle, label_nc, hidden)
        if self.learned_shortcut:
            self.conv_s = SpectralNormConv2d(fin, fout, 1, bias=False)
            self.norm_s = SPADE(fin, label_nc, hidden)

    def forward(self, x: Tensor, seg: Tensor) -> Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return shortcut + dx
