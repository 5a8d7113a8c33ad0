"""The face renderer equals the reference on golden scenario A, stage by stage.

Weights: the generated test checkpoints (the golden recipe), loaded by the production loader.
Inputs: the reference's own stage inputs stored in tests/golden/scenario_a (source PNG, source and
target semantic windows). One call of :func:`render` over the 8 golden frames (batch 2, as the
reference ran) is shared by the tests; forward hooks record every intermediate stage.
Tolerances are the golden README's (its measured thread-count / float64 variation, with margin).
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import pytest
import torch
from PIL import Image

from sadtalker.kernels.renderer import prepare_renderer
from sadtalker.render import stage
from sadtalker.weights.loader import load_mapping, load_renderer

pytestmark = pytest.mark.slow  # real-size renders: `make test-fast` leaves them out


def assert_close(stage_name: str, actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float = 0.0) -> None:
    """Fail with the stage's name, the max abs error and the tolerance."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{stage_name}: shape {actual.shape} != golden {expected.shape}"
    error = np.abs(actual - expected)
    allowed = atol + rtol * np.abs(expected)
    worst = np.unravel_index(np.argmax(error - allowed), error.shape)
    assert np.all(error <= allowed), (
        f"{stage_name}: max abs error {error.max():.3g} exceeds tolerance atol={atol:g} rtol={rtol:g} "
        f"(worst at {tuple(int(i) for i in worst)}: {actual[worst]:.7g} vs golden {expected[worst]:.7g})"
    )


@pytest.fixture(scope="module")
def golden(golden_a_dir) -> Dict[str, np.ndarray]:
    return dict(np.load(golden_a_dir / "render.npz"))


@pytest.fixture(scope="module")
def golden_full(golden_a_dir) -> Dict[str, np.ndarray]:
    return dict(np.load(golden_a_dir / "mapping_full.npz"))


@pytest.fixture(scope="module")
def source_png(golden_a_dir) -> np.ndarray:
    return np.array(Image.open(golden_a_dir / "source_256.png").convert("RGB"))


@pytest.fixture(scope="module")
def renderer_256(test_checkpoints_dir):
    models = load_renderer(str(test_checkpoints_dir), 256, "cpu", torch.float32)
    prepare_renderer(models.generator)  # the golden checks run through the inference paths a worker uses
    return models


@pytest.fixture(scope="module")
def mapping_crop(test_checkpoints_dir):
    return load_mapping(str(test_checkpoints_dir), "crop", "cpu", torch.float32)


@pytest.fixture(scope="module")
def golden_run(renderer_256, mapping_crop, source_png, golden) -> Dict[str, np.ndarray]:
    """render() over the 8 golden windows at batch 2, with every stage recorded by forward hooks."""
    record: Dict[str, List] = {"kp": [], "mapping": [], "motion": [], "image": []}

    def recorder(name: str):
        def hook(module, args, output) -> None:  # must return None, or it would replace the output
            record[name].append((args, output))

        return hook

    gen = renderer_256.generator
    hooks = [
        renderer_256.kp_extractor.register_forward_hook(recorder("kp")),
        mapping_crop.register_forward_hook(recorder("mapping")),
        gen.dense_motion_network.register_forward_hook(recorder("motion")),
        gen.decoder.register_forward_hook(recorder("image")),
    ]
    try:
        batches = list(
            stage.render(
                renderer_256,
                mapping_crop,
                source_png,
                golden["source_semantics"],
                golden["target_semantics"],
                batch_size=2,
            )
        )
    finally:
        for hook in hooks:
            hook.remove()
    out = {"batch_sizes": np.array([len(b) for b in batches]), "frames": np.concatenate(batches)}
    out["kp_canonical"] = record["kp"][0][1][0].numpy()
    source_pose, driving_poses = record["mapping"][0][1], [o for _, o in record["mapping"][1:]]
    for name in ("yaw", "pitch", "roll", "t", "exp"):
        out[f"mapping_source_{name}"] = getattr(source_pose, name)[0].numpy()
        out[f"mapping_driving_{name}"] = torch.cat([getattr(p, name) for p in driving_poses]).numpy()
    motion_args = [args for args, _ in record["motion"]]  # forward(feature, kp_driving, kp_source)
    out["kp_driving"] = torch.cat([args[1] for args in motion_args]).numpy()
    out["kp_source"] = motion_args[0][2][0].numpy()
    out["occlusion_map"] = torch.cat([o.occlusion for _, o in record["motion"]]).numpy()
    out["deformation_frame0"] = record["motion"][0][1].deformation[0].numpy()
    out["generator_output"] = torch.cat([o for _, o in record["image"]]).numpy()
    return out


def test_source_tensor_is_skimage_float32_of_the_png(source_png, golden):
    tensor = stage.image_to_tensor(source_png, torch.device("cpu"), torch.float32)
    assert np.array_equal(tensor[0].numpy(), golden["source_image"])


def test_render_yields_the_8_frames_in_batches_of_2(golden_run):
    assert golden_run["batch_sizes"].tolist() == [2, 2, 2, 2]
    assert golden_run["frames"].shape == (8, 256, 256, 3) and golden_run["frames"].dtype == np.uint8


def test_canonical_keypoints_match_reference(golden_run, golden):
    assert_close("kp_canonical", golden_run["kp_canonical"], golden["kp_canonical"], atol=1e-5)


@pytest.mark.parametrize("who", ["source", "driving"])
def test_mapping_net_00229_outputs_match_reference(golden_run, golden, who):
    for name, atol in (("yaw", 1e-4), ("pitch", 1e-4), ("roll", 1e-4), ("t", 1e-5), ("exp", 1e-5)):
        key = f"mapping_{who}_{name}"
        assert_close(f"MappingNet 00229 {who} {name}", golden_run[key], golden[key], atol=atol)


def test_mapping_net_00109_full_mode_outputs_match_reference(test_checkpoints_dir, golden_full):
    mapping = load_mapping(str(test_checkpoints_dir), "full", "cpu", torch.float32)
    with torch.inference_mode():
        source = mapping(torch.from_numpy(golden_full["source_semantics"])[None])
        driving = mapping(torch.from_numpy(golden_full["target_semantics"]))
    for who, pose in (("source", source), ("driving", driving)):
        for name in ("yaw", "pitch", "roll"):  # logits near +-110: relative tolerance
            actual = getattr(pose, name).numpy().reshape(golden_full[f"{who}_{name}"].shape)
            assert_close(f"MappingNet 00109 {who} {name}", actual, golden_full[f"{who}_{name}"], atol=1e-3, rtol=1e-5)
        for name in ("t", "exp"):
            actual = getattr(pose, name).numpy().reshape(golden_full[f"{who}_{name}"].shape)
            assert_close(f"MappingNet 00109 {who} {name}", actual, golden_full[f"{who}_{name}"], atol=1e-5)


def test_source_and_driving_keypoints_match_reference(golden_run, golden):
    assert_close("kp_source", golden_run["kp_source"], golden["kp_source"], atol=1e-5)
    assert_close("kp_driving", golden_run["kp_driving"], golden["kp_driving"], atol=1e-5)


def test_dense_motion_matches_reference(golden_run, golden):
    assert_close("dense motion occlusion_map", golden_run["occlusion_map"], golden["occlusion_map"], atol=1e-4)
    assert_close(
        "dense motion deformation (frame 0)", golden_run["deformation_frame0"], golden["deformation_frame0"], atol=1e-4
    )


def test_generator_output_matches_reference_for_all_8_frames(golden_run, golden):
    assert_close("generator output", golden_run["generator_output"], golden["generator_output"], atol=1e-4)
    mean_error = np.abs(golden_run["generator_output"] - golden["generator_output"]).mean()
    assert mean_error < 1e-5, f"generator output: mean abs error {mean_error:.3g} >= 1e-5"


def test_uint8_frames_within_one_level_of_reference(golden_run, golden, golden_a_dir):
    frames = golden_run["frames"].astype(np.int16)
    for i in range(8):  # the stored PNGs are the reference's frames too
        png = np.array(Image.open(golden_a_dir / f"gen_frame_{i:02d}.png").convert("RGB"))
        assert np.array_equal(png, golden["final_frames"][i]), f"golden PNG {i} differs from final_frames"
    diff = np.abs(frames - golden["final_frames"].astype(np.int16))
    assert diff.max() <= 1, f"uint8 frames: max difference {diff.max()} levels > 1"
    assert (diff > 0).mean() < 0.005, f"uint8 frames: {(diff > 0).mean():.3%} of values differ (allowed < 0.5%)"
