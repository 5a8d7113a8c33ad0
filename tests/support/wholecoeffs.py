"""The coefficients as computed before they came in pieces: each chunk from ``audio_to_coeffs`` over all its
frames at once, then the pose carried across the seam. The reference the piecewise path is checked against."""

from __future__ import annotations

import random

import numpy as np
import torch

from sadtalker.core.jobtools import chunk_seed
from sadtalker.motion import stage as motion
from sadtalker.motion.seams import carry_pose


def whole_sequence(exp_net, pose_vae, mels, source, chunks, seed, style, ref_exp=None):
    """Today's (T, 70): every chunk computed whole, then carried."""
    parts = []
    for chunk in chunks:
        cseed = chunk_seed(seed, chunk.index)
        blink = motion.blink_sequence(chunk.n_frames, random.Random(cseed))
        cref = None if ref_exp is None else ref_exp[chunk.start_frame : chunk.end_frame]
        coeffs = motion.audio_to_coeffs(
            exp_net,
            pose_vae,
            mels[chunk.start_frame : chunk.end_frame],
            source,
            blink,
            style,
            torch.Generator().manual_seed(cseed),
            ref_exp=cref,
        )
        parts.append(coeffs if not parts else carry_pose(parts[-1], coeffs))
    return np.concatenate(parts)
