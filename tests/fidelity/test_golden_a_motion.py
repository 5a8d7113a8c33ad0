"""Audio -> coefficients: ExpNet, PoseVAE, blinks, z draws, smoothing; golden scenario A and edge cases."""

import random

import numpy as np
import pytest
import torch

from sadtalker.core.constants import EXPRESSION_COLUMNS, NUM_POSE_STYLES, POSE_COLUMNS
from sadtalker.core.errors import CheckpointError
from sadtalker.motion import stage as coeffs
from sadtalker.motion.expnet import ExpNet
from sadtalker.motion.posevae import PoseVAE
from sadtalker.weights.loader import load_audio_models, read_components, sadtalker_file_name

EXP_TOLERANCE = 1e-4  # golden README: ExpNet exp atol 1e-4
POSE_TOLERANCE = 1e-5  # golden README: PoseVAE pose_raw / pose_smooth atol 1e-5


@pytest.fixture(scope="module")
def models(test_checkpoints_dir):
    path = test_checkpoints_dir / sadtalker_file_name(256)
    parts = read_components(str(path), ["audio2exp", "audio2pose"])
    return load_audio_models(parts["audio2exp"], parts["audio2pose"], path.name, torch.device("cpu"))


@pytest.fixture(scope="module")
def golden(golden_a_dir):
    names = ("audio", "expnet", "posevae", "align3dmm")
    return {name: np.load(golden_a_dir / f"{name}.npz") for name in names}


def test_blinks_from_seed_0_match_the_reference_draws(golden):
    blink = coeffs.blink_sequence(75, random.Random(0))
    np.testing.assert_array_equal(blink, golden["expnet"]["blink_ratio"])
    assert list(np.nonzero(blink[:, 0])[0]) == [22, 23, 24, 25, 26, 61, 62, 63, 64, 65]


def test_pose_z_from_seed_0_matches_the_reference_draws(golden):
    z = coeffs.draw_pose_z(3, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(z.numpy(), golden["posevae"]["z"])


def test_expnet_matches_golden_a(models, golden):
    exp_net, _ = models
    exp = coeffs.predict_exp(
        exp_net,
        golden["audio"]["indiv_mels"],
        golden["align3dmm"]["coeff_3dmm"][EXPRESSION_COLUMNS],
        golden["expnet"]["blink_ratio"],
    )
    assert exp.shape == (75, 64)
    assert np.abs(exp - golden["expnet"]["exp"]).max() <= EXP_TOLERANCE


def test_posevae_chunk_inputs_are_whole_chunks_then_the_last_32_frames(models, golden):
    _, pose_vae = models
    emb = coeffs.pose_chunk_inputs(pose_vae, golden["audio"]["indiv_mels"]).numpy()
    assert emb.shape == (3, 32, 512)
    assert np.abs(emb - golden["posevae"]["chunk_audio_emb"]).max() <= 1e-4


def test_posevae_raw_and_smoothed_pose_match_golden_a(models, golden):
    _, pose_vae = models
    pv, ref_pose = golden["posevae"], golden["align3dmm"]["coeff_3dmm"][POSE_COLUMNS]
    motion = coeffs.predict_pose_motion(pose_vae, golden["audio"]["indiv_mels"], ref_pose, 0, torch.from_numpy(pv["z"]))
    assert np.all(motion[0] == 0)
    pose_raw = ref_pose[None] + motion
    assert np.abs(pose_raw - pv["pose_raw"]).max() <= POSE_TOLERANCE
    assert np.abs(coeffs.smooth_pose(pose_raw) - pv["pose_smooth"]).max() <= POSE_TOLERANCE


def test_final_coefficients_match_golden_a(models, golden):
    exp_net, pose_vae = models
    out = coeffs.audio_to_coeffs(
        exp_net,
        pose_vae,
        golden["audio"]["indiv_mels"],
        golden["align3dmm"]["coeff_3dmm"],
        golden["expnet"]["blink_ratio"],
        0,
        torch.Generator(),
        pose_z=torch.from_numpy(golden["posevae"]["z"]),
    )
    assert out.shape == (75, 70) and out.dtype == np.float32
    expected = golden["posevae"]["coeffs"]
    assert np.abs(out[:, EXPRESSION_COLUMNS] - expected[:, EXPRESSION_COLUMNS]).max() <= EXP_TOLERANCE
    assert np.abs(out[:, POSE_COLUMNS] - expected[:, POSE_COLUMNS]).max() <= POSE_TOLERANCE


def test_generator_seeded_like_the_golden_run_reproduces_the_golden_coefficients(models, golden):
    exp_net, pose_vae = models
    args = (
        exp_net,
        pose_vae,
        golden["audio"]["indiv_mels"],
        golden["align3dmm"]["coeff_3dmm"],
        golden["expnet"]["blink_ratio"],
        0,
    )
    out = coeffs.audio_to_coeffs(*args, torch.Generator().manual_seed(0))
    assert np.abs(out - golden["posevae"]["coeffs"]).max() <= EXP_TOLERANCE
    other = coeffs.audio_to_coeffs(*args, torch.Generator().manual_seed(1))
    assert np.abs(other[:, POSE_COLUMNS] - out[:, POSE_COLUMNS]).max() > 1e-3  # z changes the pose
    np.testing.assert_array_equal(other[:, EXPRESSION_COLUMNS], out[:, EXPRESSION_COLUMNS])  # and never the expression


@pytest.mark.parametrize("frames", [1, 2, 3, 12, 33, 34, 65])
def test_any_clip_length_gives_one_row_per_frame_and_keeps_frame_0_pose(models, golden, frames):
    exp_net, pose_vae = models
    mels = np.resize(golden["audio"]["indiv_mels"], (frames, 80, 16)).astype(np.float32)
    coeff = golden["align3dmm"]["coeff_3dmm"]
    out = coeffs.audio_to_coeffs(
        exp_net, pose_vae, mels, coeff, np.zeros((frames, 1), np.float32), 5, torch.Generator().manual_seed(3)
    )
    assert out.shape == (frames, 70) and np.all(np.isfinite(out))
    if frames < 3:  # too short to smooth: frame 0 is exactly the source pose
        np.testing.assert_array_equal(out[0, POSE_COLUMNS], coeff[POSE_COLUMNS])


def test_pose_style_outside_0_to_45_is_refused(models, golden):
    exp_net, pose_vae = models
    mels = golden["audio"]["indiv_mels"][:5]
    with pytest.raises(ValueError, match="pose_style"):
        coeffs.audio_to_coeffs(
            exp_net,
            pose_vae,
            mels,
            golden["align3dmm"]["coeff_3dmm"],
            np.zeros((5, 1), np.float32),
            NUM_POSE_STYLES,
            torch.Generator(),
        )


def test_wrong_number_of_injected_z_draws_is_refused(models, golden):
    _, pose_vae = models
    with pytest.raises(ValueError, match="z draws"):
        coeffs.predict_pose_motion(
            pose_vae, golden["audio"]["indiv_mels"], np.zeros(6, np.float32), 0, torch.zeros(2, 64)
        )


@pytest.mark.parametrize("frames,draws", [(0, 0), (1, 0), (2, 1), (33, 1), (34, 2), (75, 3), (97, 3), (98, 4)])
def test_one_z_draw_per_32_moving_frames_rounded_up(frames, draws):
    assert coeffs.pose_chunk_count(frames) == draws


@pytest.mark.parametrize("frames", [0, 5, 20, 21])
def test_clips_of_at_most_21_frames_get_no_blinks(frames):
    assert not coeffs.blink_sequence(frames, random.Random(0)).any()


def test_blinks_are_whole_five_frame_shapes_before_the_last_frame():
    for seed in range(20):
        blink = coeffs.blink_sequence(300, random.Random(seed))[:, 0]
        starts = [i for i in range(300) if blink[i] == 0.5 and (i == 0 or blink[i - 1] == 0)]
        assert starts, "a 12 s clip always blinks"
        for s in starts:
            assert list(blink[s : s + 5]) == pytest.approx([0.5, 0.9, 1.0, 0.9, 0.5])
        assert blink[-1] == 0


@pytest.mark.parametrize("frames,window", [(13, 13), (12, 11), (5, 5), (4, 3), (3, 3)])
def test_smoothing_window_is_13_or_the_largest_odd_window_that_fits(frames, window):
    from scipy.signal import savgol_filter

    pose = np.random.default_rng(frames).standard_normal((frames, 6)).astype(np.float32)
    expected = savgol_filter(pose, window, 2, axis=0).astype(np.float32)
    np.testing.assert_array_equal(coeffs.smooth_pose(pose), expected)


def test_smoothing_keeps_quadratic_motion_unchanged():
    t = np.arange(40, dtype=np.float64)[:, None]
    pose = (0.01 * t**2 - 0.3 * t + 2.0).repeat(6, axis=1).astype(np.float32)
    assert np.abs(coeffs.smooth_pose(pose) - pose).max() < 1e-4


@pytest.mark.parametrize("frames", [1, 2])
def test_poses_too_short_for_order_2_are_returned_unchanged(frames):
    pose = np.ones((frames, 6), np.float32)
    np.testing.assert_array_equal(coeffs.smooth_pose(pose), pose)


def test_loading_a_component_with_a_missing_key_names_it():
    state = ExpNet().state_dict()
    state.pop("mapping1.bias")
    with pytest.raises(CheckpointError, match="mapping1.bias"):
        load_audio_models(state, PoseVAE().state_dict(), "file.safetensors", torch.device("cpu"))


def test_posevae_holds_exactly_the_files_audio2pose_keys_including_training_only_parts(checkpoint_writer):
    manifest = checkpoint_writer.load_manifest(sadtalker_file_name(256))["tensors"]
    expected = {k[len("audio2pose.") :]: tuple(v["shape"]) for k, v in manifest.items() if k.startswith("audio2pose.")}
    have = {k: tuple(v.shape) for k, v in PoseVAE().state_dict().items()}
    assert have == expected
    assert any(k.startswith("netD_motion.") for k in have) and any(k.startswith("netG.encoder.") for k in have)


def test_expnet_holds_exactly_the_files_audio2exp_keys(checkpoint_writer):
    manifest = checkpoint_writer.load_manifest(sadtalker_file_name(256))["tensors"]
    expected = {k[len("audio2exp.") :]: tuple(v["shape"]) for k, v in manifest.items() if k.startswith("audio2exp.")}
    assert {k: tuple(v.shape) for k, v in ExpNet().state_dict().items()} == expected
