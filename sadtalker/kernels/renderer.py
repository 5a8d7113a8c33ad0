"""The face renderer's inference paths, built from the loaded weights and attached once after loading.

The official state-dict keys stay as they are (strict loading is untouched): :func:`prepare_renderer` attaches
modules holding non-persistent buffers derived from the weights and points the instance's ``forward`` (or the
dense-motion network's ``heads``) at them. The network classes themselves compute as written. Every path computes
the same function up to float rounding; tests/kernels/test_renderer.py checks each against the layer it replaces
in float64, and the golden fidelity tests run through the prepared renderer.

Everywhere (:func:`prepare_decoder`): each SPADE residual block runs as a :class:`FusedSPADEBlock`:

- the ``mlp_shared`` convs of the block's SPADEs (they all read the same label map) as one conv;
- the ``mlp_gamma`` and ``mlp_beta`` convs of each SPADE (same input) as one conv, gamma's bias carrying the "1 +";
- the spectral-norm convs with their normalised kernel computed once; one instance norm for norm_s and norm_0.

On the CPU only: Winograd for the plain 3x3 / 3x3x3 convs that gain (:mod:`sadtalker.kernels.winograd`), convs on
nearest-upsampled maps run on the small map (decoder ``up_0``/``up_1`` label convs, dense-motion up blocks), and the
dense-motion mask and occlusion convs from one tiled FFT (:class:`MotionHeads`). On CUDA the decoder runs in
channels-last layout.
"""
from __future__ import annotations

import functools
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sadtalker.kernels.fft import TiledFFTConv
from sadtalker.kernels.winograd import (
    DEFAULT_TILE, UpsampledConv, default_winograd_tile, make_conv3x3, prepare_convs, unprepare_convs,
)
from sadtalker.render.blocks import SPADEResBlock, UpBlock3d

class FusedSPADEBlock(nn.Module):
    """Same function as a :class:`SPADEResBlock` (x (B, fin, H, W), seg (B, L, h, w) -> (B, fout, H, W)).

    One conv computes every SPADE's hidden activation; one conv per SPADE computes gamma and beta.
    """

    def __init__(self, block: nn.Module, winograd_tile: Optional[int], label_scale: int = 1) -> None:
        super().__init__()
        names = ["norm_s", "norm_0", "norm_1"] if block.learned_shortcut else ["norm_0", "norm_1"]
        spades = [getattr(block, name) for name in names]
        shared = [spade.mlp_shared[0] for spade in spades]
        self.names = names
        self.hidden = [conv.weight.shape[0] for conv in shared]
        shared_weight, shared_bias = torch.cat([c.weight for c in shared]), torch.cat([c.bias for c in shared])
        # The label map arrives label_scale times smaller than x and is nearest-upsampled before the shared
        # conv: that conv can run on the small map (UpsampledConv). Other sizes take the general path, which
        # is then only a fallback: a direct conv, so no Winograd kernel is built at start-up for it.
        self.label_scale = label_scale
        self.shared_upsampled = (UpsampledConv(shared_weight, shared_bias, (label_scale, label_scale))
                                 if label_scale > 1 else None)
        self.shared = make_conv3x3(shared_weight, shared_bias, winograd_tile if label_scale == 1 else None)
        # gamma's bias carries the "1 +" of x * (1 + gamma) + beta, saving a pass over a full-size map
        self.modulation = nn.ModuleList(
            make_conv3x3(torch.cat([s.mlp_gamma.weight, s.mlp_beta.weight]),
                         torch.cat([s.mlp_gamma.bias + 1, s.mlp_beta.bias]), winograd_tile)
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
        mods = dict(zip(self.names, zip(hidden, self.modulation)))

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


def attach(module: nn.Module, name: str, path: nn.Module, forward=None) -> None:
    """Hang ``path`` on ``module`` as ``name`` and make it the instance's ``forward`` (or ``forward`` if given)."""
    detach(module, name)
    setattr(module, name, path)
    module.forward = path.forward if forward is None else forward


def detach(module: nn.Module, name: str, method: str = "forward") -> None:
    """Undo :func:`attach`: the class's own ``method`` runs again."""
    if name in module._modules:
        delattr(module, name)
    module.__dict__.pop(method, None)


def named_spade_blocks(decoder: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The decoder's SPADE residual blocks with their names, in run order."""
    return [(name, module) for name, module in decoder.named_modules() if isinstance(module, SPADEResBlock)]


# How much smaller than its input x each SPADE block of SPADEDecoder gets the label map (the decoder's
# input feature): x is nearest-upsampled x2 before up_0 and again before up_1.
LABEL_SCALES = {"up_0": 2, "up_1": 4}


def prepare_decoder(decoder: nn.Module, winograd_tile: Optional[int] = DEFAULT_TILE,
                    small_label_convs: bool = True) -> nn.Module:
    """Run each SPADE block as a :class:`FusedSPADEBlock` and ``fc`` as a fused conv, built from the current weights.

    Call after loading, and again after any change of weights, device or dtype. ``winograd_tile``
    None gives fused direct convs (the CUDA choice). ``small_label_convs``: up_0 and up_1 run their
    shared SPADE conv on the small label map (:class:`UpsampledConv`). Returns ``decoder``.
    """
    with torch.no_grad():
        for name, block in named_spade_blocks(decoder):
            detach(block, "fused")
            param = block.conv_0.weight_orig
            scale = LABEL_SCALES.get(name, 1) if small_label_convs else 1
            attach(block, "fused", FusedSPADEBlock(block, winograd_tile, scale).to(param.device, param.dtype))
        fc = decoder.fc
        attach(fc, "fused", make_conv3x3(fc.weight, fc.bias, winograd_tile).to(fc.weight.device))
    decoder.prepared_for = (decoder.fc.weight.device, decoder.fc.weight.dtype)
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


def prepare_motion_heads(dense_motion: nn.Module) -> nn.Module:
    """Run a DenseMotionNetwork's ``heads`` as :class:`MotionHeads`; ``detach(dm, "fused_heads", "heads")`` undoes
    it."""
    with torch.no_grad():
        detach(dense_motion, "fused_heads", "heads")
        depth = dense_motion.occlusion.in_channels // dense_motion.mask.in_channels
        dense_motion.fused_heads = MotionHeads(dense_motion.mask, dense_motion.occlusion, depth)
        dense_motion.heads = dense_motion.fused_heads.forward
    return dense_motion


def up_blocks(module: nn.Module) -> List[nn.Module]:
    """The :class:`~sadtalker.render.blocks.UpBlock3d` blocks inside ``module``."""
    return [block for block in module.modules() if isinstance(block, UpBlock3d)]


def _upsampled_forward(block: nn.Module, x: Tensor) -> Tensor:
    return F.relu(block.norm(block.fused(x)))


def prepare_upsampling(module: nn.Module) -> nn.Module:
    """Run every UpBlock3d in ``module`` with an :class:`UpsampledConv` (nearest x2 in H, W + conv3x3x3 in one)."""
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


# Convs on nearest-upsampled maps run on the small map (UpsampledConv: 12 % fewer multiply-adds per frame) on the
# CPU; on CUDA only with this switch (bench/benchmark.py --upsampled-convs-on-cuda).
UPSAMPLED_CONVS_ON_CUDA = False


def prepare_renderer(generator: nn.Module, winograd_tile: Optional[int] = -1) -> nn.Module:
    """Attach the inference paths for the generator's device unless already prepared for its device and dtype.

    Everywhere: the decoder's fused SPADE blocks (:func:`prepare_decoder`). On CPU also: convs on upsampled maps
    computed on the small map (decoder up blocks, dense-motion up blocks), the mask and occlusion heads by tiled
    FFT, and Winograd for the plain 3x3 / 3x3x3 convs that gain. ``winograd_tile`` -1 picks
    :func:`default_winograd_tile` for the device. Returns ``generator``.
    """
    weight = generator.decoder.fc.weight
    if getattr(generator.decoder, "prepared_for", None) == (weight.device, weight.dtype):
        return generator
    tile = default_winograd_tile(weight.device) if winograd_tile == -1 else winograd_tile
    cpu = weight.device.type == "cpu"
    upsampled = cpu or (weight.device.type == "cuda" and UPSAMPLED_CONVS_ON_CUDA)
    prepare_decoder(generator.decoder, tile, small_label_convs=upsampled)
    dense_motion = generator.dense_motion_network
    if upsampled:
        prepare_upsampling(dense_motion)
    else:
        unprepare_upsampling(dense_motion)
    others = [child for name, child in generator.named_children() if name != "decoder"]  # decoder: fused blocks
    for child in others:  # what an earlier preparation (another device or dtype) attached goes first
        unprepare_convs(child)
    detach(dense_motion, "fused_heads", "heads")
    if cpu:
        prepare_motion_heads(dense_motion)
        if tile:
            for child in others:
                prepare_convs(child, tile)
    if weight.device.type == "cuda":  # tensor-core convs prefer NHWC
        generator.decoder.to(memory_format=torch.channels_last)
    return generator


def compile_generator(generator: nn.Module, backend: str = "inductor") -> nn.Module:
    """``torch.compile`` the generator's per-frame steps (motion, decode) in place, once.

    The module and its state dict are unchanged (the compiled callables are instance attributes).
    Call after :func:`prepare_renderer`, so the compiled graphs trace the fused decoder.
    """
    if getattr(generator, "compiled_with", None) == backend:
        return generator
    generator.motion = torch.compile(type(generator).motion.__get__(generator), backend=backend, dynamic=False)
    generator.decode = torch.compile(type(generator).decode.__get__(generator), backend=backend, dynamic=False)
    generator.compiled_with = backend
    return generator
