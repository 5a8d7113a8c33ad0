"""FAST_PATHS: the worker loaded with and without the inference paths of sadtalker/kernels gives the same frames.

Both bundles come from ``load_models`` on the generated test checkpoints (real-size networks, the golden recipe):
the default one and ``load_models(..., fast_paths=False)``, which runs the network classes as written. Each renders
golden scenario A's first 2 windows (one batch of 2, as the reference ran; the plain CPU renderer is slow) and
restores the first frame with GFPGAN.
Tolerances are the golden README's: generator output within 1e-4 of the reference, uint8 frames within 1 level on
under 0.5 % of values.
"""

from __future__ import annotations

import logging
from typing import Dict, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from sadtalker.bundle import ModelBundle, load_models
from sadtalker.enhance.gfpgan import gfpgan_forward, gfpgan_plain_forward
from sadtalker.render.stage import render
from sadtalker.worker.settings import Settings
from tests.support.goldencheck import assert_close

pytestmark = pytest.mark.slow  # two real-size bundles, 4 frames rendered and 2 faces restored on the CPU

log = logging.getLogger(__name__)
FRAMES = 2  # one batch of 2: the fast path is checked on all 8 golden frames by test_golden_a_render.py

GENERATOR_TOLERANCE = 1e-4  # golden README: generator output
FRAME_LEVELS, FRAME_SHARE = 1, 0.005  # golden README: uint8 frames, 1 level on under 0.5 % of values


@pytest.fixture(scope="module")
def bundles(test_checkpoints_dir) -> Dict[str, ModelBundle]:
    settings = Settings.from_env(
        {
            "CHECKPOINTS_DIR": str(test_checkpoints_dir),
            "DEVICE": "cpu",
            "FACE_DETECTOR": "dlib",
            "REUSE_FREED_MEMORY": "false",
        }
    )
    return {"fast": load_models(settings), "plain": load_models(settings, fast_paths=False)}


@pytest.fixture(scope="module")
def golden(golden_a_dir) -> Dict[str, np.ndarray]:
    return dict(np.load(golden_a_dir / "render.npz"))


def _rendered(bundle: ModelBundle, golden: Dict[str, np.ndarray], source: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The first golden frames (uint8) and the generator's float output, rendered by ``bundle``'s 256 renderer."""
    models = bundle.for_size(256).renderer
    outputs = []
    hook = models.generator.decoder.register_forward_hook(lambda module, args, out: outputs.append(out.clone()))
    try:
        batches = list(
            render(
                models,
                bundle.mapping("crop"),
                source,
                golden["source_semantics"],
                golden["target_semantics"][:FRAMES],
                batch_size=2,
            )
        )
    finally:
        hook.remove()
    return np.concatenate(batches), torch.cat(outputs).numpy()


@pytest.fixture(scope="module")
def renders(bundles, golden, golden_a_dir) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    source = np.array(Image.open(golden_a_dir / "source_256.png").convert("RGB"))
    return {name: _rendered(bundle, golden, source) for name, bundle in bundles.items()}


def _replaced(net: torch.nn.Module) -> int:
    """Modules of ``net`` with an instance attribute shadowing a method of their class (a replaced method)."""
    return sum(
        any(name in module.__dict__ for name in ("forward", "heads", "motion", "decode")) for module in net.modules()
    )


def test_the_plain_bundle_runs_the_network_classes_as_written(bundles):
    fast, plain = bundles["fast"], bundles["plain"]
    assert _replaced(fast.for_size(256).renderer.generator) > 10 and _replaced(fast.enhancer.net) > 10
    assert _replaced(plain.for_size(256).renderer.generator) == 0 and _replaced(plain.enhancer.net) == 0
    assert not any(hasattr(module, "winograd") for module in plain.enhancer.net.modules())
    assert (fast.enhancer.forward, plain.enhancer.forward) == (gfpgan_forward, gfpgan_plain_forward)


@pytest.mark.parametrize("name", ["fast", "plain"])
def test_each_bundle_renders_golden_a_within_the_golden_tolerance(renders, golden, name):
    assert_close(
        f"generator output ({name} paths)",
        renders[name][1],
        golden["generator_output"][:FRAMES],
        atol=GENERATOR_TOLERANCE,
    )


def test_fast_and_plain_frames_agree_within_the_golden_tolerance(renders):
    (fast, fast_output), (plain, plain_output) = renders["fast"], renders["plain"]
    assert_close("generator output, plain vs fast paths", plain_output, fast_output, atol=GENERATOR_TOLERANCE)
    assert_close("uint8 frames, plain vs fast paths", plain, fast, atol=FRAME_LEVELS)
    differing = float(np.mean(plain != fast))
    log.info("frames, plain vs fast paths: %.4f %% of the uint8 values differ", 100 * differing)
    assert differing < FRAME_SHARE, f"{differing:.3%} of the frame values differ"


def test_fast_and_plain_enhancers_restore_the_same_faces(bundles, renders):
    frames = renders["fast"][0][:1]
    fast, plain = (bundles[name].enhancer.restore(frames) for name in ("fast", "plain"))
    assert_close("GFPGAN uint8 faces, plain vs fast paths", plain, fast, atol=FRAME_LEVELS)
    differing = float(np.mean(plain != fast))
    log.info("GFPGAN faces, plain vs fast paths: %.4f %% of the uint8 values differ", 100 * differing)
    assert differing < FRAME_SHARE, f"{differing:.3%} of the restored values differ"
