"""The inference-only fused decoder (sadtalker.renderer.fast) computes what the unfused one does.

Checked in float64, where the only difference left is float rounding, so tolerances are tight.
The golden fidelity tests (test_renderer_fidelity.py) run through ``render``, which prepares the
fused decoder, so they also check the fused float32 path against the reference.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sadtalker.renderer import fast
from sadtalker.renderer.blocks import SPADEResBlock
from sadtalker.renderer.dims import SMALL
from sadtalker.renderer.generator import SPADEDecoder
from sadtalker.renderer.models import build_renderer


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("size", [(8, 8), (13, 10)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_winograd_conv_equals_direct_conv(tile, size, with_bias):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, *size, generator=gen, dtype=torch.float64)
    weight = torch.randn(7, 5, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(7, generator=gen, dtype=torch.float64) if with_bias else None
    expected = F.conv2d(x, weight, bias, padding=1)
    actual = fast.WinogradConv3x3(weight, bias, tile)(x)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=0, atol=1e-11)


def test_winograd_rejects_an_unknown_tile():
    with pytest.raises(ValueError, match="Winograd output tile"):
        fast.winograd_matrices(3)


@pytest.mark.parametrize("tile", [None, 2, 4])
@pytest.mark.parametrize("fin,fout", [(8, 8), (8, 4)])  # plain and learned shortcut
def test_fused_spade_block_equals_the_block(monkeypatch, tile, fin, fout):
    monkeypatch.setattr(fast, "WINOGRAD_MIN_CIN", 1)  # Winograd for every conv, however narrow
    torch.manual_seed(0)
    block = SPADEResBlock(fin, fout, label_nc=3, hidden=6).eval().double()
    for module in block.modules():  # default biases are tiny; make them matter
        if isinstance(module, torch.nn.Conv2d) and module.bias is not None:
            torch.nn.init.normal_(module.bias)
    x = torch.randn(2, fin, 12, 12, dtype=torch.float64)
    seg = torch.randn(2, 3, 3, 3, dtype=torch.float64)  # nearest x4 inside the block
    with torch.no_grad():
        expected = block(x, seg)
        block.fused = fast.FusedSPADEBlock(block, tile).double()
        actual = block(x, seg)
    assert torch.allclose(actual, expected, rtol=0, atol=1e-10)


def small_decoder() -> SPADEDecoder:
    torch.manual_seed(1)
    return SPADEDecoder(SMALL.generator).eval().double()


@pytest.mark.parametrize("tile", [None, 4])
def test_prepared_decoder_equals_unprepared_and_unprepare_restores_it(monkeypatch, tile):
    monkeypatch.setattr(fast, "WINOGRAD_MIN_CIN", 1)
    decoder = small_decoder()
    feature = torch.randn(2, SMALL.generator.decoder_channels, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        expected = decoder(feature)
        fast.prepare_decoder(decoder, tile)
        assert all(block.fused is not None for block in fast.spade_blocks(decoder))
        prepared = decoder(feature)
        fast.unprepare_decoder(decoder)
        restored = decoder(feature)
    assert prepared.shape == (2, 3, 8 * 4, 8 * 4)
    assert torch.allclose(prepared, expected, rtol=0, atol=1e-10)
    assert torch.equal(restored, expected)


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
    first = fast.spade_blocks(models.generator.decoder)[0].fused
    fast.prepare_renderer(models.generator)
    assert fast.spade_blocks(models.generator.decoder)[0].fused is first
    models.generator.double()
    fast.prepare_renderer(models.generator)
    rebuilt = fast.spade_blocks(models.generator.decoder)[0].fused
    assert rebuilt is not first
    assert all(buffer.dtype == torch.float64 for buffer in rebuilt.buffers() if buffer.is_floating_point())


def test_default_tile_is_winograd_on_cpu_only():
    assert fast.default_winograd_tile(torch.device("cpu")) == fast.DEFAULT_TILE
    assert fast.default_winograd_tile(torch.device("cuda")) is None


def test_compile_generator_keeps_the_frames_and_the_state_dict():
    models = build_renderer(SMALL)
    feature = models.generator.encode(torch.rand(2, 3, 32, 32))
    kp_source, kp_driving = torch.rand(2, 4, 3) - 0.5, torch.rand(2, 4, 3) - 0.5
    with torch.no_grad():
        fast.prepare_renderer(models.generator)
        expected = models.generator.decode(feature, models.generator.motion(feature, kp_source, kp_driving))
        keys = list(models.generator.state_dict())
        fast.compile_generator(models.generator, backend="eager")  # wiring only: no C++ toolchain needed
        actual = models.generator.decode(feature, models.generator.motion(feature, kp_source, kp_driving))
    assert models.generator.compiled_with == "eager"
    assert list(models.generator.state_dict()) == keys
    assert torch.equal(actual, expected)
