"""The inference-only fused decoder (sadtalker.kernels.renderer) computes what the unfused one does.

Checked in float64, where the only difference left is float rounding, so tolerances are tight.
The golden fidelity tests (test_renderer_fidelity.py) run through ``render``, which prepares the
fused decoder, so they also check the fused float32 path against the reference.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sadtalker.kernels import fft, winograd
from sadtalker.kernels import renderer as fast
from sadtalker.render.blocks import SPADEResBlock
from sadtalker.render.dims import SMALL
from sadtalker.render.generator import SPADEDecoder
from sadtalker.render.models import build_renderer


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("size", [(8, 8), (13, 10)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_winograd_conv_equals_direct_conv(tile, size, with_bias):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, *size, generator=gen, dtype=torch.float64)
    weight = torch.randn(7, 5, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(7, generator=gen, dtype=torch.float64) if with_bias else None
    expected = F.conv2d(x, weight, bias, padding=1)
    actual = winograd.WinogradConv3x3(weight, bias, tile)(x)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=0, atol=1e-11)


def test_winograd_rejects_an_unknown_tile():
    with pytest.raises(ValueError, match="Winograd output tile"):
        winograd.winograd_matrices(3)


@pytest.fixture
def every_conv_winograd(monkeypatch):
    """Winograd for every eligible conv, however narrow (the tests' networks are tiny)."""
    for name in ("WINOGRAD_MIN_CIN", "WINOGRAD_MIN_COUT", "WINOGRAD_MIN_CHANNELS_3D"):
        monkeypatch.setattr(winograd, name, 1)


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("batch", [1, 2])  # a batch of volumes runs one volume at a time
@pytest.mark.parametrize("band_tiles", [1, 128])  # one band of tile rows per tile row, or one band in all
@pytest.mark.parametrize("with_bias", [True, False])
def test_winograd_conv_over_volumes_equals_conv3d(tile, batch, band_tiles, with_bias):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(batch, 5, 3, 9, 6, generator=gen, dtype=torch.float64)
    weight = torch.randn(7, 5, 3, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(7, generator=gen, dtype=torch.float64) if with_bias else None
    conv = winograd.WinogradConv3x3(weight, bias, tile)
    conv.band_tiles = band_tiles
    expected = F.conv3d(x, weight, bias, padding=1)
    actual = conv(x)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=0, atol=1e-11)


def test_winograd_bands_of_a_2d_conv_cover_the_whole_image():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 11, 9, generator=gen, dtype=torch.float64)
    weight = torch.randn(3, 4, 3, 3, generator=gen, dtype=torch.float64)
    conv = winograd.WinogradConv3x3(weight, None, 2)
    conv.band_tiles = 1
    assert torch.allclose(conv(x), F.conv2d(x, weight, padding=1), rtol=0, atol=1e-11)


def test_winograd_under_autocast_transforms_in_the_kernels_dtype():
    """bf16 autocast around a float32 Winograd conv: the transforms (coefficients up to 8) stay float32, so the
    result is as close to the float32 conv as a direct conv would be; transforming in bf16 is ~100x further off."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 64, 16, 16, generator=gen)
    weight = torch.randn(32, 64, 3, 3, generator=gen) / 24
    conv = winograd.WinogradConv3x3(weight, None, 4)
    expected = F.conv2d(x, weight, padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        actual = conv(x)
        bf16_input = conv(x.bfloat16())
    assert actual.dtype == torch.float32 and bf16_input.dtype == torch.bfloat16
    assert (actual - expected).abs().max() < 1e-4
    in_bf16 = winograd.WinogradConv3x3(weight.bfloat16(), None, 4)._forward(x.bfloat16()).float()
    assert (in_bf16 - expected).abs().max() > 100 * (actual - expected).abs().max()
    assert (bf16_input.float() - expected).abs().max() < 0.1 * (in_bf16 - expected).abs().max()


def test_winograd_refuses_other_kernel_sizes():
    with pytest.raises(ValueError, match="3x3 or 3x3x3"):
        winograd.WinogradConv3x3(torch.zeros(2, 2, 5, 5), None)


@pytest.mark.parametrize(
    "scales,shape",
    [
        ((2, 2), (2, 5, 7, 6)),
        ((4, 4), (2, 5, 7, 6)),
        ((1, 3), (1, 5, 5, 4)),
        ((1, 2, 2), (2, 5, 4, 7, 6)),
        ((2, 1, 4), (1, 5, 3, 4, 5)),
    ],
)
@pytest.mark.parametrize("with_bias", [True, False])
def test_upsampled_conv_equals_nearest_upsampling_then_the_conv(scales, shape, with_bias):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    weight = torch.randn(6, shape[1], *(3,) * len(scales), generator=gen, dtype=torch.float64)
    bias = torch.randn(6, generator=gen, dtype=torch.float64) if with_bias else None
    conv = F.conv2d if len(scales) == 2 else F.conv3d
    expected = conv(F.interpolate(x, scale_factor=scales, mode="nearest"), weight, bias, padding=1)
    actual = winograd.UpsampledConv(weight, bias, scales)(x)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=0, atol=1e-11)


def test_upsampled_conv_has_fewer_taps_than_the_conv_it_replaces():
    weight = torch.zeros(1, 1, 3, 3)
    for scale, taps_per_phase in [(2, 4), (4, 36 / 16)]:
        conv = winograd.UpsampledConv(weight, None, (scale, scale))
        taps = sum(getattr(conv, f"weight_{i}").numel() for i in range(len(conv.parts)))
        assert taps / scale**2 == taps_per_phase  # 9 for the conv on the upsampled map


def test_upsampled_conv_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="3 taps per axis"):
        winograd.UpsampledConv(torch.zeros(2, 2, 5, 5), None, (2, 2))
    with pytest.raises(ValueError, match="one scale per axis"):
        winograd.UpsampledConv(torch.zeros(2, 2, 3, 3), None, (2, 2, 2))


@pytest.mark.parametrize("tile", ["off", 2, 4])
@pytest.mark.parametrize("fin,fout", [(8, 8), (8, 4)])  # plain and learned shortcut
@pytest.mark.parametrize("label_scale", [1, 4])  # the label map (3x3) is 4x smaller than x (12x12)
def test_fused_spade_block_equals_the_block(every_conv_winograd, tile, fin, fout, label_scale):
    torch.manual_seed(0)
    block = SPADEResBlock(fin, fout, label_nc=3, hidden=6).eval().double()
    for module in block.modules():  # default biases are tiny; make them matter
        if isinstance(module, torch.nn.Conv2d) and module.bias is not None:
            torch.nn.init.normal_(module.bias)
    x = torch.randn(2, fin, 12, 12, dtype=torch.float64)
    seg = torch.randn(2, 3, 3, 3, dtype=torch.float64)  # nearest x4 inside the block
    with torch.no_grad():
        expected = block(x, seg)
        fast.attach(block, "fused", fast.FusedSPADEBlock(block, tile, label_scale).double())
        actual = block(x, seg)
    assert (block.fused.shared_upsampled is not None) == (label_scale > 1)
    assert torch.allclose(actual, expected, rtol=0, atol=1e-10)


def test_fused_spade_block_takes_the_general_path_for_a_label_map_of_another_size():
    torch.manual_seed(0)
    block = SPADEResBlock(8, 4, label_nc=3, hidden=6).eval().double()
    x = torch.randn(1, 8, 12, 12, dtype=torch.float64)
    seg = torch.randn(1, 3, 4, 4, dtype=torch.float64)  # 3x smaller, not the 2x the fused block was built for
    with torch.no_grad():
        expected = block(x, seg)
        fast.attach(block, "fused", fast.FusedSPADEBlock(block, "off", label_scale=2).double())
        actual = block(x, seg)
    assert torch.allclose(actual, expected, rtol=0, atol=1e-10)


def small_decoder() -> SPADEDecoder:
    torch.manual_seed(1)
    return SPADEDecoder(SMALL.generator).eval().double()


@pytest.mark.parametrize("tile", ["off", 4])
def test_prepared_decoder_equals_unprepared(every_conv_winograd, tile):
    decoder = small_decoder()
    feature = torch.randn(2, SMALL.generator.decoder_channels, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        expected = decoder(feature)
        fast.prepare_decoder(decoder, tile)
        assert all(getattr(block, "fused", None) is not None for _, block in fast.named_spade_blocks(decoder))
        assert decoder.up_1.fused.shared_upsampled is not None  # the label map is 4x smaller there
        prepared = decoder(feature)
    assert prepared.shape == (2, 3, 8 * 4, 8 * 4)
    assert torch.allclose(prepared, expected, rtol=0, atol=1e-10)


def test_preparing_keeps_the_official_state_dict_keys_so_strict_loading_still_works():
    models = build_renderer(SMALL)
    before = models.generator.state_dict()
    fast.prepare_renderer(models.generator)
    after = models.generator.state_dict()
    assert list(after) == list(before)
    models.generator.load_state_dict(before, strict=True)


def test_prepare_renderer_is_done_once_per_device_and_dtype():
    models = build_renderer(SMALL)
    fast.prepare_renderer(models.generator)
    first = [b for _, b in fast.named_spade_blocks(models.generator.decoder)][0].fused
    fast.prepare_renderer(models.generator)
    assert [b for _, b in fast.named_spade_blocks(models.generator.decoder)][0].fused is first
    models.generator.double()
    fast.prepare_renderer(models.generator)
    rebuilt = [b for _, b in fast.named_spade_blocks(models.generator.decoder)][0].fused
    assert rebuilt is not first
    assert all(buffer.dtype == torch.float64 for buffer in rebuilt.buffers() if buffer.is_floating_point())


def test_the_auto_tile_is_winograd_on_cpu_only_and_tiles_are_named():
    assert winograd.resolve_tile("auto", torch.device("cpu")) == winograd.DEFAULT_TILE
    assert winograd.resolve_tile("auto", torch.device("cuda")) == "off"
    assert winograd.resolve_tile("off", torch.device("cpu")) == "off"
    assert winograd.resolve_tile(2, torch.device("cuda")) == 2
    for bad in (-1, None, 3, "on"):
        with pytest.raises(ValueError, match="Winograd tile"):
            winograd.resolve_tile(bad, torch.device("cpu"))


@pytest.mark.slow  # torch.compile's inductor build
def test_compile_generator_keeps_the_frames_and_the_state_dict():
    models = build_renderer(SMALL)
    feature = models.generator.encode(torch.rand(2, 3, 32, 32))
    kp_source, kp_driving = torch.rand(2, 4, 3) - 0.5, torch.rand(2, 4, 3) - 0.5
    with torch.no_grad():
        fast.prepare_renderer(models.generator)
        expected = models.generator.decode(feature, models.generator.motion(feature, kp_source, kp_driving))
        keys = list(models.generator.state_dict())
        # wiring only: the eager backend needs no C++ toolchain
        fast.prepare_renderer(models.generator, fast.RendererPaths(compile_backend="eager"))
        actual = models.generator.decode(feature, models.generator.motion(feature, kp_source, kp_driving))
    assert models.generator.compiled_with == "eager"
    assert "motion" in models.generator.__dict__ and "decode" in models.generator.__dict__
    assert list(models.generator.state_dict()) == keys
    assert torch.equal(actual, expected)


def small_generator_inputs():
    torch.manual_seed(2)
    models = build_renderer(SMALL)
    generator = models.generator.double()
    source = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    kp_source = torch.rand(2, 4, 3, dtype=torch.float64) - 0.5
    kp_driving = torch.rand(2, 4, 3, dtype=torch.float64) - 0.5
    return generator, source, kp_source, kp_driving


def test_winograd_convs_are_the_plain_3x3_convs_only():
    convs = [
        torch.nn.Conv2d(64, 128, 3, padding=1),
        torch.nn.Conv2d(64, 128, 7, padding=3),
        torch.nn.Conv2d(64, 128, 1),
        torch.nn.Conv2d(64, 128, 3, padding=1, stride=2),
        torch.nn.Conv3d(32, 32, 3, padding=1),
        torch.nn.Conv2d(256, 64, 3, padding=1),
    ]
    found = winograd.winograd_convs(torch.nn.Sequential(*convs))
    assert found == [convs[0], convs[4]]  # 256 -> 64: too few output channels to gain


def test_prepared_convs_compute_the_same_frames_and_unprepare_restores_them(every_conv_winograd):
    generator, source, kp_source, kp_driving = small_generator_inputs()
    keys = list(generator.state_dict())
    with torch.no_grad():
        expected = generator(source, kp_source, kp_driving)
        winograd.prepare_convs(generator, 4)
        prepared = [conv for conv in generator.modules() if hasattr(conv, "winograd")]
        actual = generator(source, kp_source, kp_driving)
        winograd.unprepare_convs(generator)
        restored = generator(source, kp_source, kp_driving)
    assert len(prepared) == len(winograd.winograd_convs(generator)) > 10
    assert list(generator.state_dict()) == keys
    assert torch.allclose(actual, expected, rtol=0, atol=1e-10)
    assert torch.equal(restored, expected)
    assert not any(hasattr(conv, "winograd") for conv in generator.modules())


def test_prepared_upsampling_computes_the_same_motion(every_conv_winograd):
    generator, source, kp_source, kp_driving = small_generator_inputs()
    feature = generator.encode(source)
    with torch.no_grad():
        expected = generator.motion(feature, kp_source, kp_driving)
        fast.prepare_upsampling(generator.dense_motion_network)
        assert all(
            getattr(block, "fused", None) is not None for block in fast.up_blocks(generator.dense_motion_network)
        )
        actual = generator.motion(feature, kp_source, kp_driving)
        fast.unprepare_upsampling(generator.dense_motion_network)
    assert not any(
        getattr(block, "fused", None) is not None for block in fast.up_blocks(generator.dense_motion_network)
    )
    for got, want in zip(actual, expected, strict=True):
        assert torch.allclose(got, want, rtol=0, atol=1e-10)


def test_prepare_renderer_on_cpu_prepares_every_fast_path(every_conv_winograd):
    generator, source, kp_source, kp_driving = small_generator_inputs()
    with torch.no_grad():
        expected = generator(source, kp_source, kp_driving)
        fast.prepare_renderer(generator)
        actual = generator(source, kp_source, kp_driving)
    assert all(getattr(block, "fused", None) is not None for block in fast.up_blocks(generator.dense_motion_network))
    assert generator.dense_motion_network.fused_heads is not None
    assert generator.decoder.up_1.fused.shared_upsampled is not None
    outside_decoder = [
        conv
        for name, child in generator.named_children()
        if name != "decoder"
        for conv in winograd.winograd_convs(child)
    ]
    assert outside_decoder and all(hasattr(conv, "winograd") for conv in outside_decoder)
    assert torch.allclose(actual, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("k,depth_taps,depth_padding", [(7, 7, 3), (5, 3, 1), (7, 4, 0)])
@pytest.mark.parametrize("tile", [3, 18])
def test_tiled_fft_conv_equals_the_direct_conv(k, depth_taps, depth_padding, tile):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 4, 5, 11, 9, generator=gen, dtype=torch.float64)
    weight = torch.randn(3, 4, depth_taps, k, k, generator=gen, dtype=torch.float64)
    bias = torch.randn(3, generator=gen, dtype=torch.float64)
    expected = F.conv3d(x, weight, bias, padding=(depth_padding, k // 2, k // 2))
    actual = fft.TiledFFTConv(weight, bias, depth_padding, tile)(x)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=0, atol=1e-10)


def test_tiled_fft_conv_refuses_an_even_kernel():
    with pytest.raises(ValueError, match="odd square kernel"):
        fft.TiledFFTConv(torch.zeros(1, 1, 3, 4, 4), None, 1)


def test_motion_heads_give_the_mask_and_occlusion_of_the_convs():
    generator, source, kp_source, kp_driving = small_generator_inputs()
    feature = generator.encode(source)
    dense_motion = generator.dense_motion_network
    with torch.no_grad():
        expected = generator.motion(feature, kp_source, kp_driving)
        fast.prepare_motion_heads(dense_motion)
        assert dense_motion.fused_heads is not None
        actual = generator.motion(feature, kp_source, kp_driving)
    assert actual.occlusion.shape == expected.occlusion.shape
    for got, want in zip(actual, expected, strict=True):
        assert torch.allclose(got, want, rtol=0, atol=1e-10)


def test_moving_off_the_cpu_drops_the_cpu_only_paths(every_conv_winograd):
    generator, *_ = small_generator_inputs()
    fast.prepare_renderer(generator)
    generator.to("meta")  # any device other than the CPU (shapes only; no GPU needed)
    fast.prepare_renderer(generator)
    assert generator.prepared_with[0].type == "meta"
    assert generator.dense_motion_network.__dict__.get("heads") is None
    assert not any(
        getattr(block, "fused", None) is not None for block in fast.up_blocks(generator.dense_motion_network)
    )
    assert not any(hasattr(conv, "winograd") for conv in generator.modules())
    assert generator.decoder.up_1.fused.shared_upsampled is None  # measured on CPU only
    assert all(
        isinstance(block.fused.conv_0, winograd.DirectConv3x3)
        for block in [b for _, b in fast.named_spade_blocks(generator.decoder)]
    )


def test_upsampled_convs_can_be_turned_on_off_the_cpu(every_conv_winograd):
    generator, *_ = small_generator_inputs()
    generator.to("meta")  # not CUDA: the switch is for CUDA only
    fast.prepare_renderer(generator, fast.RendererPaths(upsampled_convs_on_cuda=True))
    assert generator.decoder.up_1.fused.shared_upsampled is None
    assert not any(
        getattr(block, "fused", None) is not None for block in fast.up_blocks(generator.dense_motion_network)
    )


def _attached(generator: torch.nn.Module) -> list:
    """Names of the modules whose methods prepare_renderer replaced (an instance attribute shadows the class's)."""
    replaced = ("forward", "heads", "motion", "decode")
    return [
        name or "generator"
        for name, module in generator.named_modules()
        if any(method in module.__dict__ for method in replaced)
    ]


def test_plain_paths_leave_the_classes_as_written_and_compute_the_same_frames(every_conv_winograd):
    """RendererPaths(fast=False) (FAST_PATHS=false) after a fast preparation drops every path: no instance
    attribute shadows a class method, no extra module or buffer is left, and the frames are the fast ones."""
    generator, source, kp_source, kp_driving = small_generator_inputs()
    modules, buffers = len(list(generator.modules())), len(list(generator.buffers()))
    with torch.no_grad():
        fast.prepare_renderer(generator)
        assert len(_attached(generator)) > 10
        fused = generator(source, kp_source, kp_driving)
        fast.prepare_renderer(generator, fast.RendererPaths(fast=False))
        plain = generator(source, kp_source, kp_driving)
    assert _attached(generator) == []
    assert (len(list(generator.modules())), len(list(generator.buffers()))) == (modules, buffers)
    assert torch.allclose(plain, fused, rtol=0, atol=1e-10)
