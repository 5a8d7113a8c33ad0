"""The loader: official file names, component split, strict loading with one error listing every problem."""

from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sadtalker.core.errors import CheckpointError
from sadtalker.render.dims import SMALL
from sadtalker.render.models import build_renderer
from sadtalker.weights import loader as loading

MANIFESTS = os.path.join(os.path.dirname(__file__), "..", "support", "checkpoint_manifests")


def manifest(name: str) -> dict:
    with open(os.path.join(MANIFESTS, f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)


# ---- file names ---------------------------------------------------------------------------------


def test_file_names_follow_the_reference_selection():
    assert loading.sadtalker_file_name(256) == "SadTalker_V0.0.2_256.safetensors"
    assert loading.sadtalker_file_name(512) == "SadTalker_V0.0.2_512.safetensors"
    assert loading.mapping_file_name("crop") == "mapping_00229-model.pth.tar"
    assert loading.mapping_file_name("resize") == "mapping_00229-model.pth.tar"
    assert loading.mapping_file_name("full") == "mapping_00109-model.pth.tar"
    assert loading.mapping_file_name("extfull") == "mapping_00109-model.pth.tar"
    with pytest.raises(ValueError):
        loading.sadtalker_file_name(384)


# ---- strict loading -----------------------------------------------------------------------------


def test_load_strict_lists_every_missing_unexpected_and_misshaped_key_with_the_source():
    generator = build_renderer(SMALL).generator
    state = OrderedDict(generator.state_dict())
    del state["first.conv.weight"], state["decoder.conv_img.bias"]
    state["decoder.extra.weight"] = torch.zeros(1)
    state["second.weight"] = torch.zeros(3, 3, 1, 1)
    with pytest.raises(CheckpointError) as caught:
        loading.load_strict(build_renderer(SMALL).generator, state, "weights.safetensors [generator]")
    message = str(caught.value)
    assert "weights.safetensors [generator]" in message
    for fragment in (
        "first.conv.weight",
        "decoder.conv_img.bias",
        "decoder.extra.weight",
        "second.weight: file [3, 3, 1, 1] vs network [16, 16, 1, 1]",
        "2 missing",
        "1 unexpected",
        "1 shape mismatch",
    ):
        assert fragment in message


def test_load_strict_loads_a_matching_state_dict_exactly():
    source, target = build_renderer(SMALL, seed=1).generator, build_renderer(SMALL, seed=2).generator
    loading.load_strict(target, source.state_dict(), "x")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_missing_file_names_the_path_and_the_download_script(tmp_path):
    with pytest.raises(CheckpointError, match=r"SadTalker_V0.0.2_256.safetensors.*download_models.sh"):
        loading.load_renderer(str(tmp_path), 256)
    with pytest.raises(CheckpointError, match=r"mapping_00229-model.pth.tar.*download_models.sh"):
        loading.load_mapping(str(tmp_path), "crop")


def test_wrong_safetensors_file_gets_one_error_for_both_renderer_components(tmp_path):
    small = build_renderer(SMALL)
    tensors = {f"kp_extractor.{k}": v for k, v in small.kp_extractor.state_dict().items()}
    tensors.update({f"generator.{k}": v for k, v in small.generator.state_dict().items()})
    tensors["generator.decoder.G_middle_9.conv_0.bias"] = torch.zeros(2)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "SadTalker_V0.0.2_256.safetensors"))
    with pytest.raises(CheckpointError) as caught:
        loading.load_renderer(str(tmp_path), 256)
    message = str(caught.value)
    assert message.startswith("SadTalker_V0.0.2_256.safetensors")
    assert "[kp_extractor]" in message and "[generator]" in message
    assert "decoder.G_middle_5.conv_0.weight_orig" in message  # missing: SMALL has one middle block
    assert "decoder.G_middle_9.conv_0.bias" in message  # unexpected
    assert "predictor.conv.weight: file [32, 8, 1, 1] vs network [16384, 1024, 1, 1]" in message


def test_garbage_file_is_a_checkpoint_error_naming_it(tmp_path):
    (tmp_path / "SadTalker_V0.0.2_256.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "mapping_00229-model.pth.tar").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="SadTalker_V0.0.2_256.safetensors"):
        loading.load_renderer(str(tmp_path), 256)
    with pytest.raises(CheckpointError, match="mapping_00229-model.pth.tar"):
        loading.load_mapping(str(tmp_path), "crop")


def test_mapping_file_of_the_other_mode_is_reported_as_a_shape_mismatch(test_checkpoints_dir, tmp_path):
    shutil.copy(test_checkpoints_dir / "mapping_00109-model.pth.tar", tmp_path / "mapping_00229-model.pth.tar")
    with pytest.raises(CheckpointError, match=r"first.0.weight: file \[1024, 73, 7\] vs network \[1024, 70, 7\]"):
        loading.load_mapping(str(tmp_path), "crop")


def test_mapping_container_without_mapping_entry_is_rejected(tmp_path):
    torch.save({"generator": {}, "epoch": 1}, str(tmp_path / "mapping_00109-model.pth.tar"))
    with pytest.raises(CheckpointError, match=r"mapping_00109-model.pth.tar: expected a dict with entry 'mapping'"):
        loading.load_mapping(str(tmp_path), "full")


# ---- the generated official-layout files --------------------------------------------------------


@pytest.mark.parametrize("size", [256, 512])
def test_read_components_splits_the_file_into_the_five_components(test_checkpoints_dir, size):
    name = loading.sadtalker_file_name(size)
    parts = loading.read_components(str(test_checkpoints_dir / name))
    expected = manifest(name)["components"]
    assert set(parts) == set(loading.SADTALKER_COMPONENTS)
    assert {k: len(v) for k, v in parts.items()} == {k: v["tensor_count"] for k, v in expected.items()}
    assert "predictor.conv.weight" in parts["kp_extractor"]  # prefix stripped


def test_coefficient_state_dicts_have_the_manifest_keys_and_shapes(test_checkpoints_dir):
    tensors = manifest("SadTalker_V0.0.2_256.safetensors")["tensors"]
    parts = loading.read_coefficient_state_dicts(str(test_checkpoints_dir), 256)
    assert set(parts) == {"audio2exp", "audio2pose", "face_3drecon"}
    for component, state in parts.items():
        expected = {k[len(component) + 1 :]: v["shape"] for k, v in tensors.items() if k.startswith(component + ".")}
        assert {k: list(v.shape) for k, v in state.items()} == expected


@pytest.fixture(scope="module")
def renderer_256(test_checkpoints_dir):
    return loading.load_renderer(str(test_checkpoints_dir), 256)


def test_loaded_renderer_is_in_eval_mode_without_gradients(renderer_256):
    for module in (renderer_256.kp_extractor, renderer_256.generator):
        assert not module.training and all(not m.training for m in module.modules())
        assert all(not p.requires_grad for p in module.parameters())
    assert renderer_256.device == torch.device("cpu") and renderer_256.dtype == torch.float32


def test_loaded_renderer_holds_the_files_tensors_unchanged(renderer_256, test_checkpoints_dir):
    parts = loading.read_components(
        str(test_checkpoints_dir / "SadTalker_V0.0.2_256.safetensors"), ("kp_extractor", "generator")
    )
    for component, module in (("kp_extractor", renderer_256.kp_extractor), ("generator", renderer_256.generator)):
        state = module.state_dict()
        assert set(state) == set(parts[component])
        for key, value in parts[component].items():
            assert torch.equal(state[key], value), f"{component}.{key}"


def test_spectral_norm_conv_uses_weight_over_top_singular_value(renderer_256):
    conv = renderer_256.generator.decoder.G_middle_0.conv_0
    matrix = conv.weight_orig.double().reshape(conv.weight_orig.shape[0], -1)
    top = torch.linalg.svdvals(matrix)[0]
    assert torch.allclose(conv.weight().double(), conv.weight_orig.double() / top, rtol=1e-5, atol=0)


def test_load_in_float64_casts_floats_and_keeps_counters(test_checkpoints_dir):
    mapping = loading.load_mapping(str(test_checkpoints_dir), "full", "cpu", torch.float64)
    assert all(p.dtype == torch.float64 for p in mapping.parameters())
    assert mapping.first[0].weight.shape == (1024, 73, 7)
    raw = torch.load(str(test_checkpoints_dir / "mapping_00109-model.pth.tar"), weights_only=True)["mapping"]
    assert np.array_equal(mapping.fc_t.weight.numpy(), raw["fc_t.weight"].double().numpy())


@pytest.mark.slow
def test_512_renderer_loads_and_works_at_512(test_checkpoints_dir):
    # No golden frames exist at 512: this checks the loaded networks run at the 512 working resolution
    # (keypoints from a 128^2 map, a 16x128x128 feature volume) up to the decoder, which is convolutional.
    models = loading.load_renderer(str(test_checkpoints_dir), 512)
    image = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        kp = models.kp_extractor(image)
        feature = models.generator.encode(image)
        motion = models.generator.motion(feature, kp, kp + 0.01)
    assert kp.shape == (1, 15, 3) and bool((kp.abs() <= 1).all())
    assert feature.shape == (1, 32, 16, 128, 128)
    assert motion.deformation.shape == (1, 16, 128, 128, 3) and motion.occlusion.shape == (1, 1, 128, 128)
    assert bool(torch.isfinite(motion.deformation).all())


def test_retinaface_loads_without_torchvision_deprecation_warnings(test_checkpoints_dir):
    """facexlib builds its backbone with resnet50(pretrained=False); the loader builds the same network through
    torchvision's current API, and leaves torchvision as it found it."""
    import warnings

    import torchvision.models

    original = torchvision.models.resnet50
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = loading.load_retinaface(str(test_checkpoints_dir / loading.DETECTION_FILE), "cpu")
    assert [str(w.message) for w in caught if "torchvision" in w.filename] == []
    assert torchvision.models.resnet50 is original
    assert type(net.body["layer4"]).__name__ == "Sequential"  # the ResNet-50 backbone, loaded strictly


def test_the_resnet50_shim_refuses_a_download():
    import torchvision.models

    from sadtalker.core.compat import resnet50_current_api

    with resnet50_current_api(), pytest.raises(ValueError, match="would download"):
        torchvision.models.resnet50(pretrained=True)
