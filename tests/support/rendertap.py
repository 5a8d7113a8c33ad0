"""A job's rendered frames as the renderer made them, before the enhancer, the paste and the encoder."""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple, Union

import numpy as np
import pytest

from sadtalker import pipeline
from sadtalker.bundle import ModelBundle
from sadtalker.core.contract import NO_HOOKS, Animation, AnimationHooks, AnimationRequest
from sadtalker.worker.settings import Settings


def render_job(
    bundle: ModelBundle,
    settings: Settings,
    request: AnimationRequest,
    workdir: Union[str, Path],
    hooks: AnimationHooks = NO_HOOKS,
) -> Tuple[Animation, np.ndarray]:
    """Animate ``request``; the result and every frame the renderer yielded, in order, (frames, S, S, 3) uint8."""
    batches: List[np.ndarray] = []
    real_render = pipeline.render

    def recording_render(*args, **kwargs):
        for batch in real_render(*args, **kwargs):
            batches.append(batch)
            yield batch

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "render", recording_render)
        result = pipeline.animate(bundle, settings, request, str(workdir), hooks)
    return result, np.concatenate(batches)
