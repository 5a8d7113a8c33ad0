"""Inference-only rewrites of the SPADE decoder's 3x3 convolutions, built from the loaded weights.

The official state-dict keys stay as they are (strict loading is untouched); :func:`prepare_decoder`
runs after loading and attaches, to every :class:`SPADEResBlock`, a :class:`FusedSPADEBlock` holding
non-persistent buffers derived from the block's weights:

- the ``mlp_shared`` convs of the block's SPADEs (they all read the same label map) as one conv;
- the ``mlp_gamma`` and ``mlp_beta`` convs of each SPADE (same input) as one conv;
- the spectral-norm convs with their normalised kernel computed once.

On CPU every fused 3x3 conv runs as a Winograd F(m x m, 3 x 3) convolution (Lavin & Gray 2016): the
input is cut into overlapping (m+2)^2 tiles, each tile and each kernel is mapped by a fixed linear
transform, the channel sums become (m+2)^2 independent matrix products, and a last transform gives
the m x m outputs. Multiplications per output fall from 9 * Cin to (m+2)^2 / m^2 * Cin: 2.25x fewer
for m = 2, 4x fewer for m = 4. The maths is exact; only float rounding differs from a direct conv
(measured against the golden vectors in tests/test_renderer_fast.py). On CUDA the fused convs run
directly (cuDNN picks its own algorithm).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Winograd F(m, 3) matrices: output transform A^T (m, n), kernel transform G (n, 3), input transform
# B^T (n, n), n = m + 2, interpolation points 0, +-1 (m = 2) and 0, +-1, +-2 (m = 4), plus infinity.
_WINOGRAD: Dict[int, Tuple[list, list, list]] = {
    2: (
        [[1, 1, 1, 0], [0, 1, -1, -1]],
        [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
    ),
    4: (
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
    ),
}
DEFAULT_TILE = 4
# Measured on the 2-core CPU: Winograd F(4, 3) beats oneDNN's direct conv for 512 input channels at 64x64
# (about 25 % less CPU time); with fewer input channels its tile transforms cost more than they save.
WINOGRAD_MIN_CIN = 512


def winograd_matrices(m: int) -> Tuple[Tensor, Tensor, Tensor]:
    """(A^T (m, n), G (n, 3), B^T (n, n)) in float64 for output tile m (2 or 4)."""
    if m not in _WINOGRAD:
        raise ValueError(f"Winograd output tile must be one of {sorted(_WINOGRAD)}, got {m}")
    return tuple(torch.tensor(rows, dtype=torch.float64) for rows in _WINOGRAD[m])  # type: ignore[return-value]


class WinogradConv3x3(nn.Module):
    """3x3 conv, stride 1, padding 1: (B, Cin, H, W) -> (B, Cout, H, W), as a Winograd F(m, 3).

    Holds the transformed kernel (n^2, Cout, Cin) and the tile transforms as non-persistent buffers.
    """

    def __init__(self, weight: Tensor, bias: Optional[Tensor], m: int = DEFAULT_TILE) -> None:
        super().__init__()
        at, g, bt = winograd_matrices(m)
        self.m, self.n = m, m + 2
        w = weight.detach().to(torch.float64)
        u = torch.einsum("ik,ockl,jl->ijoc", g, w, g)  # (n, n, Cout, Cin): G w G^T per channel pair
        n2 = self.n * self.n
        self.register_buffer("kernel", u.reshape(n2, w.shape[0], w.shape[1]).to(weight.dtype).contiguous(),
                             persistent=False)  # (n^2, Cout, Cin)
        # Input transform B^T d B of every tile as a stride-m conv with n^2 fixed (n, n) kernels.
        self.register_buffer("input_tf", torch.kron(bt, bt).reshape(n2, 1, self.n, self.n).to(weight.dtype),
                             persistent=False)
        self.register_buffer("output_tf", torch.kron(at, at).to(weight.dtype), persistent=False)  # (m^2, n^2)
        self.register_buffer("bias", None if bias is None else bias.detach().clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, cin, h, w = x.shape
        m, n = self.m, self.n
        th, tw = -(-h // m), -(-w // m)
        padded = F.pad(x, (1, 1 + tw * m - w, 1, 1 + th * m - h))
        spectra = F.conv2d(padded.reshape(b * cin, 1, *padded.shape[2:]), self.input_tf, stride=m)
        spectra = spectra.view(b, cin, n * n, th * tw).permute(2, 1, 0, 3).reshape(n * n, cin, b * th * tw)
        products = torch.bmm(self.kernel, spectra)  # (n^2, Cout, P): the channel sums, one per spectrum entry
        cout = products.shape[1]
        out = torch.mm(self.output_tf, products.view(n * n, -1))  # (m^2, Cout * P): A^T M A
        out = out.view(m * m, cout, b, th * tw).permute(2, 1, 0, 3).reshape(b, cout * m * m, th, tw)
        out = F.pixel_shuffle(out, m)[:, :, :h, :w]  # channel c * m^2 + (i * m + j) -> pixel (m t + i, m s + j)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out.contiguous()


class DirectConv3x3(nn.Module):
    """3x3 conv, padding 1, with a fixed kernel held as a non-persistent buffer (the CUDA path)."""

    def __init__(self, weight: Tensor, bias: Optional[Tensor]) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone(), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=1)


def make_conv3x3(weight: Tensor, bias: Optional[Tensor], winograd_tile: Optional[int]) -> nn.Module:
    """Winograd conv when ``winograd_tile`` is set (CPU) and the conv is wide enough to gain, else direct."""
    if winograd_tile and weight.shape[1] >= WINOGRAD_MIN_CIN:
        return WinogradConv3x3(weight, bias, winograd_tile)
    return DirectConv3x3(weight, bias)


class FusedSPADEBlock(nn.Module):
    """Same function as a :class:`SPADEResBlock` (x (B, fin, H, W), seg (B, L, h, w) -> (B, fout, H, W)).

    One conv computes every SPADE's hidden activation; one conv per SPADE computes gamma and beta.
    """

    def __init__(self, block: nn.Module, winograd_tile: Optional[int]) -> None:
        super().__init__()
        names = ["norm_s", "norm_0", "norm_1"] if block.learned_shortcut else ["norm_0", "norm_1"]
        spades = [getattr(block, name) for name in names]
        shared = [spade.mlp_shared[0] for spade in spades]
        self.names = names
        self.hidden = [conv.weight.shape[0] for conv in shared]
        self.shared = make_conv3x3(torch.cat([c.weight for c in shared]), torch.cat([c.bias for c in shared]),
                                   winograd_tile)
        self.modulation = nn.ModuleList(
            make_conv3x3(torch.cat([s.mlp_gamma.weight, s.mlp_beta.weight]),
                         torch.cat([s.mlp_gamma.bias, s.mlp_beta.bias]), winograd_tile)
            for s in spades
        )
        self.conv_0 = make_conv3x3(block.conv_0.weight(), block.conv_0.bias, winograd_tile)
        self.conv_1 = make_conv3x3(block.conv_1.weight(), block.conv_1.bias, winograd_tile)
        self.learned_shortcut = block.learned_shortcut
        if self.learned_shortcut:
            self.register_buffer("shortcut_weight", block.conv_s.weight().detach().clone(), persistent=False)

    def forward(self, x: Tensor, seg: Tensor) -> Tensor:
        if seg.shape[2:] != x.shape[2:]:
            seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        hidden = torch.split(F.relu(self.shared(seg)), self.hidden, dim=1)
        mods = dict(zip(self.names, zip(hidden, self.modulation)))

        def spade(name: str, value: Tensor) -> Tensor:
            actv, conv = mods[name]
            gamma, beta = torch.chunk(conv(actv), 2, dim=1)
            return torch.addcmul(beta, F.instance_norm(value, eps=1e-5), 1 + gamma)

        shortcut = x
        if self.learned_shortcut:
            shortcut = F.conv2d(spade("norm_s", x), self.shortcut_weight)
        dx = self.conv_0(F.leaky_relu(spade("norm_0", x), 0.2))
        dx = self.conv_1(F.leaky_relu(spade("norm_1", dx), 0.2))
        return shortcut + dx


def spade_blocks(decoder: nn.Module) -> List[nn.Module]:
    """The decoder's SPADE residual blocks, in run order."""
    from sadtalker.renderer.blocks import SPADEResBlock

    return [module for module in decoder.modules() if isinstance(module, SPADEResBlock)]


def prepare_decoder(decoder: nn.Module, winograd_tile: Optional[int] = DEFAULT_TILE) -> nn.Module:
    """Attach a :class:`FusedSPADEBlock` (built from the current weights) to each SPADE block.

    Call after loading, and again after any change of weights, device or dtype. ``winograd_tile``
    None gives fused direct convs (the CUDA choice). Returns ``decoder``.
    """
    with torch.no_grad():
        for block in spade_blocks(decoder):
            block.fused = None
            param = block.conv_0.weight_orig
            block.fused = FusedSPADEBlock(block, winograd_tile).to(device=param.device, dtype=param.dtype)
        fc = decoder.fc
        decoder.fused_fc = make_conv3x3(fc.weight, fc.bias, winograd_tile).to(fc.weight.device)
    decoder.prepared_for = (decoder.fc.weight.device, decoder.fc.weight.dtype)
    return decoder


def unprepare_decoder(decoder: nn.Module) -> nn.Module:
    """Drop the fused modules: the decoder runs its original (unfused) layers again."""
    for block in spade_blocks(decoder):
        block.fused = None
    decoder.fused_fc = None
    decoder.prepared_for = None
    return decoder


def prepare_renderer(generator: nn.Module, winograd_tile: Optional[int] = -1) -> nn.Module:
    """Prepare ``generator.decoder`` unless already prepared for its current device and dtype.

    ``winograd_tile`` -1 picks :func:`default_winograd_tile` for the device. Returns ``generator``.
    """
    weight = generator.decoder.fc.weight
    if generator.decoder.prepared_for != (weight.device, weight.dtype):
        tile = default_winograd_tile(weight.device) if winograd_tile == -1 else winograd_tile
        prepare_decoder(generator.decoder, tile)
        if weight.device.type == "cuda":  # tensor-core convs prefer NHWC; unmeasured until a GPU run
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


def default_winograd_tile(device: torch.device) -> Optional[int]:
    """Winograd on CPU (fewer multiply-adds), direct convs elsewhere."""
    return DEFAULT_TILE if torch.device(device).type == "cpu" else None
