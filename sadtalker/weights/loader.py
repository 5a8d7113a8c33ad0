"""The one place that opens weight files: every network is built from its dims and loaded here, strictly.

Files (official names, looked up in the checkpoints folder):

- ``SadTalker_V0.0.2_256.safetensors`` / ``_512``: one flat safetensors dict whose keys are
  ``<component>.<state_dict key>`` for the five components in :data:`SADTALKER_COMPONENTS`.
- ``mapping_00229-model.pth.tar`` (crop/resize, 70 inputs) and ``mapping_00109-model.pth.tar``
  (full, 73 inputs): ``torch.save`` of ``{'mapping': state_dict, 'epoch': int}``, read with
  ``torch.load(..., weights_only=True)``.
- ``GFPGANv1.4.pth`` (entry ``params_ema``), ``detection_Resnet50_Final.pth`` (RetinaFace, a flat state dict) and
  ``alignment_WFLW_4HG.pth`` (AWing FAN, entry ``state_dict``), all read with ``weights_only=True``.
- ``FACE_DETECTOR=dlib``: dlib's 68-point predictor from the ``face-recognition-models`` package.

Every network is loaded with :func:`load_strict`: no key is renamed beyond the component prefix, and
a file that does not fit raises one :class:`~sadtalker.core.errors.CheckpointError` listing every missing
key, unexpected key and shape mismatch together with the file's name.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Tuple, TypeVar, Union

import torch
from torch import Tensor, nn

from sadtalker.core.constants import FACE_DETECTORS, SIZES, is_full
from sadtalker.core.errors import CheckpointError

if TYPE_CHECKING:  # the network modules are imported when a loader runs, not at import time
    from sadtalker.face.finders import FaceFinder
    from sadtalker.face.reconnet import ReconNet
    from sadtalker.motion.expnet import ExpNet
    from sadtalker.motion.posevae import PoseVAE
    from sadtalker.render.mapping import MappingNet
    from sadtalker.render.models import RendererModels

log = logging.getLogger(__name__)

SADTALKER_COMPONENTS = ("kp_extractor", "generator", "audio2exp", "audio2pose", "face_3drecon")
MAPPING_FILES = {"crop": "mapping_00229-model.pth.tar", "full": "mapping_00109-model.pth.tar"}
GFPGAN_FILE = "GFPGANv1.4.pth"
GFPGAN_ENTRY = "params_ema"  # the EMA weights, what GFPGANer loads
DETECTION_FILE = "detection_Resnet50_Final.pth"
ALIGNMENT_FILE = "alignment_WFLW_4HG.pth"
DLIB_PREDICTOR = "shape_predictor_68_face_landmarks.dat"
DOWNLOAD_HINT = "run scripts/download_models.sh to fetch the official weight files"


def sadtalker_file_name(size: int) -> str:
    """Official file name of the SadTalker weights for render ``size`` (256 or 512)."""
    if size not in SIZES:
        raise ValueError(f"render size must be one of {SIZES}, got {size!r}")
    return f"SadTalker_V0.0.2_{size}.safetensors"


def mapping_file_name(preprocess: str) -> str:
    """Official MappingNet file for a preprocess mode: 00109 (73 inputs) for full/extfull, else 00229."""
    return MAPPING_FILES["full" if is_full(preprocess) else "crop"]


def _require_file(path: str) -> None:
    if not os.path.isfile(path):
        raise CheckpointError(f"weight file not found: {path} ({DOWNLOAD_HINT})")


def read_components(path: str, components: Optional[Iterable[str]] = None) -> Dict[str, Dict[str, Tensor]]:
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


def read_torch_file(path: str) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU, with a CheckpointError naming the file."""
    _require_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, unpickling policy)
        name = os.path.basename(path)
        raise CheckpointError(f"cannot read {name} with torch.load(weights_only=True): {exc}") from exc


def read_torch_entry(path: str, entry: str) -> Dict[str, Tensor]:
    """``torch.load(path, weights_only=True)[entry]``, with a CheckpointError naming the file."""
    container = read_torch_file(path)
    if not isinstance(container, dict) or entry not in container:
        found = sorted(container) if isinstance(container, dict) else type(container).__name__
        raise CheckpointError(f"{os.path.basename(path)}: expected a dict with entry {entry!r}, found {found}")
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


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def load_strict(module: ModuleT, state_dict: Dict[str, Tensor], source: str, assign: bool = False) -> ModuleT:
    """Strict ``load_state_dict``; one CheckpointError lists every problem and names ``source``.

    ``assign=True`` adopts the given tensors instead of copying into the module's (use it for a
    module built on the ``meta`` device, which then needs no random initialisation).
    """
    problems = state_dict_problems(module, state_dict)
    if problems:
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: " + " | ".join(problems))
    module.load_state_dict(state_dict, strict=True, assign=assign)
    return module


def _finish(module: ModuleT, device: Union[str, torch.device], dtype: torch.dtype) -> ModuleT:
    module.requires_grad_(False)
    return module.eval().to(device=device, dtype=dtype)


def sadtalker_path(checkpoints_dir: str, size: int) -> str:
    return os.path.join(checkpoints_dir, sadtalker_file_name(size))


def load_renderer(
    checkpoints_dir: str, size: int, device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32
) -> "RendererModels":
    """Keypoint detector + generator from ``SadTalker_V0.0.2_<size>.safetensors``, strict, eval."""
    from sadtalker.render.dims import OFFICIAL
    from sadtalker.render.generator import OcclusionAwareSPADEGenerator
    from sadtalker.render.keypoints import KPDetector
    from sadtalker.render.models import RendererModels

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
    checkpoints_dir: str,
    preprocess: str,
    device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float32,
) -> "MappingNet":
    """MappingNet for ``preprocess`` (00229: 70 inputs; 00109 for full/extfull: 73), strict, eval."""
    from sadtalker.render.dims import OFFICIAL_MAPPING
    from sadtalker.render.mapping import MappingNet

    name = mapping_file_name(preprocess)
    state_dict = read_torch_entry(os.path.join(checkpoints_dir, name), "mapping")
    with torch.device("meta"):
        mapping = MappingNet(OFFICIAL_MAPPING["full" if is_full(preprocess) else "crop"])
    load_strict(mapping, state_dict, f"{name} [mapping]", assign=True)
    return _finish(mapping, device, dtype)


def read_coefficient_state_dicts(checkpoints_dir: str, size: int) -> Dict[str, Dict[str, Tensor]]:
    """State dicts of audio2exp, audio2pose and face_3drecon from the size's SadTalker file.

    The reference takes these three from the same file as the renderer (the one ``size`` picks),
    so a 512 job uses the 512 file's copies. CPU float32 tensors; build the networks, then
    :func:`load_strict` each with source ``"<file> [<component>]"``.
    """
    return read_components(sadtalker_path(checkpoints_dir, size), ("audio2exp", "audio2pose", "face_3drecon"))


def _ready(module: ModuleT, device: Union[str, torch.device]) -> ModuleT:
    return module.to(device).eval().requires_grad_(False)


def load_audio_models(
    audio2exp_state: Dict[str, Tensor],
    audio2pose_state: Dict[str, Tensor],
    source: str,
    device: Union[str, torch.device],
) -> "Tuple[ExpNet, PoseVAE]":
    """ExpNet and PoseVAE strictly loaded from their components (see :func:`read_coefficient_state_dicts`), eval."""
    from sadtalker.motion.expnet import ExpNet
    from sadtalker.motion.posevae import PoseVAE

    exp_net = load_strict(ExpNet(), audio2exp_state, f"{source} (audio2exp)")
    pose_vae = load_strict(PoseVAE(), audio2pose_state, f"{source} (audio2pose)")
    return _ready(exp_net, device), _ready(pose_vae, device)


def load_recon_net(state_dict: Dict[str, Tensor], source: str, device: Union[str, torch.device]) -> "ReconNet":
    """ReconNet strictly loaded from the ``face_3drecon`` component, eval."""
    from sadtalker.face.reconnet import ReconNet

    return _ready(load_strict(ReconNet(), state_dict, f"{source} (face_3drecon)"), device)


def load_gfpgan(
    checkpoints_dir: str,
    device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float32,
    dims=None,
    file_name: str = GFPGAN_FILE,
) -> nn.Module:
    """GFPGANv1Clean from ``checkpoints_dir/GFPGANv1.4.pth``: strict load of ``params_ema``, eval, on ``device``.

    Raises CheckpointError when the file is missing, unreadable, has no ``params_ema`` entry, or its keys/shapes do
    not fit ``dims`` (default: the official v1.4 arguments).
    """
    from sadtalker.enhance.gfpgan import OFFICIAL, build_gfpgan

    start = time.monotonic()
    state_dict = read_torch_entry(os.path.join(checkpoints_dir, file_name), GFPGAN_ENTRY)
    net = build_gfpgan(OFFICIAL if dims is None else dims, device="meta")  # every tensor comes from the file
    load_strict(net, state_dict, f"{file_name} [{GFPGAN_ENTRY}]", assign=True)
    net = _finish(net, device, dtype)
    log.info("loaded %s in %.2f s (%s, %s)", file_name, time.monotonic() - start, device, dtype)
    return net


RESTOREFORMER_FILE = "RestoreFormer.pth"


def load_restoreformer(
    checkpoints_dir: str,
    device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float32,
    args=None,
    file_name: str = RESTOREFORMER_FILE,
) -> Optional[nn.Module]:
    """RestoreFormer from ``checkpoints_dir/RestoreFormer.pth`` (``params_ema``, else ``params``, strict), or None
    when the file is absent (it is optional: no published hash). A present but broken file raises CheckpointError."""
    from sadtalker.enhance.restoreformer import OFFICIAL_ARGS, build_restoreformer

    path = os.path.join(checkpoints_dir, file_name)
    if not os.path.isfile(path):
        return None
    container = read_torch_file(path)
    entry = "params_ema" if isinstance(container, dict) and "params_ema" in container else "params"
    state_dict = read_torch_entry(path, entry)
    net = build_restoreformer(OFFICIAL_ARGS if args is None else args, device="meta")
    load_strict(net, state_dict, f"{file_name} [{entry}]", assign=True)
    return _finish(net, device, dtype)


def load_retinaface(path: str, device: Union[str, torch.device]) -> nn.Module:
    """facexlib RetinaFace-ResNet50 with the file's weights (a leading ``module.`` stripped), eval."""
    from sadtalker.core.compat import patch_torchvision, resnet50_current_api

    patch_torchvision()
    from facexlib.detection.retinaface import RetinaFace

    state = read_torch_file(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{os.path.basename(path)}: expected a state dict, found {type(state).__name__}")
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}
    with resnet50_current_api():  # facexlib's resnet50(pretrained=False) warns on every start
        net = RetinaFace(network_name="resnet50", half=False, device=torch.device("cpu"))
    load_strict(net, state, os.path.basename(path))
    net.device = torch.device(device)
    net.mean_tensor = net.mean_tensor.to(device)
    return _ready(net, device)


def load_fan(path: str, device: Union[str, torch.device]) -> nn.Module:
    """facexlib's AWing FAN (4 hourglasses, 98 points) with the file's ``state_dict`` entry, eval."""
    from sadtalker.core.compat import patch_torchvision

    patch_torchvision()
    from facexlib.alignment.awing_arch import FAN

    net = FAN(num_modules=4, num_landmarks=98, device=device)
    load_strict(net, read_torch_entry(path, "state_dict"), os.path.basename(path))
    return _ready(net, device)


def dlib_predictor_path() -> str:
    """The 68-point predictor inside ``face-recognition-models``, found without importing it
    (its ``__init__`` needs pkg_resources, which current setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("package face-recognition-models is not installed (needed by FACE_DETECTOR=dlib)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", DLIB_PREDICTOR)
    if not os.path.isfile(path):
        raise CheckpointError(f"dlib landmark model not found at {path}; reinstall face-recognition-models")
    return path


def load_face_finder(checkpoints_dir: str, detector: str, device: Union[str, torch.device]) -> "FaceFinder":
    """The face finder named by ``FACE_DETECTOR`` (``retinaface`` or ``dlib``), its weights loaded."""
    from sadtalker.face.finders import DlibFinder, RetinaFaceFinder

    if detector not in FACE_DETECTORS:
        raise ValueError(f"face detector must be one of {FACE_DETECTORS}, got {detector!r}")
    if detector == "dlib":
        import dlib

        return DlibFinder(dlib.get_frontal_face_detector(), dlib.shape_predictor(dlib_predictor_path()))
    retinaface = load_retinaface(os.path.join(checkpoints_dir, DETECTION_FILE), device)
    fan = load_fan(os.path.join(checkpoints_dir, ALIGNMENT_FILE), device)
    return RetinaFaceFinder(retinaface, fan, device)
