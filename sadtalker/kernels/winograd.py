"""Convolutions computed with fewer multiply-adds, each the same function as the conv it replaces up to float rounding.

- :class:`WinogradConv3x3`: plain 3x3 convs, and 3x3x3 convs over H and W, as Winograd F(m x m, 3 x 3) (Lavin &
  Gray 2016). The input is cut into overlapping (m+2)^2 tiles, each tile and each kernel is mapped by a fixed linear
  transform, the channel sums become (m+2)^2 independent matrix products, and a last transform gives the m x m
  outputs. Multiplications per output fall from 9 * Cin to (m+2)^2 / m^2 * Cin: 4x fewer for m = 4.
- :class:`UpsampledConv`: a conv that reads a nearest-upsampled map, run on the small map.
- :func:`prepare_convs`: every plain conv of a module that Winograd speeds up runs as one.

They pay off on the CPU (see docs/performance.md); on CUDA cuDNN picks its own algorithm.
"""

from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Sequence, Tuple, Union

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
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
    ),
}
DEFAULT_TILE = 4
# A Winograd tile choice, by name: "auto" (DEFAULT_TILE on the CPU, "off" elsewhere), "off" (direct convs) or an
# output tile m (2 or 4). resolve_tile turns "auto" into one of the others for a device.
AUTO, OFF = "auto", "off"
Tile = Union[int, str]
BAND_TILES = 512  # tiles transformed at once (see WinogradConv3x3._bands)
# Where Winograd F(4, 3) beats the CPU's direct conv (docs/performance.md, "CPU paths"): 64+ input and 128+ output
# channels for a 2-D conv, 32+ of each over H and W of a 3-D conv. With fewer output channels its tile transforms
# cost more than they save.
WINOGRAD_MIN_CIN = 64
WINOGRAD_MIN_COUT = 128
WINOGRAD_MIN_CHANNELS_3D = 32


def winograd_matrices(m: int) -> Tuple[Tensor, Tensor, Tensor]:
    """(A^T (m, n), G (n, 3), B^T (n, n)) in float64 for output tile m (2 or 4)."""
    if m not in _WINOGRAD:
        raise ValueError(f"Winograd output tile must be one of {sorted(_WINOGRAD)}, got {m}")
    # mypy types tuple(generator) as tuple[Tensor, ...]; the table holds exactly the three matrices.
    return tuple(torch.tensor(rows, dtype=torch.float64) for rows in _WINOGRAD[m])  # type: ignore[return-value]


class WinogradConv3x3(nn.Module):
    """3x3 (or 3x3x3) conv, stride 1, padding 1: (B, Cin, [D,] H, W) -> (B, Cout, [D,] H, W), as a Winograd
    F(m x m, 3 x 3) over H and W.

    A 3-D kernel's three depth taps stay direct: the tiles of every depth slice are transformed once and
    each output slice sums three matrix products, one per neighbouring input slice. Holds the transformed
    kernel (taps, n^2, Cout, Cin) and the tile transforms as non-persistent buffers.
    """

    kernel: Tensor
    input_tf: Tensor
    output_tf: Tensor
    bias: Optional[Tensor]

    def __init__(self, weight: Tensor, bias: Optional[Tensor], m: int = DEFAULT_TILE) -> None:
        super().__init__()
        if weight.dim() not in (4, 5) or any(k != 3 for k in weight.shape[2:]):
            raise ValueError(f"WinogradConv3x3 needs a 3x3 or 3x3x3 kernel, got shape {tuple(weight.shape)}")
        at, g, bt = winograd_matrices(m)
        self.m, self.n = m, m + 2
        self.band_tiles = BAND_TILES
        self.volume = weight.dim() == 5
        w = weight.detach().to(torch.float64)
        w = w if self.volume else w.unsqueeze(2)  # (Cout, Cin, taps, 3, 3)
        u = torch.einsum("ik,ocdkl,jl->dijoc", g, w, g)  # (taps, n, n, Cout, Cin): G w G^T per channel pair
        n2 = self.n * self.n
        self.register_buffer(
            "kernel", u.reshape(w.shape[2], n2, w.shape[0], w.shape[1]).to(weight.dtype).contiguous(), persistent=False
        )  # (taps, n^2, Cout, Cin)
        # Input transform B^T d B of every tile as a stride-m conv with n^2 fixed (n, n) kernels.
        self.register_buffer(
            "input_tf", torch.kron(bt, bt).reshape(n2, 1, self.n, self.n).to(weight.dtype), persistent=False
        )
        self.register_buffer("output_tf", torch.kron(at, at).to(weight.dtype), persistent=False)  # (m^2, n^2)
        self.register_buffer("bias", None if bias is None else bias.detach().clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_autocast_enabled(x.device.type) or x.dtype != self.kernel.dtype:
            # The transforms' coefficients (up to 8 and down to 1/24) magnify rounding: under autocast the
            # transform runs in the kernel's dtype and only the result takes the input's type.
            with torch.autocast(device_type=x.device.type, enabled=False):
                return self._forward(x.to(self.kernel.dtype)).to(x.dtype)
        return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        volume = x if self.volume else x.unsqueeze(2)  # (B, Cin, D, H, W)
        b, _, d, h, w = volume.shape
        m = self.m
        th, tw = -(-h // m), -(-w // m)
        depth_pad = 1 if self.volume else 0
        padded = F.pad(volume, (1, 1 + tw * m - w, 1, 1 + th * m - h, depth_pad, depth_pad))
        out = volume.new_empty(b, self.kernel.shape[2], d, th * m, tw * m)
        if self.volume and b > 1:  # one volume at a time: measured faster than bands spanning the batch
            for i in range(b):
                self._bands(padded[i : i + 1], out[i : i + 1])
        else:
            self._bands(padded, out)
        if th * m != h or tw * m != w:
            out = out[..., :h, :w].contiguous()
        return out if self.volume else out.squeeze(2)

    def _bands(self, padded: Tensor, out: Tensor) -> None:
        """Fill ``out`` (B, Cout, D, th*m, tw*m) from ``padded`` (B, Cin, D + taps - 1, th*m + 2, tw*m + 2)."""
        b, cin, d_padded = padded.shape[:3]
        cout, d = out.shape[1:3]
        m, n = self.m, self.n
        th, tw = out.shape[3] // m, out.shape[4] // m
        blocks = out.view(b, cout, d, th, m, tw, m)  # pixel (m t + i, m s + j) is blocks[..., t, i, s, j]
        bias = None if self.bias is None else self.bias.view(1, cout, 1, 1, 1, 1, 1)
        # A band of tile rows at a time, so the transformed tiles (2.25x the band's input and output) stay in
        # the caches (BAND_TILES: see docs/performance.md, "CPU paths").
        rows = max(1, self.band_tiles // (b * d * tw))
        for r0 in range(0, th, rows):
            r1 = min(th, r0 + rows)
            band = padded[:, :, :, m * r0 : m * r1 + 2]
            spectra = F.conv2d(band.reshape(-1, 1, *band.shape[3:]), self.input_tf, stride=m)
            tiles = (r1 - r0) * tw
            # (n^2, Cin, D + taps - 1, B, tiles): a depth window of it is one (n^2, Cin, P) matrix batch
            spectra = spectra.view(b, cin, d_padded, n * n, tiles).permute(3, 1, 2, 0, 4).contiguous()
            # (n^2, Cout, P): the channel sums, one per spectrum entry, P = D * B * tiles
            products: Optional[Tensor] = None
            for tap, kernel in enumerate(self.kernel):
                window = spectra[:, :, tap : tap + d].reshape(n * n, cin, -1)
                products = torch.bmm(kernel, window) if products is None else products.baddbmm_(kernel, window)
            assert products is not None  # the kernel has at least one depth tap
            # A^T M A as (Cout * P, m^2), each tile's m x m outputs contiguous, so the copy below moves rows of m
            tile_out = torch.mm(products.view(n * n, -1).t(), self.output_tf.t())
            tile_out = tile_out.view(cout, d, b, r1 - r0, tw, m, m).permute(2, 0, 1, 3, 5, 4, 6)
            if bias is None:
                blocks[:, :, :, r0:r1].copy_(tile_out)
            else:
                torch.add(tile_out, bias, out=blocks[:, :, :, r0:r1])


class DirectConv3x3(nn.Module):
    """3x3 conv, padding 1, with a fixed kernel held as a non-persistent buffer (the CUDA path)."""

    weight: Tensor
    bias: Optional[Tensor]

    def __init__(self, weight: Tensor, bias: Optional[Tensor]) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone(), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=1)


def winograd_gains(weight: Tensor) -> bool:
    """Whether a Winograd F(4, 3) beat oneDNN's direct conv for a kernel of this shape on the 2-core CPU."""
    cout, cin = weight.shape[:2]
    if weight.dim() == 5:
        return cin >= WINOGRAD_MIN_CHANNELS_3D and cout >= WINOGRAD_MIN_CHANNELS_3D
    return cin >= WINOGRAD_MIN_CIN and cout >= WINOGRAD_MIN_COUT


def make_conv3x3(weight: Tensor, bias: Optional[Tensor], winograd_tile: Tile) -> nn.Module:
    """Winograd conv with output tile ``winograd_tile`` (2 or 4) when the conv is wide enough to gain, else direct
    (always for ``"off"``)."""
    if winograd_tile != OFF and winograd_gains(weight):
        return WinogradConv3x3(weight, bias, int(winograd_tile))
    return DirectConv3x3(weight, bias)


def _axis_phases(scale: int) -> List[Tuple[int, int, List[Tuple[int, Tensor]]]]:
    """One axis of a 3-tap, padding-1 conv read after nearest upsampling by ``scale``.

    Output index ``scale * i + a`` (phase a) reads upsampled indices ``scale * i + a + d``, d in (-1, 0, 1),
    which are low-resolution indices ``i + (a + d) // scale``: at most two distinct ones, so the taps that
    land on the same low-resolution index can be summed into one. Phases reading the same offsets are
    grouped: returns (first offset, taps, [(phase, (taps, 3) 0/1 matrix summing the kernel's taps)]).
    """
    groups: Dict[Tuple[int, int], List[Tuple[int, Tensor]]] = {}
    for phase in range(scale):
        offsets = [(phase + d) // scale for d in (-1, 0, 1)]
        low, high = min(offsets), max(offsets)
        merge = torch.zeros(high - low + 1, 3, dtype=torch.float64)
        for tap, offset in enumerate(offsets):
            merge[offset - low, tap] = 1
        groups.setdefault((low, high), []).append((phase, merge))
    return [(low, high - low + 1, members) for (low, high), members in groups.items()]


class UpsampledConv(nn.Module):
    """``conv(interpolate(x, scale_factor=scales, mode="nearest"), weight, bias, padding=1)``, for a
    3-tap kernel on every axis (2-D or 3-D), computed on ``x`` itself without building the upsampled map.

    Each output phase (its position inside a ``scales`` block) is a small conv of the low-resolution
    input whose kernel sums the taps that read the same input pixel: per axis, 2 taps instead of 3 for
    a scale of 2, 6 taps per 4 phases instead of 12 for a scale of 4. Multiply-adds fall 2.25x (x2 in
    two axes) and 4x (x4). Exact up to float rounding (the summed taps); an axis with scale 1 keeps its
    3 taps. Phases sharing offsets run as one conv with their kernels stacked.
    """

    def __init__(self, weight: Tensor, bias: Optional[Tensor], scales: Sequence[int]) -> None:
        super().__init__()
        self.ndim = weight.dim() - 2
        if self.ndim not in (2, 3) or len(scales) != self.ndim or any(k != 3 for k in weight.shape[2:]):
            raise ValueError("UpsampledConv needs a 2-D or 3-D kernel of 3 taps per axis and one scale per axis")
        self.scales = tuple(int(s) for s in scales)
        self.cout = weight.shape[0]
        self.conv = F.conv2d if self.ndim == 2 else F.conv3d
        self.parts: List[Tuple[Tuple[int, ...], Tuple[int, ...], List[Tuple[int, ...]]]] = []
        w = weight.detach()  # summing 1 to 3 taps in the weights' own dtype (float64 took 2x longer to build)
        for index, combo in enumerate(itertools.product(*(_axis_phases(s) for s in self.scales))):
            kernels, phases = [], []
            for members in itertools.product(*(members for _, _, members in combo)):
                kernel = w
                for axis, (_, merge) in enumerate(members):
                    merge = merge.to(w.dtype)
                    kernel = torch.tensordot(merge, kernel, dims=([1], [2 + axis])).movedim(0, 2 + axis)
                kernels.append(kernel)
                phases.append(tuple(phase for phase, _ in members))
            self.register_buffer(f"weight_{index}", torch.cat(kernels).to(weight.dtype).contiguous(), persistent=False)
            stacked = None if bias is None else bias.detach().repeat(len(phases)).clone()
            self.register_buffer(f"bias_{index}", stacked, persistent=False)
            self.parts.append((tuple(low for low, _, _ in combo), tuple(taps for _, taps, _ in combo), phases))

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[2:]
        padded = F.pad(x, (1, 1) * self.ndim)
        out: Optional[Tensor] = None
        blocks: Optional[Tensor] = None
        for index, (lows, taps, phases) in enumerate(self.parts):
            window = tuple(slice(1 + low, 1 + low + n + t - 1) for low, t, n in zip(lows, taps, size, strict=True))
            y = self.conv(
                padded[(slice(None), slice(None)) + window],
                getattr(self, f"weight_{index}"),
                getattr(self, f"bias_{index}"),
            )
            if out is None:  # the conv's dtype (autocast may lower it)
                out = y.new_empty(x.shape[0], self.cout, *(n * s for n, s in zip(size, self.scales, strict=True)))
                # (B, C, n0, s0, n1, s1, ...): phase (a0, a1, ...) of every block is one strided view
                blocks = out.view(x.shape[0], self.cout, *itertools.chain(*zip(size, self.scales, strict=True)))
            assert blocks is not None  # set with out on the first part
            for k, phase in enumerate(phases):
                target: List[Union[slice, int]] = [slice(None), slice(None)]
                for a in phase:
                    target += [slice(None), a]
                blocks[tuple(target)] = y[:, k * self.cout : (k + 1) * self.cout]
        assert out is not None
        return out


def winograd_convs(module: nn.Module) -> List[Union[nn.Conv2d, nn.Conv3d]]:
    """The plain 3x3 / 3x3x3 convs in ``module`` (stride 1, padding 1, one group) that Winograd speeds up."""
    found: List[Union[nn.Conv2d, nn.Conv3d]] = []
    for conv in module.modules():
        if not isinstance(conv, (nn.Conv2d, nn.Conv3d)):
            continue
        taps = conv.weight.dim() - 2
        plain = (
            conv.kernel_size == (3,) * taps
            and conv.stride == (1,) * taps
            and conv.padding == (1,) * taps
            and conv.dilation == (1,) * taps
            and conv.groups == 1
            and conv.padding_mode == "zeros"
        )
        if plain and winograd_gains(conv.weight):
            found.append(conv)
    return found


def prepare_convs(module: nn.Module, winograd_tile: int = DEFAULT_TILE) -> nn.Module:
    """Run every conv of :func:`winograd_convs` as a :class:`WinogradConv3x3` built from its current weights.

    The conv keeps its parameters (and state-dict keys); the Winograd copy hangs on it as ``winograd`` (no
    persistent buffers) and takes over its forward. Undo with :func:`unprepare_convs`.
    """
    with torch.no_grad():
        for conv in winograd_convs(module):
            conv.winograd = WinogradConv3x3(conv.weight, conv.bias, winograd_tile)
            conv.forward = conv.winograd.forward  # type: ignore[method-assign,assignment]  # the fast path replaces the instance's forward (undone by unprepare_convs)
    return module


def unprepare_convs(module: nn.Module) -> nn.Module:
    """Drop what :func:`prepare_convs` attached: the convs run as written again."""
    for conv in module.modules():
        if isinstance(conv, (nn.Conv2d, nn.Conv3d)) and hasattr(conv, "winograd"):
            del conv.winograd
            del conv.forward
    return module


def resolve_tile(tile: Tile, device: torch.device) -> Tile:
    """A :data:`Tile` for ``device``: ``"auto"`` is Winograd on the CPU (fewer multiply-adds) and ``"off"`` elsewhere
    (cuDNN picks its own algorithm); ``"off"``, 2 and 4 stay as they are."""
    if tile == AUTO:
        return DEFAULT_TILE if torch.device(device).type == "cpu" else OFF
    if tile != OFF and tile not in _WINOGRAD:
        raise ValueError(f'Winograd tile must be "auto", "off" or one of {sorted(_WINOGRAD)}, got {tile!r}')
    return tile
