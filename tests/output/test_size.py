"""Output frame sizes for every mode and upscale, and the MAX_OUTPUT_SIDE cap."""

import pytest

from sadtalker.core.contract import RenderOptions
from sadtalker.output.size import crop_frame_size, photo_frame_size


@pytest.mark.parametrize(
    "size, upscale, expected",
    [(256, 1, (256, 256)), (256, 2, (512, 512)), (512, 1, (512, 512)), (512, 2, (1024, 1024))],
)
def test_crop_modes_scale_the_render_size(size, upscale, expected):
    frame = crop_frame_size(size, (200, 200), upscale, 4096)
    assert (frame.width, frame.height, frame.warning) == (*expected, None)


def test_crop_modes_restore_the_crop_aspect_as_the_reference_does():
    frame = crop_frame_size(256, (200, 230), 2, 4096)
    assert (frame.width, frame.height) == (512, int(512 * 230 / 200))


def test_full_mode_scales_the_photo_to_even_sides():
    assert (photo_frame_size((641, 480), 1, 4096).width, photo_frame_size((641, 480), 1, 4096).height) == (642, 480)
    frame = photo_frame_size((641, 480), 2, 4096)
    assert (frame.width, frame.height, frame.warning) == (1282, 960, None)


def test_a_frame_over_the_cap_is_scaled_down_to_fit_with_a_warning():
    frame = photo_frame_size((3000, 2000), 2, 4096)
    assert (frame.width, frame.height) == (4096, 2730)  # 2730.67 down to even
    assert frame.width % 2 == frame.height % 2 == 0
    assert "6000x4000" in frame.warning and "MAX_OUTPUT_SIDE=4096" in frame.warning


def test_upscale_defaults_to_2_with_an_enhancer_and_1_without():
    assert RenderOptions().output_scale == 2
    assert RenderOptions(enhancer="none").output_scale == 1
    assert RenderOptions(enhancer="none", upscale=2).output_scale == 2
    assert RenderOptions(upscale=1).output_scale == 1
