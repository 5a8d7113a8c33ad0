"""Full mode: paste the animated face crop back into the whole image, as the reference does or feathered.

The reference resizes every rendered crop to its box in the original image (``cv2.resize``, bilinear) and places
it with OpenCV's ``seamlessClone`` (a Poisson solve per frame, on the CPU). Two methods, both in torch, batched,
on the job's device:

- ``"seamless"`` (the default): the reference's result. The crop is resized exactly as ``cv2.resize`` does and
  Poisson-blended by :mod:`sadtalker.output.seamless`, equal to ``cv2.seamlessClone`` within one level.
- ``"feather"``: the crop is resized with antialiasing and alpha-blended with a mask that is 1 inside and falls
  smoothly to 0 at the box's edge. It keeps the render's own colours up to the box's edge band.

The feather mask ramps with a smoothstep over ``feather`` pixels from each edge (per axis; the two axes
multiply), so it has no step anywhere: the largest change between neighbouring pixels is about
``1.5 / feather``. Pixels outside the box are the original's, exactly.

Output size: the original image's, rounded up to even (the last row/column is repeated, as
``sadtalker.output.video.pad_to_even`` does), ready for yuv420p.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union, overload

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from sadtalker.core.constants import PASTE_METHODS
from sadtalker.output.seamless import PoissonPaste, linear_resize

Box = Tuple[int, int, int, int]  # (x1, y1, x2, y2) in original-image pixels, x2/y2 exclusive
FEATHER_FRACTION = 0.1  # feather width as a fraction of the box's shorter side


def _ramp(n: int, feather: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(n,) weights: smoothstep of the distance from each pixel centre to the nearer end, over ``feather`` px."""
    centres = torch.arange(n, device=device, dtype=torch.float64) + 0.5
    distance = torch.minimum(centres, n - centres)
    t = (distance / max(feather, 1e-6)).clamp(0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).to(dtype)


def feather_mask(
    height: int, width: int, feather: float, device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(height, width) mask in [0, 1]: 1 inside, smoothly 0 towards the edges over ``feather`` pixels."""
    device = torch.device("cpu") if device is None else device
    return _ramp(height, feather, device, dtype)[:, None] * _ramp(width, feather, device, dtype)[None, :]


def _to_nhwc_tensor(image: Union[np.ndarray, torch.Tensor], device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image
    return tensor.to(device)


class Paster:
    """Pastes batches of face crops into one original image (built once per job, reused for every batch).

    ``original``: uint8 (H, W, 3) RGB. ``box``: where the crop goes (may reach past the image; the part
    outside is dropped). ``method``: ``"seamless"`` or ``"feather"`` (module docstring). Everything that depends
    only on the photo (the feather mask, the Poisson solve's boundary terms) is built here, on ``device``.
    ``solve_dtype``: the float type of the Poisson solve's last transform (float32; see docs/fidelity.md).
    """

    def __init__(
        self,
        original: np.ndarray,
        box: Box,
        device: Union[str, torch.device] = "cpu",
        feather_fraction: float = FEATHER_FRACTION,
        method: str = "seamless",
        solve_dtype: torch.dtype = torch.float32,
    ) -> None:
        if method not in PASTE_METHODS:
            raise ValueError(f"paste method must be one of {PASTE_METHODS}, got {method!r}")
        self.method = method
        x1, y1, x2, y2 = (int(v) for v in box)
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"empty paste box {box}")
        if original.dtype != np.uint8 or original.ndim != 3 or original.shape[2] != 3:
            raise ValueError(f"expected a uint8 (H, W, 3) image, got {original.dtype} {original.shape}")
        self.device = torch.device(device)
        height, width = original.shape[:2]
        padded = np.pad(original, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        self.photo = torch.from_numpy(padded).to(self.device)  # (He, We, 3) uint8, as the frames leave
        self.original = self.photo.permute(2, 0, 1)  # (3, He, We) view
        self.box = (x1, y1, x2, y2)
        # The part of the box inside the image, and where that part sits inside the box.
        self._dst = (max(x1, 0), max(y1, 0), min(x2, width), min(y2, height))
        if self._dst[2] <= self._dst[0] or self._dst[3] <= self._dst[1]:
            raise ValueError(f"paste box {box} lies outside the {width}x{height} image")
        self._src = (self._dst[0] - x1, self._dst[1] - y1, self._dst[2] - x1, self._dst[3] - y1)
        self.mask: Optional[torch.Tensor] = None  # feather: (bh, bw) over the whole box
        self.poisson: Optional[PoissonPaste] = None
        if method == "seamless":
            self.poisson = PoissonPaste(self.original, self.box, (width, height), solve_dtype)
        else:
            self.mask = feather_mask(y2 - y1, x2 - x1, feather_fraction * min(x2 - x1, y2 - y1), self.device)

    @property
    def box_size(self) -> Tuple[int, int]:
        """(width, height) of the face box: the size a face is pasted at."""
        x1, y1, x2, y2 = self.box
        return x2 - x1, y2 - y1

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height) of the output frames: the original's, rounded up to even."""
        return int(self.original.shape[2]), int(self.original.shape[1])

    @overload
    def paste(self, frames: np.ndarray) -> np.ndarray: ...

    @overload
    def paste(self, frames: torch.Tensor) -> torch.Tensor: ...

    def paste(self, frames: Union[np.ndarray, torch.Tensor]) -> Union[np.ndarray, torch.Tensor]:
        """uint8 (B, h, w, 3) crops -> uint8 (B, He, We, 3) whole frames; numpy in gives numpy out."""
        is_uint8 = frames.dtype == (np.uint8 if isinstance(frames, np.ndarray) else torch.uint8)
        if not is_uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"expected uint8 (B, h, w, 3) frames, got {frames.dtype} {tuple(frames.shape)}")
        faces = _to_nhwc_tensor(frames, self.device).permute(0, 3, 1, 2)  # (B, 3, h, w) uint8
        out = self.photo.expand(len(faces), *self.photo.shape).clone()  # (B, He, We, 3): the photo everywhere
        if self.poisson is not None:
            self._clone(faces, out)
        else:
            self._blend(faces.float(), out)
        return out.cpu().numpy() if isinstance(frames, np.ndarray) else out

    def _clone(self, faces: torch.Tensor, out: torch.Tensor) -> None:
        """Write (B, 3, h, w) uint8 faces into ``out`` as cv2.resize + cv2.seamlessClone place them."""
        assert self.poisson is not None
        if self.poisson.empty:  # a box under 5 px a side changes nothing, as in OpenCV
            return
        x1, y1, x2, y2 = self.poisson.written
        self.poisson.solve(self._resize(faces), out=out[:, y1:y2, x1:x2].permute(0, 3, 1, 2))

    def _resize(self, faces: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) uint8 -> (B, 3, bh, bw) uint8, as the reference's cv2.resize (bilinear, no antialiasing).

        On the CPU that is cv2.resize itself (fastest there); elsewhere :func:`linear_resize`, which computes
        the same integers.
        """
        width, height = self.box_size
        if faces.shape[2:] == (height, width):
            return faces
        if faces.device.type != "cpu":
            return linear_resize(faces, (width, height))
        frames = faces.permute(0, 2, 3, 1).numpy()
        resized = np.stack([cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR) for frame in frames])
        return torch.from_numpy(resized).permute(0, 3, 1, 2)

    def _blend(self, faces: torch.Tensor, out: torch.Tensor) -> None:
        """Write (B, 3, h, w) float 0..255 faces into ``out`` with the feathered mask."""
        x1, y1, x2, y2 = self.box
        if faces.shape[2:] != (y2 - y1, x2 - x1):
            faces = F.interpolate(faces, size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False, antialias=True)
        sx1, sy1, sx2, sy2 = self._src
        dx1, dy1, dx2, dy2 = self._dst
        face = faces[:, :, sy1:sy2, sx1:sx2]
        assert self.mask is not None
        mask = self.mask[sy1:sy2, sx1:sx2]
        background = self.original[:, dy1:dy2, dx1:dx2].float()
        blended = background + mask * (face - background)
        out[:, dy1:dy2, dx1:dx2] = blended.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
