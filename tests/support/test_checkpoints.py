"""tests/support/checkpoints.py: official containers and key layouts, the golden recipe bit for bit."""

from __future__ import annotations

import logging
import math
import zlib

import numpy as np
import pytest
import torch
from safetensors import safe_open

from sadtalker.render.blocks import anti_alias_kernel

PICKLED = [
    "mapping_00229-model.pth.tar",
    "mapping_00109-model.pth.tar",
    "GFPGANv1.4.pth",
    "detection_Resnet50_Final.pth",
    "alignment_WFLW_4HG.pth",
]
SAFETENSORS = ["SadTalker_V0.0.2_256.safetensors", "SadTalker_V0.0.2_512.safetensors"]


def read_back(directory, name):
    """{manifest key: tensor} from a written file, read the way the official loaders read it."""
    path = str(directory / name)
    if name.endswith(".safetensors"):
        with safe_open(path, framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, None
    container = torch.load(path, map_location="cpu", weights_only=True)
    if all(isinstance(v, torch.Tensor) for v in container.values()):
        return dict(container), container
    flat = {f"{entry}/{k}": v for entry, sd in container.items() if isinstance(sd, dict) for k, v in sd.items()}
    return flat, container


def recipe_draw(file, key, shape):
    """The golden README's rule for an ordinary >= 2-D float tensor, written out independently."""
    rs = np.random.RandomState(zlib.crc32(f"{file}:{key}".encode()))
    gain = 0.05 if key.startswith(("mapping/fc_exp.", "mapping/fc_t.")) else 1.0
    return ((rs.normal(0, 1, shape) * math.sqrt(1 / np.prod(shape[1:]))) * gain).astype(np.float32)


def test_worker_files_are_the_seven_files_the_worker_loads(checkpoint_writer):
    assert sorted(checkpoint_writer.WORKER_FILES) == sorted(SAFETENSORS + PICKLED)


@pytest.mark.parametrize("name", SAFETENSORS + PICKLED)
def test_written_file_has_exactly_the_manifest_keys_shapes_and_dtypes(test_checkpoints_dir, checkpoint_writer, name):
    expected = checkpoint_writer.load_manifest(name)["tensors"]
    tensors, _ = read_back(test_checkpoints_dir, name)
    assert set(tensors) == set(expected) and len(tensors) == len(expected)
    for key, spec in expected.items():
        assert list(tensors[key].shape) == spec["shape"], key
        assert str(tensors[key].dtype) == f"torch.{spec['dtype']}", key


@pytest.mark.parametrize(
    "name, entries",
    [
        ("mapping_00229-model.pth.tar", {"mapping": dict, "epoch": 229}),
        ("mapping_00109-model.pth.tar", {"mapping": dict, "epoch": 109}),
        ("GFPGANv1.4.pth", {"params_ema": dict}),
        ("alignment_WFLW_4HG.pth", {"state_dict": dict}),
    ],
)
def test_pickled_containers_have_the_official_top_level_entries(test_checkpoints_dir, name, entries):
    _, container = read_back(test_checkpoints_dir, name)
    assert set(container) == set(entries)
    for key, kind in entries.items():
        assert isinstance(container[key], kind) if isinstance(kind, type) else container[key] == kind


@pytest.mark.parametrize("name", ["detection_Resnet50_Final.pth"])
def test_flat_pickles_are_plain_state_dicts(test_checkpoints_dir, name):
    _, container = read_back(test_checkpoints_dir, name)
    assert all(isinstance(v, torch.Tensor) for v in container.values())


@pytest.mark.parametrize(
    "name, key",
    [
        ("SadTalker_V0.0.2_256.safetensors", "generator.first.conv.weight"),
        ("SadTalker_V0.0.2_512.safetensors", "generator.first.conv.weight"),
        ("SadTalker_V0.0.2_256.safetensors", "audio2exp.audio_encoder.0.conv_block.0.weight"),
        ("mapping_00229-model.pth.tar", "mapping/fc_exp.weight"),
        ("mapping_00109-model.pth.tar", "mapping/first.0.weight"),
        ("GFPGANv1.4.pth", "params_ema/conv_body_first.weight"),
    ],
)
def test_weights_follow_the_recipe_bit_for_bit(test_checkpoints_dir, checkpoint_writer, name, key):
    manifest = checkpoint_writer.load_manifest(name)["tensors"]
    if key not in manifest:
        pytest.fail(f"{key} is not in the {name} manifest")
    tensors, _ = read_back(test_checkpoints_dir, name)
    expected = recipe_draw(name, key, tuple(manifest[key]["shape"]))
    assert np.array_equal(tensors[key].numpy().view(np.uint32), expected.view(np.uint32))


def test_one_dimensional_rules_batchnorm_statistics_and_counters(test_checkpoints_dir):
    tensors, _ = read_back(test_checkpoints_dir, "SadTalker_V0.0.2_256.safetensors")
    prefix = "generator.first.norm."
    rs = np.random.RandomState(zlib.crc32(f"SadTalker_V0.0.2_256.safetensors:{prefix}weight".encode()))
    assert np.array_equal(tensors[prefix + "weight"].numpy(), (1 + rs.normal(0, 0.1, 64)).astype(np.float32))
    rs = np.random.RandomState(zlib.crc32(f"SadTalker_V0.0.2_256.safetensors:{prefix}running_var".encode()))
    assert np.array_equal(tensors[prefix + "running_var"].numpy(), rs.uniform(0.5, 1.5, 64).astype(np.float32))
    assert tensors[prefix + "num_batches_tracked"].shape == () and int(tensors[prefix + "num_batches_tracked"]) == 0


def test_the_two_sizes_get_different_values_from_their_file_names(test_checkpoints_dir):
    keys = ["generator.second.weight"]
    a, _ = read_back(test_checkpoints_dir, "SadTalker_V0.0.2_256.safetensors")
    b, _ = read_back(test_checkpoints_dir, "SadTalker_V0.0.2_512.safetensors")
    assert not torch.equal(a[keys[0]], b[keys[0]])


def test_spectral_norm_vectors_are_the_top_singular_pair(test_checkpoints_dir):
    tensors, _ = read_back(test_checkpoints_dir, "SadTalker_V0.0.2_256.safetensors")
    stem = "generator.decoder.up_0.conv_s.weight"
    w = tensors[stem + "_orig"].double().reshape(256, -1)
    u, v = tensors[stem + "_u"].double(), tensors[stem + "_v"].double()
    top = torch.linalg.svdvals(w)[0]
    assert torch.isclose(u @ w @ v, top, rtol=1e-6)
    assert abs(u.norm() - 1) < 1e-6 and abs(v.norm() - 1) < 1e-6
    assert u[u.abs().argmax()] > 0


def test_anti_alias_kernel_equals_the_keypoint_detectors_own_buffer(test_checkpoints_dir):
    tensors, _ = read_back(test_checkpoints_dir, "SadTalker_V0.0.2_512.safetensors")
    stored = tensors["kp_extractor.down.weight"]
    assert torch.equal(stored, anti_alias_kernel(3, 0.25))
    assert stored.shape == (3, 1, 13, 13) and abs(float(stored[0].sum()) - 1) < 1e-6


def test_writing_twice_gives_identical_tensors_and_a_short_log(checkpoint_writer, tmp_path, caplog):
    name = "mapping_00109-model.pth.tar"
    with caplog.at_level(logging.INFO, logger="make_test_checkpoints"):
        assert checkpoint_writer.main([str(tmp_path / "a"), name]) == 0
    checkpoint_writer.write_file(name, str(tmp_path / "b"))
    first, _ = read_back(tmp_path / "a", name)
    second, _ = read_back(tmp_path / "b", name)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [name]  # no leftover .part file
    assert any(name in r.getMessage() for r in caplog.records) and len(caplog.records) <= 3


def test_every_written_file_gets_the_same_mode_as_any_new_file(test_checkpoints_dir, checkpoint_writer):
    """safetensors creates its file 0600; the writer gives it the mode open() would (0644 under umask 022)."""
    import os
    import stat

    mask = os.umask(0o022)
    os.umask(mask)
    names = checkpoint_writer.WORKER_FILES
    modes = {name: stat.S_IMODE((test_checkpoints_dir / name).stat().st_mode) for name in names}
    assert set(modes.values()) == {0o666 & ~mask}, modes
