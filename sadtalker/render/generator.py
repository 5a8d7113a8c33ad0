"""Occlusion-aware SPADE generator: the face renderer's image synthesiser (SadTalker sec. 3.3, after face-vid2vid).

Source image (B, 3, S, S) in [0, 1] -> 3-D appearance feature (B, 32, 16, S/4, S/4); the dense-motion
network warps it from the source keypoints to the driving keypoints (B, 15, 3); the warped volume is
flattened to (B, 512, S/4, S/4), reduced to 256 channels, scaled by the occlusion map, and decoded by
a SPADE decoder (the warped feature is also its label map) to the frame (B, 3, S, S) in [0, 1].

The work is split in three steps so a caller can encode the source once for many frames:
:meth:`encode` (source only), :meth:`motion` (per frame) and :meth:`decode` (per frame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sadtalker.render.blocks import DownBlock2d, ResBlock3d, SameBlock2d, SPADEResBlock
from sadtalker.render.dense_motion import DenseMotionNetwork, Motion
from sadtalker.render.dims import GeneratorDims


class SPADEDecoder(nn.Module):
    """(B, Cd, h, w) warped feature -> (B, 3, 4h, 4w) image in [0, 1]; Cd = 256 officially.

    conv3x3 to 2*Cd, SPADE residual blocks at h x w, nearest x2, block to Cd, nearest x2, block to
    64, LeakyReLU(0.2), conv3x3 to RGB, sigmoid. Every SPADE is conditioned on the input feature.

    Fast path: ``fc.forward`` is replaced by a fused copy of the conv (Winograd on the CPU, hung on it as
    ``fc.fused``), and on CUDA the weights are channels-last, by :func:`sadtalker.kernels.renderer.prepare_renderer`
    (the SPADE blocks: see :class:`~sadtalker.render.blocks.SPADEResBlock`).
    """

    def __init__(self, dims: GeneratorDims) -> None:
        super().__init__()
        ic, oc, hidden = dims.decoder_channels, dims.decoder_out_channels, dims.spade_hidden
        self.num_middle = dims.num_middle_blocks
        self.fc = nn.Conv2d(ic, 2 * ic, 3, padding=1)
        for i in range(self.num_middle):
            setattr(self, f"G_middle_{i}", SPADEResBlock(2 * ic, 2 * ic, ic, hidden))
        self.up_0 = SPADEResBlock(2 * ic, ic, ic, hidden)
        self.up_1 = SPADEResBlock(ic, oc, ic, hidden)
        self.conv_img = nn.Conv2d(oc, 3, 3, padding=1)

    def forward(self, feature: Tensor) -> Tensor:
        x = self.fc(feature)
        for i in range(self.num_middle):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        x = self.up_0(F.interpolate(x, scale_factor=2.0, mode="nearest"), feature)
        x = self.up_1(F.interpolate(x, scale_factor=2.0, mode="nearest"), feature)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))


class OcclusionAwareSPADEGenerator(nn.Module):
    """(source (B, 3, S, S), kp_source (B, K, 3), kp_driving (B, K, 3)) -> frame (B, 3, S, S) in [0, 1].

    Fast paths, attached by :func:`sadtalker.kernels.renderer.prepare_renderer`: with ``TORCH_COMPILE``,
    :meth:`motion` and :meth:`decode` are replaced by their ``torch.compile`` (instance attributes); on the CPU each
    wide plain 3x3 / 3x3x3 conv outside the decoder (down blocks, 3-D residual blocks, the dense-motion hourglass)
    has its ``forward`` replaced by a :class:`sadtalker.kernels.winograd.WinogradConv3x3` (``conv.winograd``).
    """

    def __init__(self, dims: GeneratorDims) -> None:
        super().__init__()
        if dims.max_features != dims.feature_channels * dims.reshape_depth:
            raise ValueError("GeneratorDims: max_features must equal feature_channels * reshape_depth")
        self.dims = dims
        self.dense_motion_network = DenseMotionNetwork(dims)
        self.first = SameBlock2d(dims.image_channels, dims.block_expansion, 3)
        widths = [min(dims.max_features, dims.block_expansion * 2**i) for i in range(dims.num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock2d(widths[i], widths[i + 1]) for i in range(dims.num_down_blocks))
        self.second = nn.Conv2d(widths[-1], dims.max_features, 1)
        self.resblocks_3d = nn.Sequential()
        for i in range(dims.num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(dims.feature_channels))
        self.third = SameBlock2d(dims.max_features, dims.decoder_channels, 3, leaky=True)
        self.fourth = nn.Conv2d(dims.decoder_channels, dims.decoder_channels, 1)
        self.decoder = SPADEDecoder(dims)

    def encode(self, source: Tensor) -> Tensor:
        """Source image (B, 3, S, S) -> appearance volume (B, C, D, S/4, S/4)."""
        out = self.first(source)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        b, _, h, w = out.shape
        return self.resblocks_3d(out.view(b, self.dims.feature_channels, self.dims.reshape_depth, h, w))

    def motion(self, feature: Tensor, kp_source: Tensor, kp_driving: Tensor) -> Motion:
        """Deformation grid and occlusion map for each driving pose (see dense_motion)."""
        return self.dense_motion_network(feature, kp_driving, kp_source)

    def decode(self, feature: Tensor, motion: Motion) -> Tensor:
        """Warp the appearance volume, flatten depth into channels, mask by occlusion, render (B, 3, S, S)."""
        warped = F.grid_sample(feature, motion.deformation, align_corners=False)
        b, c, d, h, w = warped.shape
        out = self.fourth(self.third(warped.view(b, c * d, h, w)))
        return self.decoder(out * motion.occlusion)

    def forward(self, source: Tensor, kp_source: Tensor, kp_driving: Tensor) -> Tensor:
        feature = self.encode(source)
        return self.decode(feature, self.motion(feature, kp_source, kp_driving))
