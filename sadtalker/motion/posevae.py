"""PoseVAE: audio + style + noise -> head-pose motion, 32 frames at a time (CVAE decoder).

SadTalker's audio-to-pose network (paper: "PoseVAE"). At inference only the CVAE *decoder* runs:
a Wav2Lip audio encoder embeds each frame's mel window (512), a linear layer shrinks every frame to
6 numbers (32 frames -> 192); the latent z (64) is shifted by the pose style's class bias; an MLP
maps [ref pose 6 | z 64 | audio 192] = 262 -> 128 -> 192 (sigmoid), read as a 1x32x6 map; a 2-D
ResUNet refines it (sigmoid output) and a final 6x6 linear layer gives the motion (pose delta).

The official weight file also holds the CVAE *encoder* and a pose-sequence *discriminator*, both
used only in training. They are built here (``netG.encoder``, ``netD_motion``) so the file loads
strictly with its exact key set, and never run. Pure architecture: no files, no devices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sadtalker.core.constants import NUM_POSE_STYLES
from sadtalker.motion.expnet import wav2lip_audio_encoder


@dataclass(frozen=True)
class PoseVAEDims:
    seq_len: int = 32  # frames per decoder call
    latent: int = 64  # z
    num_classes: int = NUM_POSE_STYLES  # pose styles 0..45
    audio_emb: int = 512  # Wav2Lip encoder output per frame
    audio_per_frame: int = 6  # linear_audio output per frame
    pose: int = 6  # angle 3 + translation 3
    hidden: int = 128  # MLP hidden width
    unet_filters: tuple = (32, 64, 128, 256)


class AudioSequenceEncoder(nn.Module):
    """Per-frame Wav2Lip embeddings. Keys: ``audio_encoder.<block>...`` (one extra level of nesting)."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_encoder = wav2lip_audio_encoder()

    def forward(self, mels: Tensor) -> Tensor:
        """mels (N, 1, 80, 16) -> (N, 512)."""
        return self.audio_encoder(mels).reshape(mels.shape[0], -1)


class ResidualConv(nn.Module):
    """Pre-activation residual block: BN-ReLU-conv(stride)-BN-ReLU-conv plus a strided conv+BN skip."""

    def __init__(self, cin: int, cout: int, stride) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, kernel_size=3, padding=1),
        )
        self.conv_skip = nn.Sequential(
            nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1), nn.BatchNorm2d(cout)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_block(x) + self.conv_skip(x)


class Upsample(nn.Module):
    """Transposed conv doubling the height (time) axis. Key: ``upsample``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.upsample = nn.ConvTranspose2d(channels, channels, kernel_size=(2, 1), stride=(2, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.upsample(x)


class ResUNet(nn.Module):
    """2-D residual U-Net over a (B, 1, 32, 6) pose map; halves only the time axis. Output in (0, 1)."""

    def __init__(self, filters: tuple = (32, 64, 128, 256)) -> None:
        super().__init__()
        f0, f1, f2, f3 = filters
        self.input_layer = nn.Sequential(
            nn.Conv2d(1, f0, kernel_size=3, padding=1),
            nn.BatchNorm2d(f0),
            nn.ReLU(),
            nn.Conv2d(f0, f0, kernel_size=3, padding=1),
        )
        self.input_skip = nn.Sequential(nn.Conv2d(1, f0, kernel_size=3, padding=1))
        self.residual_conv_1 = ResidualConv(f0, f1, stride=(2, 1))
        self.residual_conv_2 = ResidualConv(f1, f2, stride=(2, 1))
        self.bridge = ResidualConv(f2, f3, stride=(2, 1))
        self.upsample_1 = Upsample(f3)
        self.up_residual_conv1 = ResidualConv(f3 + f2, f2, stride=1)
        self.upsample_2 = Upsample(f2)
        self.up_residual_conv2 = ResidualConv(f2 + f1, f1, stride=1)
        self.upsample_3 = Upsample(f1)
        self.up_residual_conv3 = ResidualConv(f1 + f0, f0, stride=1)
        self.output_layer = nn.Sequential(nn.Conv2d(f0, 1, 1, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        """x (B, 1, L, 6) with L divisible by 8 -> (B, 1, L, 6)."""
        x1 = self.input_layer(x) + self.input_skip(x)
        x2 = self.residual_conv_1(x1)
        x3 = self.residual_conv_2(x2)
        x4 = self.bridge(x3)
        x6 = self.up_residual_conv1(torch.cat([self.upsample_1(x4), x3], dim=1))
        x8 = self.up_residual_conv2(torch.cat([self.upsample_2(x6), x2], dim=1))
        x10 = self.up_residual_conv3(torch.cat([self.upsample_3(x8), x1], dim=1))
        return self.output_layer(x10)


class PoseDecoder(nn.Module):
    """The CVAE decoder: (audio embeddings, ref pose, z, class) -> pose motion for seq_len frames."""

    def __init__(self, dims: PoseVAEDims) -> None:
        super().__init__()
        self.dims = dims
        self.resunet = ResUNet(dims.unet_filters)
        mlp_in = dims.pose + dims.latent + dims.seq_len * dims.audio_per_frame  # 262
        self.MLP = nn.Sequential()
        self.MLP.add_module("L0", nn.Linear(mlp_in, dims.hidden))
        self.MLP.add_module("A0", nn.ReLU())
        self.MLP.add_module("L1", nn.Linear(dims.hidden, dims.seq_len * dims.pose))
        self.MLP.add_module("sigmoid", nn.Sigmoid())
        self.pose_linear = nn.Linear(dims.pose, dims.pose)
        self.linear_audio = nn.Linear(dims.audio_emb, dims.audio_per_frame)
        self.classbias = nn.Parameter(torch.zeros(dims.num_classes, dims.latent))

    def forward(self, audio_emb: Tensor, ref_pose: Tensor, z: Tensor, pose_class: Tensor) -> Tensor:
        """audio_emb (B, 32, 512), ref_pose (B, 6), z (B, 64), pose_class (B,) int64 -> motion (B, 32, 6)."""
        bs = z.shape[0]
        audio = self.linear_audio(audio_emb).reshape(bs, -1)
        styled_z = z + self.classbias[pose_class]
        pose_map = self.MLP(torch.cat([ref_pose, styled_z, audio], dim=-1)).reshape(bs, 1, self.dims.seq_len, -1)
        return self.pose_linear(self.resunet(pose_map).squeeze(1))


class PoseEncoder(nn.Module):
    """The CVAE encoder (training only; built so the official file loads strictly, never run)."""

    def __init__(self, dims: PoseVAEDims) -> None:
        super().__init__()
        self.resunet = ResUNet(dims.unet_filters)
        mlp_in = dims.seq_len * dims.pose + dims.latent + dims.seq_len * dims.audio_per_frame + dims.pose  # 454
        self.MLP = nn.Sequential()
        self.MLP.add_module("L0", nn.Linear(mlp_in, dims.hidden))
        self.MLP.add_module("A0", nn.ReLU())
        self.linear_means = nn.Linear(dims.hidden, dims.latent)
        self.linear_logvar = nn.Linear(dims.hidden, dims.latent)
        self.linear_audio = nn.Linear(dims.audio_emb, dims.audio_per_frame)
        self.classbias = nn.Parameter(torch.zeros(dims.num_classes, dims.latent))


class CVAE(nn.Module):
    """Holds ``encoder`` (training only) and ``decoder`` under the file's ``netG.`` prefix."""

    def __init__(self, dims: PoseVAEDims) -> None:
        super().__init__()
        self.encoder = PoseEncoder(dims)
        self.decoder = PoseDecoder(dims)


class ConvNormRelu1d(nn.Module):
    """Conv1d (no bias) + BatchNorm1d + ReLU, a discriminator block. Keys: ``conv``, ``norm``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride, padding, bias=False)
        self.norm = nn.BatchNorm1d(cout)


class PoseSequenceDiscriminator(nn.Module):
    """Training-only pose discriminator, built so the official file loads strictly; never run."""

    def __init__(self, dims: PoseVAEDims) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvNormRelu1d(dims.pose, 256, 4, 2, 1),
            ConvNormRelu1d(256, 512, 4, 2, 1),
            ConvNormRelu1d(512, 1024, 3, 1, 1),
            nn.Conv1d(1024, 1, kernel_size=3, stride=1, padding=1),
        )


class PoseVAE(nn.Module):
    """Audio -> head pose. State-dict keys match the ``audio2pose.`` component of the SadTalker file."""

    def __init__(self, dims: PoseVAEDims = PoseVAEDims()) -> None:
        super().__init__()
        self.dims = dims
        self.audio_encoder = AudioSequenceEncoder()
        self.netG = CVAE(dims)
        self.netD_motion = PoseSequenceDiscriminator(dims)

    def encode_audio(self, mels: Tensor) -> Tensor:
        """mels (N, 1, 80, 16) -> per-frame embeddings (N, 512)."""
        return self.audio_encoder(mels)

    def forward(self, audio_emb: Tensor, ref_pose: Tensor, z: Tensor, pose_class: Tensor) -> Tensor:
        """audio_emb (B, 32, 512), ref_pose (B, 6), z (B, 64), pose_class (B,) -> motion (B, 32, 6)."""
        return self.netG.decoder(audio_emb, ref_pose, z, pose_class)
