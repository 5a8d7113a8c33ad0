"""Dense-motion network of the face renderer (face-vid2vid's motion field estimator, SadTalker sec. 3.3).

From the source's 3-D appearance feature (B, C, D, H, W) and the source / driving keypoints (B, K, 3)
it predicts:

- ``deformation`` (B, D, H, W, 3): for every output voxel the (x, y, z) in [-1, 1] to sample the
  source feature at, a softmax-weighted mix of K + 1 candidate motions (identity, and one rigid shift
  per keypoint: grid - kp_driving_k + kp_source_k);
- ``occlusion`` (B, 1, H, W) in [0, 1]: how much of the warped feature to keep.

The weights of the mix come from a 3-D hourglass over K + 1 channel groups, each holding a
keypoint heatmap difference (driving minus source Gaussian; zero for the background) followed by
the compressed feature warped by that motion.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sadtalker.render.blocks import Hourglass3d, coordinate_grid
from sadtalker.render.dims import GeneratorDims

MASK_FLOOR = 1e-3  # mixing weights below this are set to 0 (the reference's choice)


class Motion(NamedTuple):
    deformation: Tensor  # (B, D, H, W, 3) sampling grid into the source feature volume
    occlusion: Tensor  # (B, 1, H, W) in [0, 1]


class DenseMotionNetwork(nn.Module):
    """(feature (B, C, D, H, W), kp_driving (B, K, 3), kp_source (B, K, 3)) -> :class:`Motion`."""

    def __init__(self, dims: GeneratorDims) -> None:
        super().__init__()
        dm = dims.dense_motion
        self.num_kp = dims.num_kp
        self.kp_variance = dm.kp_variance
        groups = (dims.num_kp + 1) * (dm.compress + 1)
        self.hourglass = Hourglass3d(dm.block_expansion, groups, dm.num_blocks, dm.max_features)
        self.mask = nn.Conv3d(self.hourglass.out_filters, dims.num_kp + 1, 7, padding=3)
        self.compress = nn.Conv3d(dims.feature_channels, dm.compress, 1)
        self.norm = nn.BatchNorm3d(dm.compress)
        self.occlusion = nn.Conv2d(self.hourglass.out_filters * dims.reshape_depth, 1, 7, padding=3)

    def compress_feature(self, feature: Tensor) -> Tensor:
        """1x1x1 conv + BN + ReLU: (B, C, D, H, W) -> (B, compress, D, H, W). Depends on the source only."""
        return F.relu(self.norm(self.compress(feature)))

    def sparse_motions(self, grid: Tensor, kp_driving: Tensor, kp_source: Tensor) -> Tensor:
        """Candidate sampling grids (B, K+1, D, H, W, 3): identity, then grid - kp_driving_k + kp_source_k."""
        b = kp_driving.shape[0]
        shifted = (grid - kp_driving[:, :, None, None, None, :]) + kp_source[:, :, None, None, None, :]
        identity = grid.expand(b, 1, *grid.shape)
        return torch.cat([identity, shifted], dim=1)

    def heatmaps(self, grid: Tensor, kp_driving: Tensor, kp_source: Tensor) -> Tensor:
        """Gaussian(driving) - Gaussian(source) per keypoint, zero background first: (B, K+1, D, H, W)."""

        def gaussian(kp: Tensor) -> Tensor:
            diff = grid - kp[:, :, None, None, None, :]
            return torch.exp(-0.5 * (diff**2).sum(-1) / self.kp_variance)

        heat = gaussian(kp_driving) - gaussian(kp_source)
        return torch.cat([torch.zeros_like(heat[:, :1]), heat], dim=1)

    def heads(self, prediction: Tensor) -> Tuple[Tensor, Tensor]:
        """The mask logits (B, K+1, D, H, W) and occlusion logits (B, 1, H, W) from the hourglass output.

        Fast path (CPU): replaced by :class:`sadtalker.kernels.renderer.MotionHeads` (both convs from one tiled FFT,
        hung on the network as ``fused_heads``), attached by :func:`sadtalker.kernels.renderer.prepare_renderer`.
        """
        b, _, _, h, w = prediction.shape
        return self.mask(prediction), self.occlusion(prediction.reshape(b, -1, h, w))

    def forward(self, feature: Tensor, kp_driving: Tensor, kp_source: Tensor) -> Motion:
        return self.from_compressed(self.compress_feature(feature), kp_driving, kp_source)

    def from_compressed(self, compressed: Tensor, kp_driving: Tensor, kp_source: Tensor) -> Motion:
        """:meth:`forward` after :meth:`compress_feature` (which a caller may reuse across frames)."""
        b, c, d, h, w = compressed.shape
        k1 = self.num_kp + 1
        grid = coordinate_grid((d, h, w), compressed.dtype, compressed.device)
        motions = self.sparse_motions(grid, kp_driving, kp_source)  # (B, K+1, D, H, W, 3)
        repeated = compressed.unsqueeze(1).expand(b, k1, c, d, h, w).reshape(b * k1, c, d, h, w)
        warped = F.grid_sample(repeated, motions.reshape(b * k1, d, h, w, 3), align_corners=False)
        warped = warped.view(b, k1, c, d, h, w)
        heat = self.heatmaps(grid, kp_driving, kp_source).unsqueeze(2)  # (B, K+1, 1, D, H, W)
        prediction = self.hourglass(torch.cat([heat, warped], dim=2).view(b, k1 * (c + 1), d, h, w))

        mask_logits, occlusion_logits = self.heads(prediction)
        mask = F.softmax(mask_logits, dim=1)
        mask = torch.where(mask < MASK_FLOOR, torch.zeros_like(mask), mask).unsqueeze(2)  # (B, K+1, 1, D, H, W)
        deformation = (motions.permute(0, 1, 5, 2, 3, 4) * mask).sum(dim=1).permute(0, 2, 3, 4, 1)
        occlusion = torch.sigmoid(occlusion_logits)
        return Motion(deformation, occlusion)
