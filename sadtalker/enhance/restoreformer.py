"""RestoreFormer: the reference's second enhancer (``--enhancer RestoreFormer``), built from the gfpgan package.

The reference's ``GFPGANer(arch='RestoreFormer', model_path=.../RestoreFormer.pth)`` builds
``gfpgan.archs.restoreformer_arch.RestoreFormer()`` with its default arguments (a VQ auto-encoder with multi-head
cross-attention at 16 x 16), loads the file's ``params_ema`` (else ``params``) and calls ``net(face)[0]`` on a
512 x 512 face in [-1, 1]. We use the same network class and the same call; :class:`~.stage.FaceEnhancer` does the
resizing and batching as for GFPGAN.

The weights file (GFPGAN release v1.3.4, ``RestoreFormer.pth``) has no published SHA-256 or size, so it is
optional: a worker without it starts normally and refuses ``enhancer: "restoreformer"`` with ``invalid_input``.
"""

from __future__ import annotations

from typing import Any, Dict

import torch
from torch import Tensor, nn

OFFICIAL_ARGS: Dict[str, Any] = {}  # RestoreFormer() defaults, as GFPGANer builds it
# A small network of the same structure for plumbing tests (64 px faces).
SMALL_ARGS: Dict[str, Any] = dict(
    n_embed=16,
    embed_dim=32,
    ch=32,
    ch_mult=(1, 2),
    num_res_blocks=1,
    attn_resolutions=(32,),
    resolution=64,
    z_channels=32,
    head_size=2,
)


def build_restoreformer(args: Dict[str, Any] = OFFICIAL_ARGS, device: str = "cpu") -> nn.Module:
    """RestoreFormer from gfpgan's architecture module, eval."""
    from sadtalker.core.compat import patch_torchvision

    patch_torchvision()  # gfpgan imports basicsr, which needs the torchvision alias
    from gfpgan.archs.restoreformer_arch import RestoreFormer

    with torch.device(device):
        net = RestoreFormer(**args)
    return net.eval()


def restoreformer_forward(net: nn.Module, x: Tensor) -> Tensor:
    """(B, 3, S, S) in [-1, 1] -> restored (B, 3, S, S), as GFPGANer's ``net(face)[0]``."""
    return net(x)[0]
