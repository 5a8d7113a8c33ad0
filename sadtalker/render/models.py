"""The face renderer's model set and constructors from dims (random weights until loaded)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from sadtalker.render.dims import OFFICIAL, OFFICIAL_MAPPING, MappingDims, RendererDims
from sadtalker.render.generator import OcclusionAwareSPADEGenerator
from sadtalker.render.keypoints import KPDetector
from sadtalker.render.mapping import MappingNet


@dataclass(frozen=True)
class RendererModels:
    """Keypoint detector + generator of one render size (eval mode, on one device and dtype)."""

    kp_extractor: KPDetector
    generator: OcclusionAwareSPADEGenerator

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.generator.parameters()).dtype


def build_renderer(
    dims: RendererDims = OFFICIAL, device: str = "cpu", dtype: torch.dtype = torch.float32, seed: Optional[int] = 0
) -> RendererModels:
    """Randomly initialised renderer in eval mode (``seed`` makes the weights reproducible)."""
    if seed is not None:
        torch.manual_seed(seed)
    kp = KPDetector(dims.keypoints).eval().to(device=device, dtype=dtype)
    gen = OcclusionAwareSPADEGenerator(dims.generator).eval().to(device=device, dtype=dtype)
    return RendererModels(kp, gen)


def build_mapping(
    dims: MappingDims = OFFICIAL_MAPPING["crop"],
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: Optional[int] = 0,
) -> MappingNet:
    """Randomly initialised MappingNet in eval mode."""
    if seed is not None:
        torch.manual_seed(seed)
    return MappingNet(dims).eval().to(device=device, dtype=dtype)
