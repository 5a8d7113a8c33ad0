"""MappingNet: 3DMM coefficient windows -> face-renderer motion (SadTalker sec. 3.3).

Input: a window of 27 frames of coefficients (B, C, 27), C = 70 (expression 64, angles 3,
translation 3) or 73 (plus the crop's scale and offset, for preprocess full). A k7 Conv1d to 1024
(27 -> 21 frames), three LeakyReLU(0.1) + dilated k3 Conv1d layers with a cropped residual
(21 -> 15 -> 9 -> 3), an average over time, then linear heads: yaw, pitch, roll (66 bins of 3 degrees
each), t (3) and exp (3K = 45 keypoint offsets).
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from sadtalker.render.dims import MappingDims


class HeadPose(NamedTuple):
    """MappingNet output for B windows."""

    yaw: Tensor  # (B, 66) bin logits
    pitch: Tensor  # (B, 66)
    roll: Tensor  # (B, 66)
    t: Tensor  # (B, 3) translation (only y is used)
    exp: Tensor  # (B, 3K) keypoint offsets


class MappingNet(nn.Module):
    """(B, C, 27) coefficient windows -> :class:`HeadPose`."""

    def __init__(self, dims: MappingDims) -> None:
        super().__init__()
        n = dims.descriptor_nc
        self.layers = dims.layers
        self.first = nn.Sequential(nn.Conv1d(dims.coeff_nc, n, 7))
        for i in range(dims.layers):
            setattr(self, f"encoder{i}", nn.Sequential(nn.LeakyReLU(0.1), nn.Conv1d(n, n, 3, dilation=3)))
        self.fc_roll = nn.Linear(n, dims.num_bins)
        self.fc_pitch = nn.Linear(n, dims.num_bins)
        self.fc_yaw = nn.Linear(n, dims.num_bins)
        self.fc_t = nn.Linear(n, 3)
        self.fc_exp = nn.Linear(n, 3 * dims.num_kp)

    def forward(self, windows: Tensor) -> HeadPose:
        out = self.first(windows)
        for i in range(self.layers):
            out = getattr(self, f"encoder{i}")(out) + out[:, :, 3:-3]
        out = F.adaptive_avg_pool1d(out, 1).flatten(1)
        return HeadPose(self.fc_yaw(out), self.fc_pitch(out), self.fc_roll(out), self.fc_t(out), self.fc_exp(out))
