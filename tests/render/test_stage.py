"""Renderer stage: semantic windows, target coefficients, and render() plumbing (small random networks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sadtalker.core.constants import CROP_COLUMNS, EXPRESSION_COLUMNS, POSE_COLUMNS
from sadtalker.core.timeline import Timeline
from sadtalker.render import stage
from sadtalker.render.dims import SMALL, SMALL_IMAGE_SIZE, SMALL_MAPPING
from sadtalker.render.models import build_mapping, build_renderer


@pytest.fixture(scope="module")
def small_models():
    return build_renderer(SMALL, seed=0), build_mapping(SMALL_MAPPING["crop"], seed=1)


@pytest.fixture(scope="module")
def small_inputs():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SMALL_IMAGE_SIZE, SMALL_IMAGE_SIZE, 3), dtype=np.uint8)
    coeffs = rng.normal(0, 0.5, (7, 70)).astype(np.float32)
    source = rng.normal(0, 0.5, 73).astype(np.float32)
    return image, stage.source_semantics(source, "crop"), stage.target_semantics(coeffs, source)


def render_all(models, image, source_sem, windows, batch_size):
    (renderer, mapping) = models
    return list(stage.render(renderer, mapping, image, source_sem, windows, batch_size))


# ---- windows and target coefficients ------------------------------------------------------------


def test_semantic_windows_centre_on_each_frame_and_clamp_at_the_ends():
    coeffs = np.arange(5, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)  # frame i holds value i
    windows = stage.semantic_windows(coeffs, radius=3)
    assert windows.shape == (5, 2, 7) and windows.dtype == np.float32
    assert windows[2, 0].tolist() == [0, 0, 1, 2, 3, 4, 4]
    assert windows[0, 1].tolist() == [0, 0, 0, 0, 1, 2, 3]
    assert windows[4, 0].tolist() == [1, 2, 3, 4, 4, 4, 4]


def test_semantic_windows_default_radius_gives_27_frames():
    assert stage.semantic_windows(np.zeros((3, 70), np.float32)).shape == (3, 70, 27)


def test_semantic_windows_reject_empty_input():
    with pytest.raises(ValueError):
        stage.semantic_windows(np.zeros((0, 70), np.float32))


def _coefficient_rows(rows: int) -> np.ndarray:
    """(rows, 70) smooth but irregular float32 coefficients (a float32 sum that rounds, not a staircase)."""
    t = np.arange(rows, dtype=np.float64)[:, None]
    return (np.sin(0.37 * t + np.arange(70)) * 0.3 + 0.01 * t).astype(np.float32)


@pytest.mark.parametrize("samples", [16000 * 3, 16000 * 3 + 639])
def test_resampled_windows_at_25_fps_are_the_native_windows(samples):
    timeline = Timeline.of_audio(samples)
    coeffs = _coefficient_rows(timeline.model_frames)
    native = stage.window_range(coeffs, timeline.model_frames, 0, timeline.frames)
    assert np.array_equal(stage.resampled_windows(coeffs, timeline, 0, timeline.frames), native)


@pytest.mark.parametrize(("fps", "step", "rows"), [(50, 2, 1), (30, 6, 5), (60, 12, 5), (20, 4, 5)])
def test_frames_at_instants_shared_with_25_fps_get_the_25_fps_windows_bit_for_bit(fps, step, rows):
    samples = 16000 * 3 + 500
    native, other = Timeline.of_audio(samples), Timeline.of_audio(samples, fps)
    coeffs = _coefficient_rows(native.model_frames)
    windows_25 = stage.window_range(coeffs, native.model_frames, 0, native.frames)
    windows = stage.resampled_windows(coeffs, other, 0, other.frames)
    assert windows.shape == (other.frames, 70, 27) and windows.dtype == np.float32
    shared = np.arange(0, other.frames, step)
    shared = shared[shared // step * rows < native.frames]  # a last instant may fall past the 25 fps video's end
    assert len(shared) >= other.frames // step - 1
    assert np.array_equal(windows[shared], windows_25[shared // step * rows])
    before_end = np.arange(other.frames)[np.arange(other.frames) * 25 < (native.frames - 1) * fps]
    between = np.setdiff1d(before_end, shared)  # after the last row's instant every frame holds that row
    assert not np.isin(windows[between, 0, 13], windows_25[:, 0, 13]).any()  # the others are new instants


def test_a_frame_between_two_rows_gets_their_linear_blend_and_positions_clamp_at_the_ends():
    timeline = Timeline.of_audio(16000 * 2, 30)  # 50 rows, 60 frames; frame j is row j * 5 / 6
    coeffs = _coefficient_rows(timeline.model_frames)
    windows = stage.resampled_windows(coeffs, timeline, 0, timeline.frames, radius=3)
    expected = coeffs[0] + np.float32(5 / 6) * (coeffs[1] - coeffs[0])  # frame 1: row 0 + 5/6
    np.testing.assert_allclose(windows[1, :, 3], expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(windows[1, :, 0], coeffs[0])  # rows -3 + 5/6 ... clamp to row 0
    # the last frame (59) is row 49 + 1/6, past the last row's instant: every later position holds row 49
    np.testing.assert_array_equal(windows[59, :, 3:].transpose(1, 0), np.repeat(coeffs[49:], 4, axis=0))


def test_resampled_windows_refuse_rows_that_do_not_exist_yet():
    timeline = Timeline.of_audio(16000 * 2, 30)
    with pytest.raises(ValueError, match="more rows"):
        stage.resampled_windows(_coefficient_rows(6), timeline, 0, 5, radius=3)  # frame 4: rows 3..7


def test_expression_scale_multiplies_only_the_64_expression_columns():
    coeffs = np.ones((4, 70), np.float32)
    target = stage.target_coefficients(coeffs, np.zeros(73, np.float32), expression_scale=2.5)
    assert np.all(target[:, EXPRESSION_COLUMNS] == 2.5) and np.all(target[:, POSE_COLUMNS] == 1.0)
    assert np.all(coeffs == 1.0), "the caller's array must not change"


def test_still_mode_freezes_pose_at_the_source_pose():
    coeffs = np.ones((4, 70), np.float32)
    source = np.arange(73, dtype=np.float32)
    target = stage.target_coefficients(coeffs, source, still_mode=True)
    assert np.all(target[:, EXPRESSION_COLUMNS] == 1.0)
    assert np.array_equal(target[:, POSE_COLUMNS], np.tile(source[POSE_COLUMNS], (4, 1)))


def test_full_mode_appends_the_source_crop_parameters_and_still_freezes_them_too():
    coeffs = np.ones((3, 70), np.float32)
    source = np.arange(73, dtype=np.float32)
    target = stage.target_coefficients(coeffs, source, preprocess="full")
    assert target.shape == (3, 73) and np.array_equal(target[:, CROP_COLUMNS], np.tile(source[CROP_COLUMNS], (3, 1)))
    still = stage.target_coefficients(coeffs, source, still_mode=True, preprocess="extfull")
    pose_and_crop = slice(POSE_COLUMNS.start, CROP_COLUMNS.stop)
    assert np.array_equal(still[:, pose_and_crop], np.tile(source[pose_and_crop], (3, 1)))


def test_source_semantics_repeat_70_or_73_columns():
    source = np.arange(73, dtype=np.float32)
    crop, full = stage.source_semantics(source, "crop"), stage.source_semantics(source, "full")
    assert crop.shape == (70, 27) and full.shape == (73, 27)
    assert np.array_equal(full[:, 5], source)


@pytest.mark.parametrize("preprocess, npz", [("crop", "render.npz"), ("full", "mapping_full.npz")])
def test_windows_equal_the_reference_windows_of_golden_a(golden_a_dir, preprocess, npz):
    coeffs = np.load(golden_a_dir / "posevae.npz")["coeffs"]  # (75, 70), the reference's .mat
    source = np.load(golden_a_dir / "align3dmm.npz")["coeff_3dmm"]  # (73,)
    golden = np.load(golden_a_dir / npz)
    windows = stage.target_semantics(coeffs, source, 1.0, False, preprocess)
    assert np.array_equal(windows[:8], golden["target_semantics"])
    assert np.array_equal(stage.source_semantics(source, preprocess), golden["source_semantics"])


# ---- uint8 conversion ---------------------------------------------------------------------------


def test_frames_to_uint8_is_rint_of_x_times_255():
    values = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    values[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.5])
    expected = np.rint(values.numpy() * np.float32(255)).astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.array_equal(stage.frames_to_uint8(values), expected)


# ---- render -------------------------------------------------------------------------------------


def test_render_yields_uint8_batches_in_order_with_a_short_last_batch(small_models, small_inputs):
    image, source_sem, windows = small_inputs
    batches = render_all(small_models, image, source_sem, windows, batch_size=3)
    assert [b.shape for b in batches] == [(3, 32, 32, 3), (3, 32, 32, 3), (1, 32, 32, 3)]
    assert all(b.dtype == np.uint8 for b in batches)


@pytest.mark.parametrize("batch_size", [1, 2, 7, 10])
def test_batch_size_changes_frames_only_by_float_rounding(small_models, small_inputs, batch_size):
    # Frames are computed independently, but BLAS/oneDNN pick a different blocking per batch size, so the
    # float output moves by ~1e-6 and a value sitting at a rounding boundary can flip by one level
    # (the reference behaves the same). Anything that mixed frames would change far more than this.
    image, source_sem, windows = small_inputs
    reference = np.concatenate(render_all(small_models, image, source_sem, windows, batch_size=3))
    frames = np.concatenate(render_all(small_models, image, source_sem, windows, batch_size=batch_size))
    diff = np.abs(frames.astype(np.int16) - reference.astype(np.int16))
    assert diff.max() <= 1, f"batch {batch_size} vs 3: max difference {diff.max()} levels"
    assert (diff > 0).mean() < 0.005, f"batch {batch_size} vs 3: {(diff > 0).mean():.3%} of values differ"


def test_batch_size_does_not_change_the_generator_output_beyond_1e_5(small_models, small_inputs):
    renderer, mapping = small_models
    image, source_sem, windows = small_inputs
    outputs = {}
    for batch_size in (1, 7):
        record = []
        hook = renderer.generator.decoder.register_forward_hook(lambda m, a, o, record=record: record.append(o))
        try:
            list(stage.render(renderer, mapping, image, source_sem, windows, batch_size))
        finally:
            hook.remove()
        outputs[batch_size] = torch.cat(record).numpy()
    assert np.abs(outputs[1] - outputs[7]).max() < 1e-5


def test_each_frame_depends_only_on_its_own_window(small_models, small_inputs):
    image, source_sem, windows = small_inputs
    forward = np.concatenate(render_all(small_models, image, source_sem, windows, batch_size=2))
    backward = np.concatenate(render_all(small_models, image, source_sem, windows[::-1].copy(), batch_size=2))
    # equal up to float rounding: a frame's batch neighbours change only BLAS/oneDNN's blocking, never its value
    difference = np.abs(forward.astype(int) - backward[::-1].astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.005, (difference.max(), (difference > 0).mean())
    assert not np.array_equal(forward[0], forward[-1]), "different windows should give different frames"


def test_render_runs_in_the_models_dtype(small_inputs):
    image, source_sem, windows = small_inputs
    models = (build_renderer(SMALL, dtype=torch.float64), build_mapping(SMALL_MAPPING["crop"], dtype=torch.float64))
    frames = np.concatenate(render_all(models, image, source_sem, windows, batch_size=4))
    assert frames.shape == (7, 32, 32, 3) and frames.dtype == np.uint8


def test_render_rejects_batch_size_zero(small_models, small_inputs):
    with pytest.raises(ValueError):
        next(iter(stage.render(*small_models, *small_inputs, batch_size=0)))


def test_small_renderer_gives_a_non_constant_image(small_models, small_inputs):
    image, source_sem, windows = small_inputs
    frames = np.concatenate(render_all(small_models, image, source_sem, windows, batch_size=7))
    assert frames.std() > 1.0


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_render_under_autocast_yields_uint8_frames_close_to_fp32(precision):
    models, mapping = build_renderer(SMALL), build_mapping(SMALL_MAPPING["crop"])
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SMALL_IMAGE_SIZE, SMALL_IMAGE_SIZE, 3), dtype=np.uint8)
    coeffs = rng.normal(0, 0.1, (3, 70)).astype(np.float32)
    windows, source = stage.semantic_windows(coeffs), stage.source_semantics(np.zeros(73, np.float32), "crop")
    full = np.concatenate(list(stage.render(models, mapping, image, source, windows, 2)))
    low = np.concatenate(list(stage.render(models, mapping, image, source, windows, 2, precision=precision)))
    assert low.dtype == np.uint8 and low.shape == full.shape
    assert np.abs(low.astype(int) - full.astype(int)).max() <= 8  # reduced precision, not a different picture


def test_render_rejects_an_unknown_precision():
    models, mapping = build_renderer(SMALL), build_mapping(SMALL_MAPPING["crop"])
    windows = stage.semantic_windows(np.zeros((1, 70), np.float32))
    with pytest.raises(ValueError, match="precision"):
        list(
            stage.render(
                models,
                mapping,
                np.zeros((32, 32, 3), np.uint8),
                stage.source_semantics(np.zeros(73, np.float32), "crop"),
                windows,
                1,
                precision="fp8",
            )
        )


def test_precision_region_does_not_leak_into_the_callers_code_between_batches():
    """The enhancer and paste-back run between the renderer's batches: they must not inherit its autocast."""
    models, mapping = build_renderer(SMALL), build_mapping(SMALL_MAPPING["crop"])
    windows = stage.semantic_windows(np.zeros((3, 70), np.float32))
    source = stage.source_semantics(np.zeros(73, np.float32), "crop")
    image = np.zeros((SMALL_IMAGE_SIZE, SMALL_IMAGE_SIZE, 3), np.uint8)
    seen = []
    for _ in stage.render(models, mapping, image, source, windows, 1, precision="bf16"):
        seen.append(torch.is_autocast_enabled("cpu"))
    assert seen == [False, False, False]


@pytest.mark.parametrize(
    "precision, autocast, tf32",
    [("fp32", False, False), ("tf32", False, True), ("fp16", True, True), ("bf16", True, True)],
)
def test_precision_context_sets_autocast_and_tf32_and_restores_them(precision, autocast, tf32):
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with stage.precision_context(torch.device("cpu"), precision):
        assert torch.is_autocast_enabled("cpu") is autocast
        assert torch.backends.cudnn.allow_tf32 is tf32 and torch.backends.cuda.matmul.allow_tf32 is tf32
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


def test_fp32_region_switches_off_an_enclosing_autocast():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with stage.precision_context(torch.device("cpu"), "fp32"):
            out = torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3))
    assert out.dtype == torch.float32
