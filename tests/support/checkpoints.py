"""Write deterministic stand-ins for every weight file the worker loads.

Usage: ``python -m tests.support.checkpoints DIR [FILE ...]`` (from the repository root)

Each file gets exactly the keys, shapes, dtypes and container of its manifest in
``tests/support/checkpoint_manifests/`` (the official layout, so the production loader reads it as it
reads the real file), filled by the golden vectors' recipe, bit for bit:

- the draw for manifest key ``k`` of file ``f`` comes from
  ``numpy.random.RandomState(zlib.crc32(f"{f}:{k}"))``;
- int64 (``num_batches_tracked``) -> zeros; ``running_var`` -> uniform(0.5, 1.5);
  ``running_mean`` -> normal(0, 0.1); other 1-D ``*weight`` -> 1 + normal(0, 0.1); other 1-D -> normal(0, 0.1);
  >= 2-D -> normal(0, 1) * sqrt(1 / fan_in) * gain, gain 0.05 for the mapping nets' ``fc_exp`` / ``fc_t``;
- ``kp_extractor.down.weight`` is the keypoint detector's fixed anti-alias Gaussian (13x13, sigma 1.5);
- spectral-norm ``weight_u`` / ``weight_v`` are the top singular vectors of ``weight_orig`` (sign fixed so
  the largest-magnitude entry of u is positive);
- arithmetic in float64, stored as float32.

Importable: :func:`write_file` and :func:`write_all` are what the test fixtures call.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

log = logging.getLogger("make_test_checkpoints")

MANIFEST_DIR = Path(__file__).resolve().parent / "checkpoint_manifests"

# Every file the worker reads (the renderer's four, the face finder's two, the enhancer's one).
WORKER_FILES = (
    "SadTalker_V0.0.2_256.safetensors",
    "SadTalker_V0.0.2_512.safetensors",
    "mapping_00229-model.pth.tar",
    "mapping_00109-model.pth.tar",
    "GFPGANv1.4.pth",
    "detection_Resnet50_Final.pth",
    "alignment_WFLW_4HG.pth",
)

ANTI_ALIAS_KEY = "kp_extractor.down.weight"
SMALL_GAIN_PREFIXES = ("mapping/fc_exp.", "mapping/fc_t.")
SMALL_GAIN = 0.05


def load_manifest(name: str) -> dict:
    """The manifest of weight file ``name`` (keys, shapes, dtypes, container)."""
    with open(MANIFEST_DIR / f"{name}.json", encoding="utf-8") as f:
        return json.load(f)


def anti_alias_kernel() -> np.ndarray:
    """The keypoint detector's fixed Gaussian (3, 1, 13, 13) float32 (scale 0.25), taken from the network's own
    constructor so the stored bits are exactly the buffer the reference builds."""
    from sadtalker.render.blocks import anti_alias_kernel as network_kernel

    return network_kernel(3, 0.25).numpy()


def draw(file: str, key: str, shape: Tuple[int, ...], dtype: str) -> np.ndarray:
    """One tensor by the recipe (not for spectral-norm u/v or the anti-alias kernel)."""
    if dtype == "int64":
        return np.zeros(shape, dtype=np.int64)
    rs = np.random.RandomState(zlib.crc32(f"{file}:{key}".encode()))
    if key.endswith("running_var"):
        value = rs.uniform(0.5, 1.5, shape)
    elif key.endswith("running_mean"):
        value = rs.normal(0.0, 0.1, shape)
    elif len(shape) == 0:
        value = np.asarray(rs.normal(0.0, 1.0))
    elif len(shape) == 1:
        value = rs.normal(0.0, 0.1, shape)
        if key.endswith("weight"):
            value = 1.0 + value
    else:
        gain = SMALL_GAIN if key.startswith(SMALL_GAIN_PREFIXES) else 1.0
        value = (rs.normal(0.0, 1.0, shape) * math.sqrt(1.0 / math.prod(shape[1:]))) * gain
    return value.astype(np.float32)


def spectral_vectors(weight_orig: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Top left/right singular vectors (u, v) of the float32 weight as float64, stored as float32."""
    matrix = weight_orig.astype(np.float64).reshape(weight_orig.shape[0], -1)
    left, _, right_t = np.linalg.svd(matrix, full_matrices=False)
    u, v = left[:, 0], right_t[0]
    if u[np.argmax(np.abs(u))] < 0:
        u, v = -u, -v
    return u.astype(np.float32), v.astype(np.float32)


def build_tensors(file: str, manifest: dict) -> "OrderedDict[str, np.ndarray]":
    """All tensors of one file, keyed by manifest key, in manifest order."""
    out: "OrderedDict[str, np.ndarray]" = OrderedDict()
    vectors: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    for key, spec in manifest["tensors"].items():
        shape = tuple(spec["shape"])
        if key == ANTI_ALIAS_KEY:
            value = anti_alias_kernel()
        elif key.endswith(("weight_u", "weight_v")):
            stem = key[: -len("_u")]
            if stem not in vectors:
                orig = out.get(stem + "_orig")
                if orig is None:
                    orig = draw(file, stem + "_orig", tuple(manifest["tensors"][stem + "_orig"]["shape"]), "float32")
                vectors[stem] = spectral_vectors(orig)
            value = vectors[stem][0 if key.endswith("_u") else 1]
        else:
            value = draw(file, key, shape, spec["dtype"])
        value = np.require(value, requirements="C")  # (np.ascontiguousarray would make a scalar 1-D)
        if value.shape != shape:
            raise ValueError(f"{file}:{key}: built {value.shape}, manifest says {shape}")
        out[key] = value
    return out


def _epoch_from_name(file: str) -> int:
    match = re.search(r"_(\d+)-model", file)
    if match is None:
        raise ValueError(f"{file}: no epoch number in the file name")
    return int(match.group(1))


def _container(file: str, manifest: dict, tensors: "OrderedDict[str, np.ndarray]") -> object:
    """The pickled object: a flat state dict, or ``{entry: state dict, ['epoch': int]}``."""
    import torch

    top = manifest["top_level_keys"]
    as_torch = OrderedDict((k, torch.from_numpy(v)) for k, v in tensors.items())
    if not isinstance(top, dict):  # flat state dict
        return as_torch
    container: Dict[str, Any] = {}  # entry -> OrderedDict of tensors, or "epoch" -> int
    for key, value in as_torch.items():
        entry, sep, rest = key.partition("/")
        if not sep or entry not in top:
            raise ValueError(f"{file}: key {key!r} has no container entry prefix")
        container.setdefault(entry, OrderedDict())[rest] = value
    if "epoch" in top:
        container["epoch"] = _epoch_from_name(file)
    return container


def write_file(name: str, directory: str) -> str:
    """Write weight file ``name`` into ``directory`` (atomically) and return its path."""
    manifest = load_manifest(name)
    tensors = build_tensors(name, manifest)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    part = path + ".part"
    if manifest["container"] == "safetensors":
        from safetensors.numpy import save_file

        save_file(dict(tensors), part)
    else:
        import torch

        torch.save(_container(name, manifest, tensors), part)
    os.chmod(part, 0o666 & ~_umask())  # safetensors creates its file 0600; torch.save, like open(), honours umask
    os.replace(part, path)
    return path


def _umask() -> int:
    """The process's file creation mask (reading it means setting it; set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_all(directory: str, names: Optional[Sequence[str]] = None) -> List[str]:
    """Write every worker weight file (or ``names``) into ``directory``; returns the paths."""
    paths = []
    for name in WORKER_FILES if names is None else names:
        start = time.monotonic()
        paths.append(write_file(name, directory))
        log.info("wrote %s (%.1f MB) in %.1f s", name, os.path.getsize(paths[-1]) / 1e6, time.monotonic() - start)
    return paths


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="output folder (created if missing)")
    parser.add_argument("files", nargs="*", help=f"file names (default: all of {', '.join(WORKER_FILES)})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.monotonic()
    paths = write_all(args.directory, args.files or None)
    log.info("%d files in %s (%.1f s)", len(paths), args.directory, time.monotonic() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
