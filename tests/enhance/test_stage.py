"""GFPGAN restorer: sizes, determinism, batch independence, strict loading (small config; one real-size run)."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from sadtalker.bundle import load_enhancer
from sadtalker.core.errors import CheckpointError
from sadtalker.enhance.gfpgan import OFFICIAL, EnhancerDims, build_gfpgan, gfpgan_forward
from sadtalker.enhance.stage import FaceEnhancer
from sadtalker.kernels.enhancer import (
    EnhancerPaths,
    batch_modulated_convs,
    enhancer_forward,
    prepare_enhancer,
    to_channels_last,
)

SMALL = EnhancerDims(out_size=64, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.25)


@pytest.fixture(scope="module")
def small_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_gfpgan(SMALL).eval()


@pytest.fixture(scope="module")
def enhancer(small_net) -> FaceEnhancer:
    return FaceEnhancer(prepare_enhancer(small_net), SMALL, batch_size=2)


def faces(n: int, height: int = 40, width: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_output_keeps_the_input_size_and_dtype(enhancer):
    frames = faces(3)
    out = enhancer.restore(frames)
    assert out.shape == (3, 40, 48, 3) and out.dtype == np.uint8
    assert not np.array_equal(out, frames)  # the network did something


def test_size_argument_sets_the_output_size(enhancer):
    assert enhancer.restore(faces(2), size=(90, 70)).shape == (2, 90, 70, 3)


def test_same_frames_restore_to_identical_images(enhancer):
    frames = faces(3)
    np.testing.assert_array_equal(enhancer.restore(frames), enhancer.restore(frames))


def test_each_face_is_restored_independently_of_its_batch(enhancer, small_net):
    frames = faces(5)  # sub-batches of 2: (2, 2, 1)
    batched = enhancer.restore(frames)
    alone = np.concatenate([FaceEnhancer(small_net, SMALL, batch_size=1).restore(frames[i : i + 1]) for i in range(5)])
    assert np.abs(batched.astype(int) - alone.astype(int)).max() <= 1


def test_restore_uses_the_stored_noise_maps(small_net):
    frames = faces(1)
    nets = []
    for shift in (0.0, 3.0):  # two networks that differ only in one stored noise map
        net = build_gfpgan(SMALL)
        net.load_state_dict(small_net.state_dict())
        net.stylegan_decoder.style_convs[2].weight.data.fill_(1.0)  # that layer's noise strength (0 at init)
        net.stylegan_decoder.noises.noise3.add_(shift)  # noise3 feeds style_convs[2]
        nets.append(FaceEnhancer(net.eval(), SMALL))
    assert not np.array_equal(nets[0].restore(frames), nets[1].restore(frames))


def test_reduced_precision_runs_the_network_under_autocast(small_net, enhancer):
    """ENHANCER_DTYPE=bf16 (fp16 on CPU autocast is far slower): convolutions see bf16, the result is close
    to fp32 but not identical, and the weights stay fp32."""
    seen = []
    hook = small_net.conv_body_first.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    try:
        low = FaceEnhancer(small_net, SMALL, batch_size=2, precision="bf16").restore(faces(2))
        full = enhancer.restore(faces(2))
    finally:
        hook.remove()
    assert seen == [torch.bfloat16, torch.float32]
    assert next(small_net.parameters()).dtype == torch.float32
    difference = np.abs(low.astype(int) - full.astype(int))
    assert 0 < difference.max() <= 24, difference.max()  # bf16 keeps 8 mantissa bits


@torch.no_grad()
def test_batched_modulated_conv_computes_what_the_grouped_one_does():
    """Our one-convolution forward equals gfpgan's own grouped-convolution ModulatedConv2d (float64, every
    sample mode, with and without demodulation), and the whole network's output is unchanged."""
    build_gfpgan(SMALL, device="meta")  # imports gfpgan with the torchvision alias in place
    from gfpgan.archs.stylegan2_clean_arch import ModulatedConv2d

    torch.manual_seed(1)
    x, style = torch.randn(3, 8, 10, 10, dtype=torch.float64), torch.randn(3, 16, dtype=torch.float64)
    for sample_mode in (None, "upsample", "downsample"):
        for demodulate in (True, False):
            conv = ModulatedConv2d(8, 5, 3, 16, demodulate=demodulate, sample_mode=sample_mode).double()
            expected = conv(x, style)
            assert batch_modulated_convs(conv) == 1
            np.testing.assert_allclose(conv(x, style).numpy(), expected.numpy(), rtol=1e-10, atol=1e-12)
    net = build_gfpgan(SMALL).double().eval()
    image = torch.rand(2, 3, SMALL.out_size, SMALL.out_size, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        expected = net(image, return_rgb=False, randomize_noise=False)[0]
        assert batch_modulated_convs(net) > 10
        actual = net(image, return_rgb=False, randomize_noise=False)[0]
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-9, atol=1e-10)


def test_unknown_precision_is_refused(small_net):
    with pytest.raises(ValueError, match="precision"):
        FaceEnhancer(small_net, SMALL, precision="fp8")


def test_torch_frames_in_give_torch_frames_out(enhancer):
    frames = faces(2)
    out = enhancer.restore(torch.from_numpy(frames))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), enhancer.restore(frames))


def test_float_frames_are_refused(enhancer):
    with pytest.raises(ValueError, match="uint8"):
        enhancer.restore(faces(1).astype(np.float32))


def test_loading_a_saved_state_dict_gives_the_same_network(tmp_path, small_net, enhancer):
    torch.save({"params_ema": small_net.state_dict()}, tmp_path / "GFPGANv1.4.pth")
    loaded = load_enhancer(str(tmp_path), dims=SMALL)
    frames = faces(2)
    np.testing.assert_array_equal(loaded.restore(frames), enhancer.restore(frames))


def test_wrong_state_dict_raises_naming_every_problem(tmp_path, small_net):
    state = dict(small_net.state_dict())
    del state["final_conv.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["final_linear.bias"] = torch.zeros(3)
    torch.save({"params_ema": state}, tmp_path / "GFPGANv1.4.pth")
    with pytest.raises(CheckpointError) as caught:
        load_enhancer(str(tmp_path), dims=SMALL)
    message = str(caught.value)
    for part in ("GFPGANv1.4.pth", "final_conv.weight", "extra.weight", "final_linear.bias"):
        assert part in message


def test_file_without_params_ema_or_missing_file_raises(tmp_path, small_net):
    with pytest.raises(CheckpointError, match="not found"):
        load_enhancer(str(tmp_path), dims=SMALL)
    torch.save({"params": small_net.state_dict()}, tmp_path / "GFPGANv1.4.pth")
    with pytest.raises(CheckpointError, match="params_ema"):
        load_enhancer(str(tmp_path), dims=SMALL)


@pytest.mark.slow
def test_official_format_file_loads_strictly_and_restores_at_render_size(test_checkpoints_dir):
    enhancer = load_enhancer(str(test_checkpoints_dir))  # official dims, real-size network (one forward: ~8 s)
    assert enhancer.dims == OFFICIAL
    assert sum(p.numel() for p in enhancer.net.parameters()) == 86444252  # the manifest's learned_params
    out = enhancer.restore(faces(1, 64, 64))
    assert out.shape == (1, 64, 64, 3) and out.dtype == np.uint8


# Wide enough that some convs take the CPU's Winograd path (64+ in, 128+ out), small enough for float64.
MEDIUM = EnhancerDims(out_size=32, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.5)


def _random_gfpgan(dims: EnhancerDims, sft_half: bool = True) -> torch.nn.Module:
    """A float64 network whose noise strengths and biases are not zero (as they are at initialisation)."""
    torch.manual_seed(2)
    net = build_gfpgan(dataclasses.replace(dims, sft_half=sft_half)).double().eval()
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith(".weight") and param.numel() == 1:  # StyleConv noise strength
                param.fill_(0.7)
            elif name.endswith("bias"):
                param.normal_(0.0, 0.1)
    return net


def _winograd_layers(net: torch.nn.Module) -> int:
    return sum(hasattr(module, "winograd") for module in net.modules())


@pytest.mark.parametrize("sft_half", [True, False])
@torch.no_grad()
def test_fast_forward_computes_what_gfpgans_forward_does(sft_half):
    """gfpgan_forward on a prepared network (Winograd on the CPU, in place steps, skip convs on the small map)
    equals gfpgan's own GFPGANv1Clean.forward in float64."""
    net = _random_gfpgan(MEDIUM, sft_half)
    reference = copy.deepcopy(net)
    image = torch.rand(2, 3, MEDIUM.out_size, MEDIUM.out_size, dtype=torch.float64) * 2 - 1
    expected = reference(image, return_rgb=False, randomize_noise=False)[0]
    prepare_enhancer(net)
    assert _winograd_layers(net) >= 6  # plain and modulated 3x3 convs wide enough to gain
    actual = gfpgan_forward(net, image)
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=0, atol=1e-11)
    prepare_enhancer(net, EnhancerPaths(winograd_tile="off"))  # direct convs: nothing of the Winograd path is left
    assert _winograd_layers(net) == 0
    np.testing.assert_allclose(gfpgan_forward(net, image).numpy(), expected.numpy(), rtol=0, atol=1e-11)


@torch.no_grad()
def test_fast_forward_works_in_channels_last_layout():
    """The CUDA layout, checked on the CPU: same result, and the style code is reshaped, not viewed."""
    net = _random_gfpgan(SMALL)
    image = torch.rand(2, 3, SMALL.out_size, SMALL.out_size, dtype=torch.float64) * 2 - 1
    expected = gfpgan_forward(prepare_enhancer(net), image)
    to_channels_last(net)
    assert net.final_conv.weight.is_contiguous(memory_format=torch.channels_last)
    actual = gfpgan_forward(net, image.contiguous(memory_format=torch.channels_last))
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=0, atol=1e-12)


@torch.no_grad()
def test_style_conv_keeps_the_map_in_the_autocast_type():
    """Under autocast the steps after a StyleGAN2 convolution stay in bf16 (no float32 copy of the map) and read
    the float32 bias and noise as they are: within two bf16 roundings of the float32 computation."""
    from sadtalker.enhance.gfpgan import _modulated_conv, _style_conv

    net = prepare_enhancer(_random_gfpgan(SMALL).float())
    layer = net.stylegan_decoder.style_convs[2]
    noise = net.stylegan_decoder.noises.noise3
    x = torch.randn(2, layer.modulated_conv.in_channels, noise.shape[2] // 2, noise.shape[3] // 2).bfloat16()
    style = torch.randn(2, SMALL.num_style_feat)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _style_conv(layer, x, style, noise)
        conv, demod = _modulated_conv(layer.modulated_conv, x, style)
    assert out.dtype == torch.bfloat16
    scaled = conv.float() * demod[:, :, None, None] * 2**0.5
    expected = torch.nn.functional.leaky_relu(scaled + layer.bias + layer.weight * noise, 0.2)
    magnitude = scaled.abs() + layer.bias.abs() + (layer.weight * noise).abs()
    error = (out.float() - expected).abs()
    assert torch.all(error <= magnitude * 2**-7 + 1e-6)  # bf16: 8 significant bits, unit roundoff 2^-8
    assert error.max() > 0  # it did run in bf16


def test_fast_forward_needs_the_v14_latent_layout():
    net = build_gfpgan(dataclasses.replace(SMALL, different_w=False), device="meta")
    with pytest.raises(ValueError, match="different_w"):
        gfpgan_forward(net, torch.zeros(1, 3, SMALL.out_size, SMALL.out_size, device="meta"))


def test_prepared_enhancer_runs_winograd_on_the_cpu_in_nchw():
    net = _random_gfpgan(MEDIUM).float()
    enhancer = FaceEnhancer(prepare_enhancer(net), MEDIUM)
    assert _winograd_layers(enhancer.net) >= 6  # CPU: Winograd attached
    assert enhancer.memory_format == torch.contiguous_format  # channels-last is for CUDA only
    assert all(hasattr(m, "kernel_energy") for m in net.modules() if type(m).__name__ == "ModulatedConv2d")


def _enhancer_attachments(net: torch.nn.Module) -> int:
    """What prepare_enhancer hangs on gfpgan's modules: instance forwards, Winograd convs, kernel energies and
    noise strengths."""
    names = ("forward", "noise_strength")
    return sum(
        any(n in m.__dict__ for n in names) + hasattr(m, "winograd") + hasattr(m, "kernel_energy")
        for m in net.modules()
    )


@torch.no_grad()
def test_plain_paths_run_gfpgans_classes_as_written_with_the_same_frames():
    """EnhancerPaths(fast=False) (FAST_PATHS=false) after a fast preparation leaves nothing attached and runs
    gfpgan's own forward; in float32 the restored uint8 faces differ from the fast path's by at most one level."""
    net = _random_gfpgan(MEDIUM).float()
    frames = faces(3, 40, 40, seed=3)
    fast = FaceEnhancer(prepare_enhancer(net), MEDIUM, forward=enhancer_forward(EnhancerPaths()))
    assert _enhancer_attachments(net) > 10
    fused = fast.restore(frames)
    paths = EnhancerPaths(fast=False)
    plain = FaceEnhancer(prepare_enhancer(net, paths), MEDIUM, forward=enhancer_forward(paths))
    assert _enhancer_attachments(net) == 0 and plain.forward is not gfpgan_forward
    difference = np.abs(plain.restore(frames).astype(int) - fused.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.005, (difference.max(), (difference > 0).mean())
