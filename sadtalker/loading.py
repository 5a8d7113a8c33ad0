"""The one loader for SadTalker's weight files, strict and unchanged.

Files (official names, looked up in the checkpoints folder):

- ``SadTalker_V0.0.2_256.safetensors`` / ``_512``: one flat safetensors dict whose keys are
  ``<component>.<state_dict key>`` for the five components in :data:`SADTALKER_COMPONENTS`.
- ``mapping_00229-model.pth.tar`` (crop/resize, 70 inputs) and ``mapping_00109-model.pth.tar``
  (full, 73 inputs): ``torch.save`` of ``{'mapping': state_dict, 'epoch': int}``, read with
  ``torch.load(..., weights_only=True)``.

Every network is loaded with :func:`load_strict`: no key is renamed beyond the component prefix, and
a file that does not fit raises one :class:`~sadtalker.errors.CheckpointError` listing every missing
key, unexpected key and shape mismatch together with the file's name.
"""
from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Union

import torch
from torch import Tensor, nn

from sadtalker.errors import CheckpointError

if TYPE_CHECKING:  # the network modules are imported when a loader runs, not at import time
    from sadtalker.renderer.mapping import MappingNet
    from sadtalker.renderer.models import RendererModels

log = logging.getLogger(__name__)

SADTALKER_COMPONENTS = ("kp_extractor", "generator", "audio2exp", "audio2pose", "face_3drecon")
RENDER_SIZES = (256, 512)
MAPPING_FILES = {"crop": "mapping_00229-model.pth.tar", "full": "mapping_00109-model.pth.tar"}
DOWNLOAD_HINT = "run scripts/download_models.sh to fetch the official weight files"


def sadtalker_file_name(size: int) -> str:
    """Official file name of the SadTalker weights for render ``size`` (256 or 512)."""
    if size not in RENDER_SIZES:
        raise ValueError(f"render size must be one of {RENDER_SIZES}, got {size!r}")
    return f"SadTalker_V0.0.2_{size}.safetensors"


def mapping_file_name(preprocess: str) -> str:
    """Official MappingNet file for a preprocess mode: 00109 (73 inputs) for full/extfull, else 00229."""
    return MAPPING_FILES["full" if "full" in preprocess.lower() else "crop"]


def _require_file(path: str) -> None:
    if not os.path.isfile(path):
        raise CheckpointError(f"weight file not found: {path} ({DOWNLOAD_HINT})")


def read_components(
    path: str, components: Optional[Iterable[str]] = None
) -> Dict[str, Dict[str, Tensor]]:
    """Split a SadTalker safetensors file by component prefix, prefix stripped.

    Returns ``{component: state_dict}`` for each of :data:`SADTALKER_COMPONENTS` (or only those in
    ``components``); a component the file lacks maps to an empty dict, so :func:`load_strict` then
    reports its keys as missing. Keys whose prefix is no component are returned under their own
    first dotted segment. Tensors stay on the CPU in the file's dtype.
    """
    from safetensors import SafetensorError, safe_open

    _require_file(path)
    wanted = tuple(SADTALKER_COMPONENTS if components is None else components)
    parts: Dict[str, Dict[str, Tensor]] = {name: {} for name in wanted}
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            for key in f.keys():
                prefix, _, rest = key.partition(".")
                if components is None or prefix in wanted:
                    parts.setdefault(prefix, {})[rest] = f.get_tensor(key)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read {os.path.basename(path)} as safetensors: {exc}") from exc
    return parts


def read_torch_entry(path: str, entry: str) -> Dict[str, Tensor]:
    """``torch.load(path, weights_only=True)[entry]``, with a CheckpointError naming the file."""
    _require_file(path)
    name = os.path.basename(path)
    try:
        container = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, unpickling policy)
        raise CheckpointError(f"cannot read {name} with torch.load(weights_only=True): {exc}") from exc
    if not isinstance(container, dict) or entry not in container:
        found = sorted(container) if isinstance(container, dict) else type(container).__name__
        raise CheckpointError(f"{name}: expected a dict with entry {entry!r}, found {found}")
    return container[entry]


def state_dict_problems(module: nn.Module, state_dict: Dict[str, Tensor]) -> List[str]:
    """Every missing key, unexpected key and shape mismatch between ``state_dict`` and ``module``."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: file {list(state_dict[k].shape)} vs network {list(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): " + ", ".join(missing))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): " + ", ".join(unexpected))
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): " + "; ".join(mismatched))
    return problems


def load_strict(
    module: nn.Module, state_dict: Dict[str, Tensor], source: str, assign: bool = False
) -> nn.Module:
    """Strict ``load_state_dict``; one CheckpointError lists every problem and names ``source``.

    ``assign=True`` adopts the given tensors instead of copying into the module's (use it for a
    module built on the ``meta`` device, which then needs no random initialisation).
    """
    problems = state_dict_problems(module, state_dict)
    if problems:
        raise CheckpointError(
            f"{source} does not fit {type(module).__name__}: " + " | ".join(problems)
        )
    module.load_state_dict(state_dict, strict=True, assign=assign)
    return module


def _finish(module: nn.Module, device: Union[str, torch.device], dtype: torch.dtype) -> nn.Module:
    module.requires_grad_(False)
    return module.eval().to(device=device, dtype=dtype)


def sadtalker_path(checkpoints_dir: str, size: int) -> str:
    return os.path.join(checkpoints_dir, sadtalker_file_name(size))


def load_renderer(
    checkpoints_dir: str, size: int, device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32
) -> "RendererModels":
    """Keypoint detector + generator from ``SadTalker_V0.0.2_<size>.safetensors``, strict, eval."""
    from sadtalker.renderer.dims import OFFICIAL
    from sadtalker.renderer.generator import OcclusionAwareSPADEGenerator
    from sadtalker.renderer.keypoints import KPDetector
    from sadtalker.renderer.models import RendererModels

    start = time.monotonic()
    path = sadtalker_path(checkpoints_dir, size)
    name = os.path.basename(path)
    parts = read_components(path, ("kp_extractor", "generator"))
    with torch.device("meta"):  # no random init: every tensor comes from the file
        kp_extractor = KPDetector(OFFICIAL.keypoints)
        generator = OcclusionAwareSPADEGenerator(OFFICIAL.generator)
    problems = []
    for component, module in (("kp_extractor", kp_extractor), ("generator", generator)):
        found = state_dict_problems(module, parts[component])
        if found:
            problems.append(f"[{component}] " + " | ".join(found))
    if problems:  # one error for both components
        raise CheckpointError(f"{name} does not fit the face renderer: " + " ".join(problems))
    load_strict(kp_extractor, parts["kp_extractor"], f"{name} [kp_extractor]", assign=True)
    load_strict(generator, parts["generator"], f"{name} [generator]", assign=True)
    models = RendererModels(_finish(kp_extractor, device, dtype), _finish(generator, device, dtype))
    log.info("loaded %s renderer in %.2f s (%s, %s)", name, time.monotonic() - start, device, dtype)
    return models


def load_mapping(
    checkpoints_dir: str, preprocess: str, device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float32,
) -> "MappingNet":
    """MappingNet for ``preprocess`` (00229: 70 inputs; 00109 for full/extfull: 73), strict, eval."""
    from sadtalker.renderer.dims import OFFICIAL_MAPPING
    from sadtalker.renderer.mapping import MappingNet

    name = mapping_file_name(preprocess)
    state_dict = read_torch_entry(os.path.join(checkpoints_dir, name), "mapping")
    with torch.device("meta"):
        mapping = MappingNet(OFFICIAL_MAPPING["full" if "full" in preprocess.lower() else "crop"])
    load_strict(mapping, state_dict, f"{name} [mapping]", assign=True)
    return _finish(mapping, device, dtype)


def read_coefficient_state_dicts(checkpoints_dir: str, size: int) -> Dict[str, Dict[str, Tensor]]:
    """State dicts of audio2exp, audio2pose and face_3drecon from the size's SadTalker file.

    The reference takes these three from the same file as the renderer (the one ``size`` picks),
    so a 512 job uses the 512 file's copies. CPU float32 tensors; build the networks, then
    :func:`load_strict` each with source ``"<file> [<component>]"``.
    """
    return read_components(sadtalker_path(checkpoints_dir, size), ("audio2exp", "audio2pose", "face_3drecon"))
