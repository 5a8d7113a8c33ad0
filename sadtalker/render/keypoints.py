"""Canonical keypoint detector and the keypoint transform (SadTalker sec. 3.3, after face-vid2vid).

:class:`KPDetector`: source image (B, 3, S, S) in [0, 1] -> canonical 3-D keypoints (B, K, 3) in
[-1, 1]^3 (K = 15). The image is blurred and downsampled x0.25, encoded by 2-D down blocks, lifted
to a (1024, 16, h, w) volume, decoded by 3-D up blocks to (32, 16, S/4, S/4), and K heatmaps are
turned into expected coordinates (softmax over all voxels with temperature 0.1).

:func:`transform_keypoints`: kp = R(yaw, pitch, roll) kp_canonical + (0, t_y, 0) + exp, with the
pose from MappingNet's bins (see :mod:`sadtalker.render.mapping`).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sadtalker.render.blocks import AntiAliasDownsample, DownBlock2d, UpBlock3d, coordinate_grid
from sadtalker.render.dims import KeypointDims
from sadtalker.render.mapping import HeadPose

PI_APPROX = 3.14  # the reference converts degrees with 3.14, not math.pi; kept for fidelity


class KPHourglass(nn.Module):
    """(B, 3, h, w) -> (B, out_filters, depth, h, w): 2-D encoder, 1x1 lift to 3-D, 3-D decoder."""

    def __init__(self, dims: KeypointDims) -> None:
        super().__init__()
        be, mf, n = dims.block_expansion, dims.max_features, dims.num_blocks
        widths = [dims.image_channels] + [min(mf, be * 2 ** (i + 1)) for i in range(n)]
        self.down_blocks = nn.Sequential()
        for i in range(n):
            self.down_blocks.add_module(f"down{i}", DownBlock2d(widths[i], widths[i + 1]))
        self.reshape_depth = dims.reshape_depth
        self.conv = nn.Conv2d(widths[-1], widths[-1] * dims.reshape_depth, 1)
        self.up_blocks = nn.Sequential()
        for i in range(n):
            cin, cout = min(mf, be * 2 ** (n - i)), min(mf, be * 2 ** (n - i - 1))
            self.up_blocks.add_module(f"up{i}", UpBlock3d(cin, cout))
        self.out_filters = min(mf, be)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(self.down_blocks(x))
        b, c, h, w = out.shape
        return self.up_blocks(out.view(b, c // self.reshape_depth, self.reshape_depth, h, w))


class KPDetector(nn.Module):
    """Source image (B, 3, S, S) in [0, 1] -> canonical keypoints (B, K, 3) in [-1, 1]^3."""

    def __init__(self, dims: KeypointDims) -> None:
        super().__init__()
        self.temperature = dims.temperature
        self.down = AntiAliasDownsample(dims.image_channels, dims.scale_factor)
        self.predictor = KPHourglass(dims)
        self.kp = nn.Conv3d(self.predictor.out_filters, dims.num_kp, 3, padding=1)

    def forward(self, image: Tensor) -> Tensor:
        heat = self.kp(self.predictor(self.down(image)))  # (B, K, D, H, W)
        b, k = heat.shape[:2]
        prob = F.softmax(heat.view(b, k, -1) / self.temperature, dim=2)
        grid = coordinate_grid(tuple(heat.shape[2:]), heat.dtype, heat.device).view(-1, 3)
        return torch.matmul(prob, grid)  # expected (x, y, z) per keypoint


def bins_to_degrees(logits: Tensor) -> Tensor:
    """(B, 66) bin logits -> (B,) angle in degrees: 3 * sum(softmax * [0..65]) - 99."""
    index = torch.arange(logits.shape[1], dtype=logits.dtype, device=logits.device)
    return torch.sum(F.softmax(logits, dim=1) * index, 1) * 3 - 99


def rotation_matrix(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """(B,) angles in degrees -> (B, 3, 3) = Rx(pitch) @ Ry(yaw) @ Rz(roll)."""
    yaw, pitch, roll = (a / 180 * PI_APPROX for a in (yaw, pitch, roll))
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)

    def matrix(*rows: Tensor) -> Tensor:
        return torch.stack(rows, dim=1).view(-1, 3, 3)

    rx = matrix(one, zero, zero, zero, torch.cos(pitch), -torch.sin(pitch), zero, torch.sin(pitch), torch.cos(pitch))
    ry = matrix(torch.cos(yaw), zero, torch.sin(yaw), zero, one, zero, -torch.sin(yaw), zero, torch.cos(yaw))
    rz = matrix(torch.cos(roll), -torch.sin(roll), zero, torch.sin(roll), torch.cos(roll), zero, zero, zero, one)
    return torch.einsum("bij,bjk,bkm->bim", rx, ry, rz)


def transform_keypoints(kp_canonical: Tensor, pose: HeadPose, camera: Optional[Tensor] = None) -> Tensor:
    """Canonical keypoints (B, K, 3) posed by MappingNet's output -> (B, K, 3).

    Only t's y component is used (the reference zeroes x and z); exp (B, 3K) is a per-keypoint offset.
    ``camera`` (B, 3): (yaw, pitch, roll) degrees that replace the predicted angles (the reference's ``yaw_in``,
    ``pitch_in``, ``roll_in``); a NaN keeps the predicted angle.
    """
    angles = [bins_to_degrees(pose.yaw), bins_to_degrees(pose.pitch), bins_to_degrees(pose.roll)]
    if camera is not None:
        camera = camera.to(device=angles[0].device, dtype=angles[0].dtype)
        angles = [torch.where(torch.isnan(camera[:, i]), angle, camera[:, i]) for i, angle in enumerate(angles)]
    rot = rotation_matrix(*angles)
    rotated = torch.einsum("bmp,bkp->bkm", rot, kp_canonical)
    t = pose.t * torch.tensor([0.0, 1.0, 0.0], dtype=pose.t.dtype, device=pose.t.device)
    return (rotated + t.unsqueeze(1)) + pose.exp.view(pose.exp.shape[0], -1, 3)
