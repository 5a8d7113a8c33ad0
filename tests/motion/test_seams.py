"""Pose carry-over at chunk seams, on synthetic PoseVAE-like curves."""

import numpy as np
import pytest

from sadtalker.core.constants import EXPRESSION_COLUMNS, MODEL_FPS
from sadtalker.motion.seams import MIN_DECAY_FRAMES, POSE, SeamJumps, carry_pose, decay_frames, seam_jumps

REF_POSE = np.array([0.05, -0.1, 0.02, 0.3, -0.2, 10.0])  # the source image's pose (angles rad, translation)
AMPLITUDE = np.array([0.12, 0.15, 0.06, 0.4, 0.3, 0.5])  # how far each coordinate wanders in a chunk


def chunk_coeffs(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(T, 70): random expression, pose = source pose + smooth motion that is 0 at the chunk's first frame."""
    t = np.arange(n_frames)[:, None] / MODEL_FPS
    motion = np.zeros((n_frames, 6))
    for _ in range(3):  # three slow sinusoids per coordinate, 0.1..0.5 Hz, random phase
        freq = rng.uniform(0.1, 0.5, 6)
        phase = rng.uniform(0, 2 * np.pi, 6)
        motion += AMPLITUDE / 3 * (np.sin(2 * np.pi * freq * t + phase) - np.sin(phase))
    coeffs = np.empty((n_frames, 70))
    coeffs[:, EXPRESSION_COLUMNS] = rng.standard_normal((n_frames, 64))
    coeffs[:, POSE] = REF_POSE + motion
    return coeffs


@pytest.fixture
def chunks() -> list:
    rng = np.random.default_rng(7)
    return [chunk_coeffs(n, rng) for n in (1125, 1050, 325)]  # 45 s, 42 s, 13 s


def carry_chunks(chunks: list) -> list:
    """carry_pose along consecutive chunks, as the coefficient stage applies it (the first chunk unchanged)."""
    out: list = []
    for coeffs in chunks:
        out.append(np.array(coeffs, copy=True) if not out else carry_pose(out[-1], coeffs))
    return out


def seams_of(chunks: list) -> list:
    return list(np.cumsum([len(c) for c in chunks])[:-1])


def test_raw_chunks_jump_far_more_at_seams_than_inside(chunks):
    jumps = seam_jumps(np.concatenate(chunks), seams_of(chunks))
    assert jumps.worst_ratio > 5.0


def test_carried_pose_jumps_at_seams_no_more_than_inside_chunks(chunks):
    joined = np.concatenate(carry_chunks(chunks))
    jumps = seam_jumps(joined, seams_of(chunks))
    assert jumps.worst_ratio <= 1.0 + 1e-9


def test_carried_pose_never_moves_much_faster_than_the_raw_chunks(chunks):
    raw_inside = seam_jumps(np.concatenate(chunks), seams_of(chunks)).inside
    steps = np.abs(np.diff(np.concatenate(carry_chunks(chunks))[:, POSE], axis=0))
    assert np.all(steps.max(axis=0) <= 1.5 * raw_inside)


def test_carry_returns_to_the_chunk_own_curve_and_keeps_expression(chunks):
    prev, nxt = chunks[0], chunks[1]
    out = carry_pose(prev, nxt)
    np.testing.assert_array_equal(out[:, EXPRESSION_COLUMNS], nxt[:, EXPRESSION_COLUMNS])
    np.testing.assert_array_equal(out[-100:], nxt[-100:])
    assert not np.allclose(out[0, POSE], nxt[0, POSE])
    np.testing.assert_allclose(out[0, POSE], 2 * prev[-1, POSE] - prev[-2, POSE])


def test_carry_does_not_modify_its_inputs(chunks):
    before = [c.copy() for c in chunks]
    carry_chunks(chunks)
    for a, b in zip(before, chunks, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_chunk_that_already_continues_is_left_unchanged():
    rng = np.random.default_rng(1)
    whole = chunk_coeffs(200, rng)
    out = carry_pose(whole[:100], whole[100:])
    np.testing.assert_allclose(out, whole[100:], atol=0.02 * AMPLITUDE.max())
    linear = np.zeros((20, 70))
    linear[:, POSE] = np.arange(20)[:, None] * 0.01
    np.testing.assert_allclose(carry_pose(linear[:10], linear[10:]), linear[10:], atol=1e-12)


def test_single_frame_previous_chunk_means_start_from_its_pose():
    rng = np.random.default_rng(2)
    prev = chunk_coeffs(1, rng)
    prev[0, POSE] += 0.3
    out = carry_pose(prev, chunk_coeffs(50, rng))
    np.testing.assert_allclose(out[0, POSE], prev[0, POSE])


def test_crop_columns_of_full_mode_coefficients_are_kept():
    rng = np.random.default_rng(3)
    prev, nxt = (np.concatenate([chunk_coeffs(n, rng), np.full((n, 3), 7.0)], axis=1) for n in (40, 40))
    out = carry_pose(prev, nxt)
    assert out.shape == (40, 73)
    np.testing.assert_array_equal(out[:, 70:], nxt[:, 70:])


def test_decay_is_long_enough_for_a_large_offset_and_short_for_none():
    step = np.full(6, 0.01)
    big = decay_frames(np.array([0.5, 0, 0, 0, 0, 0]), step, 10_000)
    assert big >= np.ceil(0.5 * np.pi / 2 / (0.5 * 0.01))
    assert decay_frames(np.zeros(6), np.zeros(6), 1000) == MIN_DECAY_FRAMES
    assert decay_frames(np.ones(6), step, 30) == 30  # never longer than the chunk


def test_seam_jumps_measures_the_step_across_each_seam():
    pose = np.zeros((10, 6))
    pose[5:, 0] = 1.0  # jump of 1 between frames 4 and 5
    pose[:, 1] = np.arange(10) * 0.1
    jumps = seam_jumps(pose, [5])
    np.testing.assert_allclose(jumps.seam, [1, 0.1, 0, 0, 0, 0])
    np.testing.assert_allclose(jumps.inside, [0, 0.1, 0, 0, 0, 0])
    assert jumps.worst_ratio == np.inf
    assert seam_jumps(pose, [3]).worst_ratio == pytest.approx(1.0)  # the 1.0 step is now inside
    assert SeamJumps(np.array([0.5]), np.array([1.0])).worst_ratio == 0.5


def test_seam_outside_the_video_is_rejected():
    with pytest.raises(ValueError, match="seam"):
        seam_jumps(np.zeros((10, 70)), [10])
