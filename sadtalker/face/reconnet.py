"""ReconNet: an aligned 224x224 face -> 257 3DMM coefficients (Deep3DFaceRecon, as used by SadTalker).

A ResNet-50 (torchvision layout, stride on the 3x3 conv, no fc) pools the image to a 2048-d
feature; seven 1x1 convolutions give the coefficient groups, concatenated in this order:
id 0:80 | exp 80:144 | tex 144:224 | angle 224:227 (radians) | gamma 227:254 (SH lighting) |
trans 254:257 (tx, ty from one head, tz from another).
Input is RGB in [0, 1] with no mean/std normalisation. SadTalker keeps exp, angle and trans.
Pure architecture: no files, no devices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ReconNetDims:
    blocks: tuple = (3, 4, 6, 3)  # ResNet-50 bottlenecks per stage
    feature: int = 2048
    # Output heads in order: id, exp, tex, angle, gamma, (tx, ty), tz.
    heads: tuple = (80, 64, 80, 3, 27, 2, 1)


EXP = slice(80, 144)
ANGLE = slice(224, 227)
TRANS = slice(254, 257)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand x4, plus an identity or projected shortcut."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class ResNet50Trunk(nn.Module):
    """ResNet-50 without its classifier: (B, 3, H, W) -> (B, 2048, 1, 1)."""

    def __init__(self, blocks: tuple = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for index, (count, width) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
            stride = 1 if index == 0 else 2
            layer = []
            for block in range(count):
                layer.append(Bottleneck(cin, width, stride if block == 0 else 1))
                cin = width * Bottleneck.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*layer))

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = nn.functional.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
        return nn.functional.adaptive_avg_pool2d(x, 1)


class ReconNet(nn.Module):
    """Keys match the ``face_3drecon.`` component of the SadTalker file (``backbone.*``, ``final_layers.*``)."""

    def __init__(self, dims: ReconNetDims = ReconNetDims()) -> None:
        super().__init__()
        self.backbone = ResNet50Trunk(dims.blocks)
        self.final_layers = nn.ModuleList(nn.Conv2d(dims.feature, n, 1, bias=True) for n in dims.heads)

    def forward(self, image: Tensor) -> Tensor:
        """image (B, 3, 224, 224) RGB in [0, 1] -> coefficients (B, 257)."""
        feature = self.backbone(image)
        return torch.flatten(torch.cat([head(feature) for head in self.final_layers], dim=1), 1)


def select_coeff_70(full: Tensor) -> Tensor:
    """(B, 257) -> (B, 70): exp 64 | angle 3 | trans 3, the part SadTalker uses."""
    return torch.cat([full[:, EXP], full[:, ANGLE], full[:, TRANS]], dim=1)
