"""Every model a job needs, loaded and prepared once per worker (:func:`load_models`).

Loading goes through :mod:`sadtalker.weights.loader`. Then one named step per network attaches its inference
paths for its device (never per job): :func:`sadtalker.kernels.renderer.prepare_renderer` (in
:func:`load_size_models`) and :func:`sadtalker.kernels.enhancer.prepare_enhancer` (in :func:`load_enhancer`). Each
method they replace is listed in those modules' docstrings and in the docstring of the class that defines it.
``load_models(..., fast_paths=False)`` (``FAST_PATHS=false``) attaches none: the network classes run as written.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, Optional, Tuple

import torch

from sadtalker.core.constants import is_full
from sadtalker.core.errors import size_not_available
from sadtalker.core.jobtools import LRUCache
from sadtalker.enhance.stage import DEFAULT_BATCH, FaceEnhancer
from sadtalker.face.finders import FaceFinder
from sadtalker.kernels.allocator import reuse_freed_memory
from sadtalker.kernels.enhancer import (
    DEFAULT_ENHANCER_PATHS,
    EnhancerPaths,
    enhancer_forward,
    memory_format_for,
    prepare_enhancer,
)
from sadtalker.kernels.renderer import DEFAULT_RENDERER_PATHS, RendererPaths, prepare_renderer
from sadtalker.render.models import RendererModels
from sadtalker.weights import loader
from sadtalker.worker.settings import Settings
from sadtalker.worker.startup import unofficial_weights

if TYPE_CHECKING:  # the network modules are imported by the loaders when they run
    from sadtalker.face.reconnet import ReconNet
    from sadtalker.motion.expnet import ExpNet
    from sadtalker.motion.posevae import PoseVAE
    from sadtalker.render.mapping import MappingNet

log = logging.getLogger(__name__)


@dataclass
class SizeModels:
    """Everything that comes from one ``SadTalker_V0.0.2_<size>.safetensors`` file."""

    renderer: RendererModels
    recon_net: ReconNet
    audio2exp: ExpNet
    audio2pose: PoseVAE
    # Side of the renderer's input and output. Equals the job's size for the official networks;
    # plumbing tests use small networks on small images.
    image_size: int


@dataclass
class ModelBundle:
    """Every model a job needs, built once per worker by :func:`load_models`."""

    device: torch.device
    sizes: Dict[int, SizeModels]
    mappings: Dict[str, MappingNet]  # "crop" (70 inputs, crop/resize) and "full" (73 inputs)
    face_finder: FaceFinder
    enhancer: Optional[FaceEnhancer]  # None refuses enhancer="gfpgan"
    cache: LRUCache = field(default_factory=lambda: LRUCache(16))
    # RestoreFormer, only when its optional weights file is installed; None refuses enhancer="restoreformer".
    restoreformer: Optional[FaceEnhancer] = None
    # Loads a missing size on first use (the 512 set when LOAD_512=lazy); None = not available.
    load_size: Optional[Callable[[int], SizeModels]] = None
    # Weight files that are not the official ones (CHECK_WEIGHT_SIZES=false and their sizes differ, as with the
    # generated weights of `make demo`): results and face-detection failures say so.
    unofficial_weights: Tuple[str, ...] = ()
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def for_size(self, size: int) -> SizeModels:
        with self._lock:
            if size not in self.sizes:
                if self.load_size is None:
                    raise size_not_available(size, self.sizes)
                self.sizes[size] = self.load_size(size)
            return self.sizes[size]

    def mapping(self, preprocess: str) -> MappingNet:
        return self.mappings["full" if is_full(preprocess) else "crop"]


def pick_device(setting: str) -> torch.device:
    """``DEVICE`` -> a torch device: ``auto`` takes CUDA when there is one."""
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def enhancer_precision(settings: Settings, device: torch.device) -> str:
    """``ENHANCER_DTYPE``; ``auto`` is fp16 on CUDA and fp32 on CPU, whose fp16 arithmetic is emulated and slow."""
    if settings.enhancer_dtype != "auto":
        return settings.enhancer_dtype
    return "fp16" if device.type == "cuda" else "fp32"


def renderer_paths(settings: Settings, fast_paths: bool) -> RendererPaths:
    """The renderer's inference paths from the settings (``FAST_PATHS``, ``UPSAMPLED_CONVS_ON_CUDA``,
    ``TORCH_COMPILE``)."""
    return RendererPaths(
        fast=fast_paths,
        upsampled_convs_on_cuda=settings.upsampled_convs_on_cuda,
        compile_backend="inductor" if settings.torch_compile else None,
    )


def enhancer_paths(settings: Settings, fast_paths: bool) -> EnhancerPaths:
    """GFPGAN's inference paths from the settings (``FAST_PATHS``, ``ENHANCER_CHANNELS_LAST``)."""
    return EnhancerPaths(fast=fast_paths, channels_last_on_cuda=settings.enhancer_channels_last)


def load_size_models(
    checkpoints_dir: str, size: int, device: torch.device, paths: RendererPaths = DEFAULT_RENDERER_PATHS
) -> SizeModels:
    """The renderer and the three coefficient networks of one size, strictly loaded, eval, on ``device``.

    The renderer's inference paths (``paths``) are attached here, so no job pays for them.
    """
    renderer = loader.load_renderer(checkpoints_dir, size, device)
    prepare_renderer(renderer.generator, paths)
    states = loader.read_coefficient_state_dicts(checkpoints_dir, size)
    name = loader.sadtalker_file_name(size)
    audio2exp, audio2pose = loader.load_audio_models(states["audio2exp"], states["audio2pose"], name, device)
    recon_net = loader.load_recon_net(states["face_3drecon"], name, device)
    return SizeModels(renderer, recon_net, audio2exp, audio2pose, image_size=size)


def load_enhancer(
    checkpoints_dir: str,
    device="cpu",
    dtype: torch.dtype = torch.float32,
    dims=None,
    batch_size: int = DEFAULT_BATCH,
    file_name: str = loader.GFPGAN_FILE,
    precision: str = "fp32",
    paths: EnhancerPaths = DEFAULT_ENHANCER_PATHS,
) -> FaceEnhancer:
    """GFPGAN loaded (:func:`sadtalker.weights.loader.load_gfpgan`), its inference paths (``paths``) attached, as a
    :class:`~sadtalker.enhance.stage.FaceEnhancer` running in ``precision`` (see :mod:`sadtalker.core.precision`)."""
    net = prepare_enhancer(loader.load_gfpgan(checkpoints_dir, device, dtype, dims, file_name), paths)
    kwargs = {} if dims is None else {"dims": dims}
    return FaceEnhancer(
        net,
        batch_size=batch_size,
        precision=precision,
        forward=enhancer_forward(paths),
        memory_format=memory_format_for(torch.device(device), paths),
        **kwargs,
    )


def load_restoreformer_enhancer(checkpoints_dir: str, device="cpu", precision: str = "fp32") -> Optional[FaceEnhancer]:
    """RestoreFormer as a FaceEnhancer when ``RestoreFormer.pth`` is installed, else None (it is optional)."""
    from sadtalker.enhance.restoreformer import restoreformer_forward

    net = loader.load_restoreformer(checkpoints_dir, device)
    if net is None:
        log.info("RestoreFormer.pth not installed: enhancer=restoreformer is refused on this worker")
        return None
    return FaceEnhancer(net, precision=precision, forward=restoreformer_forward)


def load_models(settings: Settings, fast_paths: Optional[bool] = None) -> ModelBundle:
    """Build the worker's :class:`ModelBundle` from ``settings.checkpoints_dir`` (start-up, once).

    ``fast_paths``: attach the inference paths of :mod:`sadtalker.kernels`; None takes ``settings.fast_paths``
    (``FAST_PATHS``), False runs the network classes as written.
    """
    start = time.monotonic()
    if settings.reuse_freed_memory:  # before the first large tensor
        reuse_freed_memory()
    device = pick_device(settings.device)
    fast = settings.fast_paths if fast_paths is None else fast_paths
    size_paths = renderer_paths(settings, fast)

    def load_size(size: int) -> SizeModels:
        return load_size_models(settings.checkpoints_dir, size, device, size_paths)

    sizes = {256: load_size(256)}
    if settings.load_512 == "startup":
        sizes[512] = load_size(512)
    bundle = ModelBundle(
        device=device,
        sizes=sizes,
        mappings={p: loader.load_mapping(settings.checkpoints_dir, p, device) for p in ("crop", "full")},
        face_finder=loader.load_face_finder(settings.checkpoints_dir, settings.face_detector, device),
        enhancer=load_enhancer(
            settings.checkpoints_dir,
            device,
            precision=enhancer_precision(settings, device),
            paths=enhancer_paths(settings, fast),
        ),
        cache=LRUCache(settings.preprocess_cache_size),
        load_size=load_size,
        restoreformer=load_restoreformer_enhancer(
            settings.checkpoints_dir, device, precision=enhancer_precision(settings, device)
        ),
        unofficial_weights=() if settings.check_weight_sizes else unofficial_weights(settings),
    )
    log.info(
        "models loaded in %.2f s on %s (sizes %s, fast paths %s)",
        time.monotonic() - start,
        device,
        sorted(sizes),
        "on" if fast else "off",
    )
    return bundle
