"""Poisson paste: what ``cv2.seamlessClone(face, photo, mask=255, centre, NORMAL_CLONE)`` computes, batched in torch.

The reference pastes every rendered face into the photo with OpenCV's seamless clone, a Poisson blend
(Pérez et al. 2003): inside the face's box the result keeps the face's gradients, along the box's edge it takes the
photo's values, so the face's colours shift smoothly to meet the photo and no seam shows. The steps OpenCV 4.x
takes for the reference's call (an all-255 mask of the face's size, centred on the box), as this module repeats them
(read in ``modules/photo/src/seamless_cloning*.cpp``; the code here is our own):

1. **Region.** The mask's outer one-pixel ring is cleared, so the region is the face less one pixel on each side,
   placed at ``centre - region_size // 2``. For the reference's centre ``((x1 + x2) // 2, (y1 + y2) // 2)`` that is
   the box less one pixel on each side, for odd and even sizes alike. The region's own outer ring keeps the
   photo's values (the Dirichlet boundary); only the pixels inside it change: the box less two pixels a side.
2. **Guidance field.** Forward differences (right neighbour minus pixel, lower neighbour minus pixel) of the face
   where the mask, eroded three times by a 3x3 square, is still set; the erosion clears a 3-pixel band along the
   region's edge, and there the photo's own forward differences are used. The right-hand side is the field's
   divergence (backward differences) less the ring's values next to the edge. All of it is exact in integers.
3. **Solve.** The 5-point Laplacian with that boundary is diagonal in the 2-D sine transform (DST-I): transform,
   divide by the eigenvalues ``2 cos(pi k / (nx + 1)) + 2 cos(pi l / (ny + 1)) - 4``, transform back.
   OpenCV forms the eigenvalues in float32 (each cosine rounded to float32, their sum rounded, 4 subtracted); at
   the lowest frequencies that sum cancels against 4, so the rounding changes the smoothest modes of the solution
   by 1e-4 (182 px box) to 0.5 % (1024 px box), and values just above an integer come out just below it. We
   reproduce that change exactly (see :class:`PoissonPaste`) and solve the rest to float64 accuracy (float32 in
   the last transform by default): what still differs is the noise of OpenCV's own float32 FFT (about 5e-4 of a
   level), which moves 1 value in 1000-10000 across an integer.
4. **Rounding.** Below 0 -> 0, above 255 -> 255, the rest truncated (OpenCV casts, it does not round).

The reference resizes the rendered face to its box first with ``cv2.resize`` (bilinear, 11-bit fixed point, no
antialiasing); :func:`linear_resize` computes exactly that, integer for integer.

Beyond OpenCV (which refuses both): a region reaching past the photo is clipped to it, and the solve runs on the
clipped rectangle; a box under 5 pixels a side has nothing inside its ring and leaves the photo as it is.

Everything that depends only on the photo (its values on the ring and in the edge band, the eigenvalues, the
tridiagonal factors, the sine tables) is computed once per job in :class:`PoissonPaste`. A batch costs thin matrix
products, a tridiagonal sweep along y and one real FFT per row along x, per colour plane; planes go through the
solve in chunks that hold at most ``budget_bytes``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

Box = Tuple[int, int, int, int]  # (x1, y1, x2, y2), x2/y2 exclusive

ERODE_BAND = 3  # OpenCV erodes the mask 3 times with a 3x3 square: the photo's gradients rule this band
RESIZE_BITS = 11  # cv2.resize's bilinear weights for 8-bit images are fixed point with 11 fraction bits
BAND_HEAD, BAND_TAIL = 3, 2  # interior rows/columns along the top-left / bottom-right edges that carry g
# Bytes one interior value of a colour plane holds at the solve's peak: its float64 spectrum, and in the solve's
# dtype the face copy, the transform buffer (2 values), the FFT's complex output (2) and one spare.
SPECTRUM_BYTES, DTYPE_VALUES = 8, 6
# Bytes the solve may hold at once, whatever the batch: 1 GiB on the CPU; 4 GiB on a GPU, where a bigger chunk
# spreads the tridiagonal sweep's per-row kernel launches over more frames.
BUDGET_BYTES = {"cpu": 1 << 30, "cuda": 4 << 30}
LOW_BLOCK = 0.05  # float32 eigenvalue correction kept where 2 - 2 cos < this (leaves < 1e-4 of a level)


def clone_region(box: Box, bounds: Tuple[int, int]) -> Box:
    """The pixels OpenCV's clone works on (ring included): ``box`` less one pixel a side, clipped to (W, H)."""
    x1, y1, x2, y2 = box
    width, height = bounds
    return max(x1 + 1, 0), max(y1 + 1, 0), min(x2 - 1, width), min(y2 - 1, height)


def _masked_divergence(image: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """div(weight * forward-difference gradient of ``image``) on the interior: (..., h, w) -> (..., h-2, w-2)."""
    gx = (image[..., :, 1:] - image[..., :, :-1]) * weight[:, :-1]
    gy = (image[..., 1:, :] - image[..., :-1, :]) * weight[:-1, :]
    return (gx[..., 1:-1, 1:] - gx[..., 1:-1, :-1]) + (gy[..., 1:, 1:-1] - gy[..., :-1, 1:-1])


def _edge_source(strip: torch.Tensor, mask: torch.Tensor, first_is_ring: bool, last_is_ring: bool) -> torch.Tensor:
    """The source g on a strip's interior rows; ``strip`` = face - photo over some region rows, all its columns.

    The right-hand side is ``div(m grad F) + div((1-m) grad D) - ring(D)`` (F face, D photo, m the eroded mask)
    = ``L0 F_inside + g`` with ``L0`` the 5-point Laplacian with the ring held at 0 and
    ``g = div(m grad (F-D)) - L0 (F-D)_inside``, which is 0 wherever m is 1 around a pixel: g lives on three rows
    and columns along the top and left edges and two along the bottom and right. The region's ring is the strip's
    first/last column and, where flagged, its first/last row.
    """
    inside = strip.clone()
    inside[..., :, 0] = 0.0
    inside[..., :, -1] = 0.0
    if first_is_ring:
        inside[..., 0, :] = 0.0
    if last_is_ring:
        inside[..., -1, :] = 0.0
    laplacian = (
        inside[..., :-2, 1:-1]
        + inside[..., 2:, 1:-1]
        + inside[..., 1:-1, :-2]
        + inside[..., 1:-1, 2:]
        - 4.0 * inside[..., 1:-1, 1:-1]
    )
    return _masked_divergence(strip, mask) - laplacian


def _band(region: torch.Tensor, photo: torch.Tensor, mask: torch.Tensor, first: int, last: int) -> torch.Tensor:
    """g on interior rows [first, last), all columns: (b, c, h, w) uint8 faces and the photo's float64 (c, r, w)
    region rows first..last+1 -> float64 (b, c, last - first, w - 2)."""
    rows = region.shape[-2] - 2
    strip = region[..., first : last + 2, :].to(torch.float64) - photo
    return _edge_source(strip, mask[first : last + 2], first == 0, last == rows)


def _lines(image: torch.Tensor, columns: bool, first: int, last: int) -> torch.Tensor:
    """Region rows first..last+1 of ``image`` (..., h, w), or its columns (as rows of the transpose); last -1: all."""
    lines = image.transpose(-1, -2) if columns else image
    return lines if last < 0 else lines[..., first : last + 2, :]


def _chunks(frames: int, planes_per_chunk: int) -> Iterator[Tuple[slice, slice]]:
    """(frame slice, colour slice) pieces of a (frames, 3) batch, at most ``planes_per_chunk`` planes each."""
    if planes_per_chunk >= 3:
        step = planes_per_chunk // 3
        for start in range(0, frames, step):
            yield slice(start, start + step), slice(0, 3)
        return
    for frame in range(frames):
        for colour in range(0, 3, planes_per_chunk):
            yield slice(frame, frame + 1), slice(colour, colour + planes_per_chunk)


def _dst1(x: torch.Tensor) -> torch.Tensor:
    """Negated unnormalised DST-I along the last dim: ``-sum_j x_j sin(pi (j+1)(k+1) / (n+1))``, k = 0..n-1.

    The imaginary part of the real FFT of ``[0, x, 0 ... 0]`` (length 2n+2) at frequency k+1.
    """
    n = x.shape[-1]
    return torch.fft.rfft(F.pad(x, (1, n + 1)), dim=-1).imag[..., 1 : n + 1]


def _sines(n: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Entries [rows, cols] of the unnormalised DST-I matrix ``sin(pi (j+1)(k+1) / (n+1))`` (symmetric)."""
    return np.sin(np.pi * np.outer(rows + 1, cols + 1) / (n + 1))


def _cosines(n: int) -> Tuple[np.ndarray, np.ndarray]:
    """``2 cos(pi k / (n+1))``, k = 1..n, exact (float64) and as OpenCV rounds it (float32)."""
    exact = 2.0 * np.cos(np.pi * np.arange(1, n + 1) / (n + 1))
    return exact, exact.astype(np.float32)


def _bands(n: int) -> Tuple[int, int]:
    """(end of the head band, start of the tail band) of n interior rows or columns; they may meet."""
    head = min(BAND_HEAD, n)
    return head, max(n - BAND_TAIL, head)


def _elimination(diagonal: np.ndarray, rows: int) -> np.ndarray:
    """(rows, n) Thomas factors of the tridiagonal systems ``h[y-1] + diagonal * h[y] + h[y+1] = g[y]``."""
    factors = np.empty((rows, len(diagonal)))
    factors[0] = 1.0 / diagonal
    for y in range(1, rows):
        factors[y] = 1.0 / (diagonal - factors[y - 1])
    return factors


class PoissonPaste:
    """The Poisson solve of one job: a fixed photo and box, any number of face batches.

    ``photo``: uint8 (3, H', W') on the job's device (may carry padding past ``bounds``); ``box``: where the face
    goes; ``bounds``: (W, H), the photo's true size, which the region is clipped to. ``dtype``: of the face's copy,
    the correction's product and the last transform (float32 or float64); the source, the tridiagonal solve and
    the spectrum are always float64, because the lowest modes are ill-conditioned (condition ~ (n / pi)^2).

    How a batch is solved. With ``F`` the face inside the ring, the right-hand side is ``L0 F + g`` with ``g`` on
    thin edge bands (:func:`_edge_source`), so the exact solution is ``F + L0^-1 g``. ``g`` is transformed along x
    (a DST-I of its few band rows, a thin product for its band columns), each x frequency k is then a tridiagonal
    system along y (``h[y-1] + (2 cos(pi k / (nx+1)) - 4) h[y] + h[y+1]``), solved with factors computed once
    per job, and one inverse DST-I along x gives ``L0^-1 g``. OpenCV's float32 eigenvalues ``lambda32`` change
    that to ``u_exact + c S_y [(lambda / lambda32 - 1) * (S_y u_exact S_x)] S_x``; the factor is far from 0 only
    where lambda nearly cancels, so this is added for the low-frequency block (``2 - 2 cos`` < ``LOW_BLOCK``)
    with thin products.
    """

    def __init__(
        self,
        photo: torch.Tensor,
        box: Box,
        bounds: Tuple[int, int],
        dtype: torch.dtype = torch.float32,
        budget_bytes: Optional[int] = None,
    ) -> None:
        x1, y1 = box[0], box[1]
        self.roi = clone_region(box, bounds)
        rx1, ry1, rx2, ry2 = self.roi
        self.face_offset = (rx1 - x1, ry1 - y1)  # the region's top-left pixel, in face pixels
        self.dtype = dtype
        height, width = ry2 - ry1, rx2 - rx1
        self.interior = (max(height - 2, 0), max(width - 2, 0))  # (ny, nx): the values the solve writes
        self.empty = min(self.interior) == 0
        if self.empty:
            return
        self.device = photo.device
        self.mask = torch.zeros(height, width, dtype=torch.float64, device=photo.device)
        self.mask[ERODE_BAND : height - ERODE_BAND, ERODE_BAND : width - ERODE_BAND] = 1.0
        self.row_bands, self.col_bands = _bands(self.interior[0]), _bands(self.interior[1])
        under = photo[:, ry1:ry2, rx1:rx2]  # (3, h, w): the photo under the region, ring included
        # The photo's rows (False) and columns (True) that the edge bands read, keyed by (columns, first).
        self.strips = {
            (columns, first): _lines(under, columns, first, last).to(torch.float64)
            for columns, first, last in self._runs()
        }
        self._tables(photo.device)
        self._buffer: Optional[torch.Tensor] = None
        itemsize = torch.empty((), dtype=dtype).element_size()
        plane_bytes = (SPECTRUM_BYTES + DTYPE_VALUES * itemsize) * self.interior[0] * self.interior[1]
        if budget_bytes is None:
            budget_bytes = BUDGET_BYTES.get(photo.device.type, BUDGET_BYTES["cpu"])
        self.planes_per_chunk = max(1, budget_bytes // plane_bytes)

    def _runs(self) -> List[Tuple[bool, int, int]]:
        """(columns, first, last) of each edge band: interior rows [first, last), then interior columns."""
        (ny, nx), (top, bottom), (left, right) = self.interior, self.row_bands, self.col_bands
        runs = [(False, 0, top)] + ([(False, bottom, ny)] if bottom < ny else [])
        if bottom > top:
            runs += [(True, 0, left)] + ([(True, right, nx)] if right < nx else [])
        return runs

    def _tables(self, device: torch.device) -> None:
        """The per-job constants: band sines, tridiagonal factors, the low-frequency correction."""
        ny, nx = self.interior
        cy, cy32 = _cosines(ny)
        cx, cx32 = _cosines(nx)
        left, right = self.col_bands
        low_y, low_x = int(np.sum(2.0 - cy < LOW_BLOCK)), int(np.sum(2.0 - cx < LOW_BLOCK))
        exact = cy[:low_y, None] + cx[None, :low_x] - 4.0
        opencv = ((cy32[:low_y, None] + cx32[None, :low_x]) - np.float32(4.0)).astype(np.float64)

        def put(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array)).to(device=device, dtype=torch.float64)

        self.band_cols = put(_sines(nx, np.r_[0:left, right:nx], np.arange(nx)))  # (band columns, nx)
        self.factors = put(_elimination(cx - 4.0, ny))  # (ny, nx)
        self.low_y = put(_sines(ny, np.arange(low_y), np.arange(ny)))  # (Ky, ny)
        self.low_x = put(_sines(nx, np.arange(nx), np.arange(low_x)))  # (nx, Kx)
        self.low_x_face = self.low_x.to(self.dtype)  # for the face's projection, in the solve's dtype
        self.low_weight = put(2.0 / (ny + 1) * (exact / opencv - 1.0))  # (Ky, Kx)

    @property
    def written(self) -> Box:
        """(x1, y1, x2, y2) in the photo of the values :meth:`solve` returns: the region less its ring."""
        rx1, ry1, rx2, ry2 = self.roi
        return rx1 + 1, ry1 + 1, rx2 - 1, ry2 - 1

    def solve(self, faces: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """uint8 (B, 3, bh, bw) faces at the box's size -> uint8 (B, 3, ny, nx): the pasted values inside the ring.

        ``out``: where to write them (any strides, e.g. a view into whole frames); a new tensor by default.
        Colour planes are solved ``planes_per_chunk`` at a time, so memory stays bounded for any batch.
        """
        if self.empty:
            raise ValueError("the clone region has no interior; nothing to solve")
        ox, oy = self.face_offset
        height, width = self.mask.shape
        regions = faces[:, :, oy : oy + height, ox : ox + width]
        if out is None:
            out = torch.empty(len(faces), 3, *self.interior, dtype=torch.uint8, device=faces.device)
        for frames, colours in _chunks(len(faces), self.planes_per_chunk):
            out[frames, colours].copy_(self._solve_planes(regions[frames, colours], colours))
        return out

    def _solve_planes(self, region: torch.Tensor, colours: slice) -> torch.Tensor:
        """uint8 (b, c, h, w) face planes of the given colours -> float (b, c, ny, nx), clamped to 0..255."""
        nx = self.interior[1]
        spectrum = self._tridiagonal(self._source_along_x(region, colours))
        inside = region[..., 1:-1, 1:-1].to(self.dtype)
        self._add_low_correction(spectrum, inside)
        padded = self._padded(spectrum.shape[:-2])
        padded[..., 1 : nx + 1] = spectrum
        transformed = torch.fft.rfft(padded, dim=-1).imag[..., 1 : nx + 1]  # -spectrum S_x
        solution = inside.add_(transformed, alpha=-2.0 / (nx + 1))
        # OpenCV: below 0 -> 0, above 255 -> 255, else truncated; the caller's float -> uint8 copy truncates.
        return solution.clamp_(0.0, 255.0)

    def _padded(self, lead: Tuple[int, ...]) -> torch.Tensor:
        """(*lead, ny, 2 nx + 2) transform buffer whose zero columns are written once per job, then reused."""
        ny, nx = self.interior
        planes = math.prod(lead)
        if self._buffer is None or len(self._buffer) < planes:
            self._buffer = torch.zeros(planes, ny, 2 * nx + 2, dtype=self.dtype, device=self.device)
        return self._buffer[:planes].view(*lead, ny, 2 * nx + 2)

    def _source_along_x(self, region: torch.Tensor, colours: slice) -> torch.Tensor:
        """(b, c, h, w) uint8 face planes -> (b, c, ny, nx) float64: g transformed along x (``g S_x``)."""
        ny, nx = self.interior
        top, bottom = self.row_bands
        bands = {
            (columns, first): _band(
                _lines(region, columns, 0, -1),
                self.strips[columns, first][colours],
                self.mask.T if columns else self.mask,
                first,
                last,
            )
            for columns, first, last in self._runs()
        }
        spectrum = torch.empty(*region.shape[:-2], ny, nx, dtype=torch.float64, device=region.device)  # all set
        edges = -_dst1(torch.cat([band for (columns, _), band in bands.items() if not columns], -2))
        spectrum[..., :top, :] = edges[..., :top, :]
        spectrum[..., bottom:, :] = edges[..., top:, :]
        if bottom > top:  # the left and right bands of the rows in between
            sides = torch.cat([band for (columns, _), band in bands.items() if columns], -2)
            spectrum[..., top:bottom, :] = sides.transpose(-1, -2)[..., top:bottom, :] @ self.band_cols
        return spectrum

    def _tridiagonal(self, spectrum: torch.Tensor) -> torch.Tensor:
        """Solve every x frequency's system along y in place (Thomas algorithm, factors from the constructor)."""
        factors = self.factors
        rows = spectrum.shape[-2]
        spectrum[..., 0, :] *= factors[0]
        for y in range(1, rows):
            spectrum[..., y, :].sub_(spectrum[..., y - 1, :]).mul_(factors[y])
        for y in range(rows - 2, -1, -1):
            spectrum[..., y, :].addcmul_(factors[y], spectrum[..., y + 1, :], value=-1.0)
        return spectrum

    def _add_low_correction(self, spectrum: torch.Tensor, inside: torch.Tensor) -> None:
        """Add what OpenCV's float32 eigenvalues change, in place, to the low x frequencies of ``spectrum``.

        With ``u`` the exact solution, its low DST coefficients are ``S_y[:Ky] (F S_x[:, :Kx] + H[:, :Kx])``
        (H: the spectrum, since ``h = 2/(nx+1) H S_x`` and ``S_x S_x = (nx+1)/2``); the change is
        ``c S_y[:, :Ky] (weight * those) S_x[:Kx]``, i.e. ``2/(ny+1) S_y[:, :Ky] (...)`` added to H's first Kx
        columns before the inverse transform along x.
        """
        low_x = self.low_x.shape[1]
        projected = (inside @ self.low_x_face).to(torch.float64) + spectrum[..., :low_x]
        block = (self.low_y @ projected) * self.low_weight
        spectrum[..., :low_x] += self.low_y.T @ block


@lru_cache(maxsize=64)
def _linear_taps(src: int, dst: int, clamp_weight: bool) -> Tuple[np.ndarray, ...]:
    """cv2.resize's bilinear taps for one axis: source indices (i0, i1) and 11-bit weights (w0, w1), per output.

    OpenCV maps output pixel d to ``float32((d + 0.5) * src / dst - 0.5)``, splits it into floor and fraction,
    and rounds ``(1 - f) * 2048`` and ``f * 2048`` half to even. Along x a tap left of the first or right of the
    last pixel gets weight 0 (``clamp_weight``); along y the weights stay and both taps read the edge row.
    """
    position = ((np.arange(dst) + 0.5) * (src / dst) - 0.5).astype(np.float32)
    start = np.floor(position).astype(np.int64)
    fraction = (position - start.astype(np.float32)).astype(np.float32)
    if clamp_weight:
        low, high = start < 0, start >= src - 1
        fraction[low | high] = 0.0
        start[low], start[high] = 0, src - 1
    one = np.float32(1 << RESIZE_BITS)
    w0 = np.rint((np.float32(1.0) - fraction) * one).astype(np.int32)
    w1 = np.rint(fraction * one).astype(np.int32)
    return np.clip(start, 0, src - 1), np.clip(start + 1, 0, src - 1), w0, w1


def _taps_on(src: int, dst: int, clamp_weight: bool, device: torch.device) -> Tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a).to(device) for a in _linear_taps(src, dst, clamp_weight))


def linear_resize(faces: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """uint8 (B, C, h, w) -> uint8 (B, C, H, W) equal to ``cv2.resize(face, (W, H))`` (INTER_LINEAR) per image.

    Rows first in exact integers (source x weight, 11 bits), then columns the way OpenCV's SIMD path does for
    8-bit images: each row sum shifted right by 4, multiplied by its 11-bit weight and shifted right by 16, the
    two added, then rounded right by 2. No antialiasing: a shrink reads only the two nearest pixels.
    """
    width, height = size
    src_h, src_w = faces.shape[-2:]
    if (src_h, src_w) == (height, width):
        return faces
    x0, x1, a0, a1 = _taps_on(src_w, width, True, faces.device)
    y0, y1, b0, b1 = _taps_on(src_h, height, False, faces.device)
    pixels = faces.to(torch.int32)
    rows = (pixels[..., x0] * a0 + pixels[..., x1] * a1) >> 4  # (B, C, h, W); the >> 4 is per source row
    # Both taps at once: rows y0 then rows y1, each times its weight and shifted right by 16 (floor).
    taps = (rows[..., torch.cat([y0, y1]), :] * torch.cat([b0, b1])[:, None]) >> 16
    # The sum of two floored terms never exceeds 1020, so the result fits in 0..255 without a clamp.
    return ((taps[..., :height, :] + taps[..., height:, :] + 2) >> 2).to(torch.uint8)
