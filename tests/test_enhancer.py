"""GFPGAN restorer: sizes, determinism, batch independence, strict loading (small config; one real-size run)."""
import numpy as np
import pytest
import torch

from sadtalker.enhancer import OFFICIAL, EnhancerDims, FaceEnhancer, batch_modulated_convs, build_gfpgan, load_enhancer
from sadtalker.errors import CheckpointError

SMALL = EnhancerDims(out_size=64, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.25)


@pytest.fixture(scope="module")
def small_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_gfpgan(SMALL).eval()


@pytest.fixture(scope="module")
def enhancer(small_net) -> FaceEnhancer:
    return FaceEnhancer(small_net, SMALL, batch_size=2)


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


def test_official_format_file_loads_strictly_and_restores_at_render_size(test_checkpoints_dir):
    enhancer = load_enhancer(str(test_checkpoints_dir))  # official dims, real-size network (one forward: ~8 s)
    assert enhancer.dims == OFFICIAL
    assert sum(p.numel() for p in enhancer.net.parameters()) == 86444252  # the manifest's learned_params
    out = enhancer.restore(faces(1, 64, 64))
    assert out.shape == (1, 64, 64, 3) and out.dtype == np.uint8
