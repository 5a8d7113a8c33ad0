"""The face renderer's inference paths, built from the loaded weights and attached by :func:`prepare_renderer`.

:func:`prepare_renderer` is the one step that attaches them (``sadtalker.bundle.load_size_models`` calls it once
after loading; ``RendererPaths(fast=False)``, the worker's ``FAST_PATHS=false``, attaches none). Each class whose
method it replaces says so in its docstring ("Fast path: ..."):

- ``SPADEResBlock.forward`` (render/blocks.py): :class:`FusedSPADEBlock`, hung on the block as ``fused``;
- ``SPADEDecoder.fc`` (render/generator.py): a fused conv3x3 (Winograd on the CPU), as ``fc.fused``;
- on the CPU, ``UpBlock3d.forward`` (render/blocks.py): an :class:`~.winograd.UpsampledConv` on the small map, as
  ``fused``;
- on the CPU, ``DenseMotionNetwork.heads`` (render/dense_motion.py): :class:`MotionHeads` (one tiled FFT), as
  ``fused_heads``;
- on the CPU, every wide plain 3x3 / 3x3x3 ``nn.Conv2d`` / ``nn.Conv3d`` outside the decoder: a
  :class:`~.winograd.WinogradConv3x3`, as ``conv.winograd``;
- with ``TORCH_COMPILE``, ``OcclusionAwareSPADEGenerator.motion`` and ``decode`` (render/generator.py): their
  ``torch.compile``.

The official state-dict keys stay as they are (strict loading is untouched): the paths are modules holding
non-persistent buffers derived from the weights, hung on the instance (``fused``, ``fused_heads``, ``winograd``),
whose ``forward`` becomes the instance's. The network classes themselves compute as written. Every path computes
the same function up to float rounding; tests/kernels/test_renderer.py checks each against the layer it replaces
in float64, and the golden fidelity tests run the renderer with and without them.

The fused SPADE block:

- the ``mlp_shared`` convs of the block's SPADEs (they all read the same label map) as one conv;
- the ``mlp_gamma`` and ``mlp_beta`` convs of each SPADE (same input) as one conv, gamma's bias carrying the "1 +";
- the spectral-norm convs with their normalised kernel computed once; one instance norm for norm_s and norm_0.

The CPU-only paths pay off there (docs/performance.md, "CPU paths"); on CUDA cuDNN picks its own algorithms, the
decoder's weights become channels-last (tensor cores work in NHWC), and the upsampled convs are used only with
``RendererPaths.upsampled_convs_on_cuda``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sadtalker.kernels.fft import TiledFFTConv
from sadtalker.kernels.winograd import (
    AUTO,
    DEFAULT_TILE,
    OFF,
    Tile,
    UpsampledConv,
    make_conv3x3,
    prepare_convs,
    resolve_tile,
    unprepare_convs,
)
from sadtalker.render.blocks import SPADE, SPADEResBlock, UpBlock3d
from sadtalker.render.dense_motion import DenseMotionNetwork
from sadtalker.render.generator import OcclusionAwareSPADEGenerator, SPADEDecoder


def _bias(conv: nn.Conv2d) -> Tensor:
    """The SPADE convs' bias (they are all built with one)."""
    if conv.bias is None:
        raise ValueError("FusedSPADEBlock needs the SPADE convs to have a bias")
    return conv.bias


def _shared_conv(spade: SPADE) -> nn.Conv2d:
    """The conv of a SPADE's ``mlp_shared`` (conv, ReLU)."""
    conv = spade.mlp_shared[0]
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"SPADE.mlp_shared[0] should be an nn.Conv2d, got {type(conv).__name__}")
    return conv


class FusedSPADEBlock(nn.Module):
    """Same function as a :class:`SPADEResBlock` (x (B, fin, H, W), seg (B, L, h, w) -> (B, fout, H, W)).

    One conv computes every SPADE's hidden activation; one conv per SPADE computes gamma and beta.
    ``winograd_tile``: 2, 4 or ``"off"`` (direct convs, the CUDA choice).
    """

    shortcut_weight: Tensor

    def __init__(self, block: SPADEResBlock, winograd_tile: Tile, label_scale: int = 1) -> None:
        super().__init__()
        names = ["norm_s", "norm_0", "norm_1"] if block.learned_shortcut else ["norm_0", "norm_1"]
        spades: List[SPADE] = [getattr(block, name) for name in names]
        shared = [_shared_conv(spade) for spade in spades]
        self.names = names
        self.hidden = [conv.weight.shape[0] for conv in shared]
        shared_weight, shared_bias = torch.cat([c.weight for c in shared]), torch.cat([_bias(c) for c in shared])
        # The label map arrives label_scale times smaller than x and is nearest-upsampled before the shared
        # conv: that conv can run on the small map (UpsampledConv). Other sizes take the general path, which
        # is then only a fallback: a direct conv, so no Winograd kernel is built at start-up for it.
        self.label_scale = label_scale
        self.shared_upsampled = (
            UpsampledConv(shared_weight, shared_bias, (label_scale, label_scale)) if label_scale > 1 else None
        )
        self.shared = make_conv3x3(shared_weight, shared_bias, winograd_tile if label_scale == 1 else OFF)
        # gamma's bias carries the "1 +" of x * (1 + gamma) + beta, saving a pass over a full-size map
        self.modulation = nn.ModuleList(
            make_conv3x3(
                torch.cat([s.mlp_gamma.weight, s.mlp_beta.weight]),
                torch.cat([_bias(s.mlp_gamma) + 1, _bias(s.mlp_beta)]),
                winograd_tile,
            )
            for s in spades
        )
        self.conv_0 = make_conv3x3(block.conv_0.weight(), block.conv_0.bias, winograd_tile)
        self.conv_1 = make_conv3x3(block.conv_1.weight(), block.conv_1.bias, winograd_tile)
        self.learned_shortcut = block.learned_shortcut
        if self.learned_shortcut:
            self.register_buffer("shortcut_weight", block.conv_s.weight().detach().clone(), persistent=False)

    def forward(self, x: Tensor, seg: Tensor) -> Tensor:
        small = tuple(n * self.label_scale for n in seg.shape[2:]) == tuple(x.shape[2:])
        if self.shared_upsampled is not None and small:
            shared = self.shared_upsampled(seg)
        else:
            if seg.shape[2:] != x.shape[2:]:
                seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
            shared = self.shared(seg)
        hidden = torch.split(F.relu(shared), self.hidden, dim=1)
        mods = dict(zip(self.names, zip(hidden, self.modulation, strict=True), strict=True))

        def spade(name: str, normalized: Tensor) -> Tensor:
            actv, conv = mods[name]
            gamma_plus_one, beta = torch.chunk(conv(actv), 2, dim=1)
            return torch.addcmul(beta, normalized, gamma_plus_one)

        x_normalized = F.instance_norm(x, eps=1e-5)  # shared by norm_s and norm_0
        shortcut = x
        if self.learned_shortcut:
            shortcut = F.conv2d(spade("norm_s", x_normalized), self.shortcut_weight)
        dx = self.conv_0(F.leaky_relu(spade("norm_0", x_normalized), 0.2, inplace=True))
        dx = self.conv_1(F.leaky_relu(spade("norm_1", F.instance_norm(dx, eps=1e-5)), 0.2, inplace=True))
        return dx.add_(shortcut)


def attach(module: nn.Module, name: str, path: nn.Module, forward: Optional[Callable[..., Tensor]] = None) -> None:
    """Hang ``path`` on ``module`` as ``name`` and make it the instance's ``forward`` (or ``forward`` if given)."""
    detach(module, name)
    setattr(module, name, path)
    module.forward = path.forward if forward is None else forward


def detach(module: nn.Module, name: str, method: str = "forward") -> None:
    """Undo :func:`attach`: the class's own ``method`` runs again."""
    if name in module._modules:
        delattr(module, name)
    module.__dict__.pop(method, None)


def named_spade_blocks(decoder: nn.Module) -> List[Tuple[str, SPADEResBlock]]:
    """The decoder's SPADE residual blocks with their names, in run order."""
    return [(name, module) for name, module in decoder.named_modules() if isinstance(module, SPADEResBlock)]


# How much smaller than its input x each SPADE block of SPADEDecoder gets the label map (the decoder's
# input feature): x is nearest-upsampled x2 before up_0 and again before up_1.
LABEL_SCALES = {"up_0": 2, "up_1": 4}


def prepare_decoder(
    decoder: SPADEDecoder, winograd_tile: Tile = DEFAULT_TILE, small_label_convs: bool = True
) -> SPADEDecoder:
    """Run each SPADE block as a :class:`FusedSPADEBlock` and ``fc`` as a fused conv, built from the current weights.

    Part of :func:`prepare_renderer`. ``winograd_tile`` ``"off"`` gives fused direct convs (the CUDA choice).
    ``small_label_convs``: up_0 and up_1 run their shared SPADE conv on the small label map
    (:class:`UpsampledConv`). Returns ``decoder``.
    """
    with torch.no_grad():
        for name, block in named_spade_blocks(decoder):
            detach(block, "fused")
            param = block.conv_0.weight_orig
            scale = LABEL_SCALES.get(name, 1) if small_label_convs else 1
            attach(block, "fused", FusedSPADEBlock(block, winograd_tile, scale).to(param.device, param.dtype))
        fc = decoder.fc
        attach(fc, "fused", make_conv3x3(fc.weight, fc.bias, winograd_tile).to(fc.weight.device))
    return decoder


def unprepare_decoder(decoder: SPADEDecoder) -> SPADEDecoder:
    """Drop what :func:`prepare_decoder` attached: the SPADE blocks and ``fc`` run as written again."""
    for _, block in named_spade_blocks(decoder):
        detach(block, "fused")
    detach(decoder.fc, "fused")
    return decoder


class MotionHeads(nn.Module):
    """The dense-motion network's two heads on the hourglass output (B, C, D, H, W), from one input transform:
    the mask conv (C -> K+1, 7x7x7) and the occlusion conv (C * D -> 1, 7x7 over the flattened depth, which is
    a conv over the volume with D depth taps and no depth padding). Returns (mask logits, occlusion logits)."""

    def __init__(self, mask: nn.Conv3d, occlusion: nn.Conv2d, depth: int) -> None:
        super().__init__()
        k = mask.kernel_size[1]
        if mask.kernel_size != (k, k, k) or occlusion.kernel_size != (k, k):
            raise ValueError("MotionHeads needs the mask and occlusion convs to share their k x k plane kernel")
        self.mask = TiledFFTConv(mask.weight, mask.bias, depth_padding=k // 2)
        occlusion_weight = occlusion.weight.view(1, mask.in_channels, depth, k, k)
        self.occlusion = TiledFFTConv(occlusion_weight, occlusion.bias, depth_padding=0)

    def forward(self, prediction: Tensor) -> Tuple[Tensor, Tensor]:
        spectrum, geometry = TiledFFTConv.spectra(prediction, self.mask.k, self.mask.tile, self.mask.depth_padding)
        occlusion = self.occlusion.from_spectra(spectrum, geometry)  # (B, 1, 1, H, W)
        return self.mask.from_spectra(spectrum, geometry), occlusion[:, :, 0]


def prepare_motion_heads(dense_motion: DenseMotionNetwork) -> DenseMotionNetwork:
    """Run a DenseMotionNetwork's ``heads`` as :class:`MotionHeads` (part of :func:`prepare_renderer`);
    ``detach(dm, "fused_heads", "heads")`` undoes it."""
    with torch.no_grad():
        detach(dense_motion, "fused_heads", "heads")
        depth = dense_motion.occlusion.in_channels // dense_motion.mask.in_channels
        heads = MotionHeads(dense_motion.mask, dense_motion.occlusion, depth)
        dense_motion.fused_heads = heads
        dense_motion.__dict__["heads"] = heads.forward  # an instance attribute, as detach() expects
    return dense_motion


def up_blocks(module: nn.Module) -> List[UpBlock3d]:
    """The :class:`~sadtalker.render.blocks.UpBlock3d` blocks inside ``module``."""
    return [block for block in module.modules() if isinstance(block, UpBlock3d)]


def _upsampled_forward(block: UpBlock3d, x: Tensor) -> Tensor:
    return F.relu(block.norm(block.get_submodule("fused")(x)))


def prepare_upsampling(module: nn.Module) -> nn.Module:
    """Run every UpBlock3d in ``module`` with an :class:`UpsampledConv` (nearest x2 in H, W + conv3x3x3 in one);
    part of :func:`prepare_renderer`."""
    with torch.no_grad():
        for block in up_blocks(module):
            conv = UpsampledConv(block.conv.weight, block.conv.bias, (1, 2, 2))
            attach(block, "fused", conv, functools.partial(_upsampled_forward, block))
    return module


def unprepare_upsampling(module: nn.Module) -> nn.Module:
    """Drop what :func:`prepare_upsampling` attached."""
    for block in up_blocks(module):
        detach(block, "fused")
    return module


@dataclass(frozen=True)
class RendererPaths:
    """Which inference paths :func:`prepare_renderer` attaches; ``sadtalker.bundle`` builds it from the settings."""

    # False (FAST_PATHS=false): none of this module's paths; the network classes run as written.
    fast: bool = True
    # Winograd output tile for the plain 3x3 convs: "auto" (4 on the CPU, "off" elsewhere), "off", 2 or 4.
    winograd_tile: Tile = AUTO
    # Convs on nearest-upsampled maps on the small map on CUDA too (UPSAMPLED_CONVS_ON_CUDA); always on the CPU,
    # where they save 12 % of the multiply-adds per frame. bench/benchmark.py --upsampled-convs-on-cuda.
    upsampled_convs_on_cuda: bool = False
    # torch.compile backend for the per-frame steps (TORCH_COMPILE=true: "inductor"); None = not compiled.
    compile_backend: Optional[str] = None


DEFAULT_RENDERER_PATHS = RendererPaths()  # every fast path for the device, not compiled


def prepare_renderer(
    generator: OcclusionAwareSPADEGenerator, paths: RendererPaths = DEFAULT_RENDERER_PATHS
) -> OcclusionAwareSPADEGenerator:
    """Attach ``paths`` for the generator's device and dtype, once; returns ``generator``.

    The one step that replaces methods of the renderer's networks (the list in this module's docstring). What an
    earlier call attached (another device, dtype or choice) is dropped first, so ``RendererPaths(fast=False)``
    leaves the classes as written. Call again after changing the weights, the device or the dtype.
    """
    weight = generator.decoder.fc.weight
    wanted = (weight.device, weight.dtype, paths)
    if generator.__dict__.get("prepared_with") == wanted:
        return generator
    unprepare_renderer(generator)
    if paths.fast:
        _attach_fast_paths(generator, resolve_tile(paths.winograd_tile, weight.device), paths.upsampled_convs_on_cuda)
    if paths.compile_backend is not None:
        compile_generator(generator, paths.compile_backend)
    generator.__dict__["prepared_with"] = wanted
    return generator


def _attach_fast_paths(generator: OcclusionAwareSPADEGenerator, tile: Tile, upsampled_convs_on_cuda: bool) -> None:
    """Everywhere the fused decoder; on CPU also the upsampled convs, the FFT heads and Winograd elsewhere."""
    device = generator.decoder.fc.weight.device
    cpu = device.type == "cpu"
    upsampled = cpu or (device.type == "cuda" and upsampled_convs_on_cuda)
    prepare_decoder(generator.decoder, tile, small_label_convs=upsampled)
    dense_motion = generator.dense_motion_network
    if upsampled:
        prepare_upsampling(dense_motion)
    if cpu:
        prepare_motion_heads(dense_motion)
    if tile != OFF:
        for name, child in generator.named_children():
            if name != "decoder":  # the decoder's convs are in its fused blocks
                prepare_convs(child, int(tile))
    if device.type == "cuda":  # tensor-core convs prefer NHWC
        generator.decoder.to(memory_format=torch.channels_last)


def unprepare_renderer(generator: OcclusionAwareSPADEGenerator) -> OcclusionAwareSPADEGenerator:
    """Drop everything :func:`prepare_renderer` attached: the network classes run as written, in NCHW."""
    unprepare_decoder(generator.decoder)
    dense_motion = generator.dense_motion_network
    unprepare_upsampling(dense_motion)
    detach(dense_motion, "fused_heads", "heads")
    unprepare_convs(generator)
    for method in ("motion", "decode", "compiled_with", "prepared_with"):
        generator.__dict__.pop(method, None)
    generator.decoder.to(memory_format=torch.contiguous_format)
    return generator


def compile_generator(
    generator: OcclusionAwareSPADEGenerator, backend: str = "inductor"
) -> OcclusionAwareSPADEGenerator:
    """``torch.compile`` the generator's per-frame steps (motion, decode) in place (part of :func:`prepare_renderer`).

    The module and its state dict are unchanged (the compiled callables are instance attributes). Runs after the
    other paths are attached, so the compiled graphs trace the fused decoder.
    """
    # instance attributes over the class's methods (unprepare_renderer pops them from __dict__)
    cls = type(generator)
    generator.__dict__["motion"] = torch.compile(cls.motion.__get__(generator), backend=backend, dynamic=False)
    generator.__dict__["decode"] = torch.compile(cls.decode.__get__(generator), backend=backend, dynamic=False)
    generator.__dict__["compiled_with"] = backend
    return generator
