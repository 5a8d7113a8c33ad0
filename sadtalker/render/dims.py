"""Frozen hyperparameters of the face renderer's networks.

The official values are those of the reference's ``facerender.yaml`` / ``facerender_still.yaml``
(the released weights fix them, so nothing is read from yaml at run time). ``SMALL`` dims build
tiny, randomly initialised networks with the same structure for plumbing tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sadtalker.core.constants import MOTION_COEFFS, SOURCE_COEFFS

NUM_BINS = 66  # head-pose bins of 3 degrees: angle = 3 * E[bin] - 99


@dataclass(frozen=True)
class KeypointDims:
    """Canonical keypoint detector (KPDetector)."""

    num_kp: int = 15
    image_channels: int = 3
    block_expansion: int = 32  # features of the first 2-D down block
    max_features: int = 1024  # cap on 2-D features; the 1x1 conv gives max_features * reshape_depth
    num_blocks: int = 5  # 2-D down blocks and 3-D up blocks
    reshape_depth: int = 16  # depth of the 3-D feature volume
    temperature: float = 0.1  # heatmap softmax temperature
    scale_factor: float = 0.25  # anti-aliased downsampling of the input image


@dataclass(frozen=True)
class DenseMotionDims:
    """Dense-motion network (3-D hourglass over warped compressed features + keypoint heatmaps)."""

    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    compress: int = 4  # channels the 3-D feature is compressed to before warping
    kp_variance: float = 0.01  # variance of the keypoint Gaussians


@dataclass(frozen=True)
class GeneratorDims:
    """OcclusionAwareSPADEGenerator. ``max_features == feature_channels * reshape_depth``."""

    num_kp: int = 15
    image_channels: int = 3
    block_expansion: int = 64  # features after the first 2-D block
    max_features: int = 512  # channels of the 2-D map reshaped to the 3-D volume
    num_down_blocks: int = 2  # image -> feature map: /4 (the decoder upsamples x4)
    feature_channels: int = 32  # channels of the 3-D feature volume
    reshape_depth: int = 16  # depth of the 3-D feature volume
    num_resblocks: int = 6  # 3-D residual blocks on the source feature
    decoder_out_channels: int = 64  # channels before the final RGB conv
    spade_hidden: int = 128  # hidden channels of every SPADE modulation
    num_middle_blocks: int = 6  # SPADE residual blocks at feature resolution
    dense_motion: DenseMotionDims = field(default_factory=DenseMotionDims)

    @property
    def decoder_channels(self) -> int:
        """Channels of the warped 2-D feature (also the SPADE label map): 256 officially."""
        return self.block_expansion * 2**self.num_down_blocks


@dataclass(frozen=True)
class MappingDims:
    """MappingNet: a window of 3DMM coefficients -> head pose bins, translation, keypoint offsets."""

    coeff_nc: int = MOTION_COEFFS  # 70 for crop/resize (mapping_00229), SOURCE_COEFFS 73 for full (mapping_00109)
    descriptor_nc: int = 1024
    layers: int = 3  # dilated residual layers; each shortens the 27-frame window by 6
    num_kp: int = 15
    num_bins: int = NUM_BINS


@dataclass(frozen=True)
class RendererDims:
    """Keypoint detector and generator of one renderer (256 and 512 share these)."""

    keypoints: KeypointDims = field(default_factory=KeypointDims)
    generator: GeneratorDims = field(default_factory=GeneratorDims)


OFFICIAL = RendererDims()
OFFICIAL_MAPPING = {"crop": MappingDims(coeff_nc=MOTION_COEFFS), "full": MappingDims(coeff_nc=SOURCE_COEFFS)}

# Tiny networks of the same structure (random weights), for plumbing tests at image size 32.
SMALL = RendererDims(
    keypoints=KeypointDims(num_kp=4, block_expansion=4, max_features=8, num_blocks=2, reshape_depth=4),
    generator=GeneratorDims(
        num_kp=4,
        block_expansion=4,
        max_features=16,
        num_down_blocks=2,
        feature_channels=4,
        reshape_depth=4,
        num_resblocks=1,
        decoder_out_channels=4,
        spade_hidden=4,
        num_middle_blocks=1,
        dense_motion=DenseMotionDims(block_expansion=4, max_features=8, num_blocks=2, compress=2),
    ),
)
SMALL_MAPPING = {
    "crop": MappingDims(coeff_nc=MOTION_COEFFS, descriptor_nc=16, num_kp=4),
    "full": MappingDims(coeff_nc=SOURCE_COEFFS, descriptor_nc=16, num_kp=4),
}
SMALL_IMAGE_SIZE = 32
