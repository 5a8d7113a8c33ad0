"""Camera angles (input_yaw / input_pitch / input_roll) against golden scenario C, and the divide-by-zero cases.

Stages checked: the reference's gen_camera_pose per-frame degrees (exact), then MappingNet + the keypoint transform
with the degrees overriding the predicted angles for all 75 frames (kp_driving_all, atol 1e-5), and, marked slow,
the generator for frames 0-1 (atol 1e-4, mean < 1e-5) and their uint8 frames (1 level on < 0.5 % of values).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sadtalker.render import stage
from sadtalker.render.camera import camera_degrees, camera_sequence
from sadtalker.render.keypoints import bins_to_degrees, transform_keypoints
from sadtalker.weights.loader import load_mapping
from tests.support.goldencheck import assert_close


@pytest.fixture(scope="module")
def camera(golden_c_dir):
    return dict(np.load(golden_c_dir / "camera.npz"))


@pytest.fixture(scope="module")
def render_c(golden_c_dir):
    return dict(np.load(golden_c_dir / "render.npz"))


@pytest.mark.parametrize("angle", ["yaw", "pitch", "roll"])
def test_gen_camera_pose_degrees_are_exact(camera, angle):
    frames = int(camera["T"])
    degrees = camera_degrees(camera[f"{angle}_list"].tolist(), frames)
    reference = camera[f"{angle}_c_seq"].reshape(-1)[:frames].astype(np.float64)
    assert_close(f"gen_camera_pose {angle} (float64)", degrees, reference, atol=0.0)
    assert_close(
        f"gen_camera_pose {angle} (float32 tensor)", degrees.astype(np.float32), camera[f"{angle}_per_frame"], atol=0.0
    )


def test_reference_quirks_last_keyframe_is_never_reached(camera):
    yaw = camera_degrees([0, 15], 75)
    assert yaw[-1] == yaw[-2] == pytest.approx(14.7972973)  # 74 arange values, padded with the last
    pitch = camera_degrees([0, -10, 5], 75)
    assert pitch[30] == -10 and pitch[-1] == pytest.approx(4.8648649)
    assert camera_degrees([0, 15], 2).tolist() == [0.0, 0.0]  # as the reference with T = 2


def test_equal_keyframes_hold_the_angle_instead_of_dividing_by_zero():
    assert camera_degrees([7, 7], 5).tolist() == [7.0] * 5
    held = camera_degrees([0, 0, 10], 10)
    assert held[:4].tolist() == [0.0] * 4  # the hold segment: (T - 1) // 2 frames at 0
    assert np.all(np.diff(held[4:]) >= 0) and held.max() <= 10
    many = camera_degrees([5, 5, 5, -5, -5], 50)
    assert many[0] == 5 and np.all(np.isfinite(many)) and many.min() >= -5
    assert camera_degrees([0, 15, 3], 1).tolist() == [0.0]  # T = 1: the first keyframe (the reference divides by 0)


def test_camera_sequence_keeps_unset_angles_predicted():
    seq = camera_sequence([10.0], None, [0.0, 5.0], 4)
    assert seq.shape == (4, 3) and seq.dtype == np.float32
    assert np.all(seq[:, 0] == 10) and np.all(np.isnan(seq[:, 1]))
    assert camera_sequence(None, None, None, 4) is None


@pytest.fixture(scope="module")
def mapping_crop(test_checkpoints_dir):
    return load_mapping(str(test_checkpoints_dir), "crop", "cpu", torch.float32)


def test_driving_keypoints_with_camera_override_match_reference_all_frames(mapping_crop, camera, render_c):
    frames = int(camera["T"])
    windows = stage.semantic_windows(render_c["target_coeffs"])
    cam = camera_sequence(
        camera["yaw_list"].tolist(), camera["pitch_list"].tolist(), camera["roll_list"].tolist(), frames
    )
    kp_canonical = torch.from_numpy(camera["kp_canonical"])[None].expand(frames, -1, -1)
    with torch.inference_mode():
        pose = mapping_crop(torch.from_numpy(windows))
        kp = transform_keypoints(kp_canonical, pose, torch.from_numpy(cam)).numpy()
        nocam = transform_keypoints(kp_canonical, pose).numpy()
        degrees = torch.stack([bins_to_degrees(pose.yaw), bins_to_degrees(pose.pitch), bins_to_degrees(pose.roll)], 1)
    assert_close("mapping degrees (all 75 frames)", degrees.numpy(), camera["mapping_degree_all"], atol=1e-3)
    assert_close("kp_driving without camera (all 75 frames)", nocam, camera["kp_driving_all_nocam"], atol=1e-5)
    assert_close("kp_driving with camera override (all 75 frames)", kp, camera["kp_driving_all"], atol=1e-5)


def test_camera_override_inputs_match_the_reference_yaw_in(render_c, camera):
    cam = camera_sequence(
        camera["yaw_list"].tolist(), camera["pitch_list"].tolist(), camera["roll_list"].tolist(), int(camera["T"])
    )
    for i, name in enumerate(("yaw", "pitch", "roll")):
        assert_close(f"{name}_in frames 0-3", cam[:4, i], render_c[f"{name}_in"], atol=0.0)
        assert_close(
            f"{name}_in frames 50, 74", cam[render_c["late_frame_index"], i], render_c[f"late_{name}_in"], atol=0.0
        )


@pytest.mark.slow
def test_rendered_frames_0_1_with_camera_match_reference(test_checkpoints_dir, golden_c_dir, render_c, camera):
    from sadtalker.kernels.renderer import prepare_renderer
    from sadtalker.weights.loader import load_renderer

    models = load_renderer(str(test_checkpoints_dir), 256, "cpu", torch.float32)
    prepare_renderer(models.generator)
    mapping = load_mapping(str(test_checkpoints_dir), "crop", "cpu", torch.float32)
    source = np.array(Image.open(golden_c_dir / "source_256.png").convert("RGB"))
    cam = camera_sequence(
        camera["yaw_list"].tolist(), camera["pitch_list"].tolist(), camera["roll_list"].tolist(), int(camera["T"])
    )
    outputs = []
    hook = models.generator.decoder.register_forward_hook(lambda m, a, o: outputs.append(o.detach().clone()))
    try:
        frames = np.concatenate(
            list(
                stage.render(
                    models,
                    mapping,
                    source,
                    render_c["source_semantics"],
                    render_c["target_semantics"][:2],
                    2,
                    camera=cam[:2],
                )
            )
        )
    finally:
        hook.remove()
    output = torch.cat(outputs).numpy()
    assert_close("generator output frames 0-1 (camera)", output, render_c["generator_output_01"], atol=1e-4)
    mean = np.abs(output - render_c["generator_output_01"]).mean()
    assert mean < 1e-5, f"generator output frames 0-1: mean abs error {mean:.3g} >= 1e-5"
    for i in range(2):
        png = np.array(Image.open(golden_c_dir / f"gen_frame_{i:02d}.png").convert("RGB")).astype(np.int16)
        diff = np.abs(frames[i].astype(np.int16) - png)
        assert diff.max() <= 1, f"uint8 frame {i}: max difference {diff.max()} levels > 1"
        assert (diff > 0).mean() < 0.005, f"uint8 frame {i}: {(diff > 0).mean():.3%} of values differ"
