"""Full-mode paste-back, both methods: sizes, untouched outside, batches; the feathered blend: exact centre, smooth
mask. The seamless paste against OpenCV is in test_seamless.py."""

import numpy as np
import pytest
import torch

from sadtalker.output.paste import Paster, feather_mask


@pytest.fixture
def original() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (203, 301, 3), dtype=np.uint8)  # odd H and W


def faces(n: int, height: int, width: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


METHODS = pytest.mark.parametrize("method", ["seamless", "feather"])


@METHODS
def test_output_is_the_original_size_rounded_up_to_even(original, method):
    paster = Paster(original, (100, 50, 200, 130), method=method)
    out = paster.paste(faces(3, 64, 64))
    assert out.shape == (3, 204, 302, 3) and out.dtype == np.uint8
    assert paster.size == (302, 204)


@METHODS
def test_outside_the_box_is_the_original_exactly(original, method):
    out = Paster(original, (100, 50, 200, 130), method=method).paste(faces(2, 64, 64))
    inside = np.zeros((204, 302), bool)
    inside[50:130, 100:200] = True
    for frame in out:
        np.testing.assert_array_equal(frame[:203, :301][~inside[:203, :301]], original[~inside[:203, :301]])
        np.testing.assert_array_equal(frame[203, :301], original[202])  # padded row repeats the last one
        np.testing.assert_array_equal(frame[:203, 301], original[:, 300])


def test_centre_of_the_box_is_the_frame_exactly(original):
    crop = faces(2, 80, 100)  # already the box's size: no resize
    out = Paster(original, (100, 50, 200, 130), feather_fraction=0.1, method="feather").paste(crop)
    feather = 8  # 0.1 * 80
    np.testing.assert_array_equal(
        out[:, 50 + feather : 130 - feather, 100 + feather : 200 - feather], crop[:, feather:-feather, feather:-feather]
    )


def test_a_resized_flat_face_fills_the_centre_with_its_colour(original):
    crop = np.full((1, 64, 64, 3), (10, 200, 90), np.uint8)
    out = Paster(original, (100, 50, 200, 130), method="feather").paste(crop)
    np.testing.assert_array_equal(out[0, 60:120, 110:190], np.broadcast_to([10, 200, 90], (60, 80, 3)))


def test_mask_is_smooth_with_no_hard_edge():
    feather = 12.0
    mask = feather_mask(80, 100, feather).numpy()
    assert mask.min() >= 0.0 and mask.max() == 1.0
    assert mask[0, 50] < 0.01 and mask[40, 0] < 0.01  # nearly 0 at the box edge
    steps = max(np.abs(np.diff(mask, axis=0)).max(), np.abs(np.diff(mask, axis=1)).max())
    assert steps <= 1.6 / feather
    assert np.all(mask[12:-12, 12:-12] == 1.0)


def test_blend_at_the_edge_stays_close_to_the_original(original):
    crop = np.full((1, 80, 100, 3), 255, np.uint8)
    out = Paster(original, (100, 50, 200, 130), method="feather").paste(crop).astype(int)
    edge_row = out[0, 50, 100:200] - original[50, 100:200].astype(int)
    assert np.abs(edge_row).max() <= 3  # first row inside the box: weight < 1%


@METHODS
def test_box_reaching_past_the_image_is_clipped(original, method):
    paster = Paster(original, (250, -20, 330, 60), method=method)
    out = paster.paste(faces(1, 64, 64))
    assert out.shape == (1, 204, 302, 3)
    np.testing.assert_array_equal(out[0, 60:203, :301], original[60:])
    np.testing.assert_array_equal(out[0, :60, :250], original[:60, :250])
    assert not np.array_equal(out[0, 20:40, 270:290], original[20:40, 270:290])


@METHODS
def test_frames_are_pasted_independently_of_the_batch(original, method):
    crop = faces(4, 64, 64)
    paster = Paster(original, (100, 50, 200, 130), method=method)
    batch = paster.paste(crop)
    for i in range(4):
        np.testing.assert_array_equal(batch[i], paster.paste(crop[i : i + 1])[0])


@METHODS
def test_torch_frames_in_give_torch_frames_out(original, method):
    crop = faces(2, 64, 64)
    paster = Paster(original, (100, 50, 200, 130), method=method)
    out = paster.paste(torch.from_numpy(crop))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), paster.paste(crop))


def test_bad_inputs_are_refused(original):
    with pytest.raises(ValueError, match="empty"):
        Paster(original, (100, 50, 100, 130))
    with pytest.raises(ValueError, match="outside"):
        Paster(original, (400, 50, 500, 130))
    with pytest.raises(ValueError, match="uint8"):
        Paster(original, (100, 50, 200, 130)).paste(faces(1, 64, 64).astype(np.float32))
    with pytest.raises(ValueError, match="paste method"):
        Paster(original, (100, 50, 200, 130), method="poisson")


@METHODS
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_paste_matches_cpu(original, method):
    crop = faces(3, 64, 64)
    cpu = Paster(original, (100, 50, 200, 130), method=method).paste(crop)
    gpu = Paster(original, (100, 50, 200, 130), device="cuda", method=method).paste(crop)
    assert np.abs(cpu.astype(int) - gpu.astype(int)).max() <= 1
