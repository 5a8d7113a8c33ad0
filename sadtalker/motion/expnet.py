"""ExpNet: audio window + source expression + blink ratio -> 64 expression coefficients per frame.

SadTalker's audio-to-expression network (``SimpleWrapperV2``; paper: "ExpNet"). A Wav2Lip audio
encoder turns one (1, 80, 16) mel window into a 512-d embedding; a single linear layer maps
[embedding 512 | source exp 64 | blink 1] = 577 to the frame's absolute exp coefficients (no residual
to the source). Frames are independent (eval BatchNorm), so any batching gives the same numbers.

The Wav2Lip encoder is also used, with its own weights, by the PoseVAE (:mod:`sadtalker.motion.posevae`).
Pure architecture: no files, no devices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ExpNetDims:
    audio_emb: int = 512  # Wav2Lip encoder output
    exp: int = 64  # 3DMM expression coefficients
    blink: int = 1  # eye-blink ratio per frame


class ConvBlock(nn.Module):
    """Conv2d + BatchNorm2d (+ the input, when ``residual``) then ReLU. Keys: ``conv_block.{0,1}``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride, padding: int, residual: bool = False) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return torch.relu(out)


# (cin, cout, kernel, stride, padding, residual) for the 13 Wav2Lip audio-encoder blocks.
# Height 80 -> 80 -> 27 -> 9 -> 3 -> 1 and width 16 -> 16 -> 16 -> 6 -> 3 -> 1 (the last 3x3 is unpadded).
WAV2LIP_AUDIO_BLOCKS = (
    (1, 32, 3, 1, 1, False),
    (32, 32, 3, 1, 1, True),
    (32, 32, 3, 1, 1, True),
    (32, 64, 3, (3, 1), 1, False),
    (64, 64, 3, 1, 1, True),
    (64, 64, 3, 1, 1, True),
    (64, 128, 3, 3, 1, False),
    (128, 128, 3, 1, 1, True),
    (128, 128, 3, 1, 1, True),
    (128, 256, 3, (3, 2), 1, False),
    (256, 256, 3, 1, 1, True),
    (256, 512, 3, 1, 0, False),
    (512, 512, 1, 1, 0, False),
)


def wav2lip_audio_encoder() -> nn.Sequential:
    """The Wav2Lip audio encoder: (B, 1, 80, 16) mel windows -> (B, 512, 1, 1)."""
    return nn.Sequential(*(ConvBlock(*spec) for spec in WAV2LIP_AUDIO_BLOCKS))


class ExpNet(nn.Module):
    """Audio -> expression. State-dict keys match the ``audio2exp.`` component of the SadTalker file."""

    def __init__(self, dims: ExpNetDims = ExpNetDims()) -> None:
        super().__init__()
        self.dims = dims
        self.audio_encoder = wav2lip_audio_encoder()
        self.mapping1 = nn.Linear(dims.audio_emb + dims.exp + dims.blink, dims.exp)

    def forward(self, mels: Tensor, ref_exp: Tensor, blink: Tensor) -> Tensor:
        """mels (B, 1, 80, 16), ref_exp (B, 64), blink (B, 1) -> exp (B, 64)."""
        emb = self.audio_encoder(mels).reshape(mels.shape[0], -1)
        return self.mapping1(torch.cat([emb, ref_exp, blink], dim=1))
