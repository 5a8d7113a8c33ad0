"""The small test bundle, built in one place for the tests and for ``bench/`` (``--small``): the real coefficient
networks (strictly loaded from the generated official-format weights) and the configured face finder, with small
random renderer, mapping and GFPGAN networks of the official structure, so a few seconds of audio render in seconds
on a CPU. Also the test signals the pipeline tests share."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from sadtalker.bundle import ModelBundle, SizeModels, enhancer_paths, enhancer_precision, renderer_paths
from sadtalker.core.constants import SAMPLE_RATE
from sadtalker.core.jobtools import LRUCache
from sadtalker.enhance.gfpgan import EnhancerDims, build_gfpgan
from sadtalker.enhance.stage import FaceEnhancer
from sadtalker.kernels.enhancer import (
    DEFAULT_ENHANCER_PATHS,
    EnhancerPaths,
    enhancer_forward,
    memory_format_for,
    prepare_enhancer,
)
from sadtalker.kernels.renderer import DEFAULT_RENDERER_PATHS, RendererPaths, prepare_renderer
from sadtalker.render.dims import SMALL, SMALL_IMAGE_SIZE, SMALL_MAPPING
from sadtalker.render.models import RendererModels, build_mapping, build_renderer
from sadtalker.weights import loader
from sadtalker.worker.settings import Settings
from tests.support import REPO_ROOT

ASTRONAUT = REPO_ROOT / "tests" / "golden" / "scenario_a" / "input_image.png"
# The small GFPGAN: 64 px faces, a quarter of the channels (the small renderer's dims are sadtalker.render.dims.SMALL).
SMALL_GFPGAN = EnhancerDims(out_size=64, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.25)
SMALL_ENHANCER_BATCH = 4  # faces per small GFPGAN forward
# The tests' settings under any ``env`` given: dlib finds the faces (random RetinaFace weights find none); the
# preprocess cache keeps 4 photos, as the tests' bundle always has.
TEST_ENV = {"FACE_DETECTOR": "dlib", "PREPROCESS_CACHE_SIZE": "4"}


def astronaut() -> np.ndarray:
    return np.array(Image.open(ASTRONAUT).convert("RGB"))


def speech_like(seconds: float, quiet_at=(), seed: int = 0) -> np.ndarray:
    """A voiced signal with syllable-rate loudness changes and 0.3 s of near-silence at each ``quiet_at``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    voice = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (140, 280, 420, 1100))
    envelope = 0.35 + 0.3 * np.abs(np.sin(2 * np.pi * 2.7 * t))
    wav = 0.15 * voice * envelope + 0.01 * rng.standard_normal(t.size)
    for start in quiet_at:
        wav[int(start * SAMPLE_RATE) : int((start + 0.3) * SAMPLE_RATE)] *= 0.002
    return wav.astype(np.float32)


def wav_base64(seconds: float) -> str:
    """:func:`speech_like` as a base64 16-bit 16 kHz mono WAV, for a job's ``audio_base64``."""
    pcm = (np.clip(speech_like(seconds), -1, 1) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return base64.b64encode(buffer.getvalue()).decode()


def astronaut_base64() -> str:
    """The astronaut photo as a base64 PNG, for a job's ``image_base64``."""
    buffer = io.BytesIO()
    Image.fromarray(astronaut()).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def small_settings(checkpoints_dir: str, env: Mapping[str, str] | None = None) -> Settings:
    """The settings the small bundle is loaded and its jobs run under: ``env`` over :data:`TEST_ENV`, and
    ``checkpoints_dir`` over both (an environment's ``CHECKPOINTS_DIR``, as make exports it, must not win)."""
    return Settings.from_env({**TEST_ENV, **(env or {}), "CHECKPOINTS_DIR": checkpoints_dir})


def small_renderer(device: str | torch.device = "cpu", paths: RendererPaths = DEFAULT_RENDERER_PATHS) -> RendererModels:
    """The small renderer (``SMALL`` dims, seed 0) on ``device``, prepared as ``sadtalker.bundle`` prepares the
    real one (``paths``)."""
    renderer = build_renderer(SMALL, device=str(device), seed=0)
    prepare_renderer(renderer.generator, paths)
    return renderer


def small_enhancer(
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    batch_size: int = SMALL_ENHANCER_BATCH,
    paths: EnhancerPaths = DEFAULT_ENHANCER_PATHS,
) -> FaceEnhancer:
    """The small GFPGAN (:data:`SMALL_GFPGAN`, seed 1) on ``device``, prepared and laid out as ``load_enhancer``
    prepares the real one (``paths``), running in ``precision``."""
    device = torch.device(device)
    torch.manual_seed(1)
    net = prepare_enhancer(build_gfpgan(SMALL_GFPGAN, device).eval(), paths)
    return FaceEnhancer(
        net,
        SMALL_GFPGAN,
        batch_size=batch_size,
        precision=precision,
        memory_format=memory_format_for(device, paths),
        forward=enhancer_forward(paths),
    )


def small_size_models(
    checkpoints_dir: str, size: int, device: torch.device, paths: RendererPaths = DEFAULT_RENDERER_PATHS
) -> SizeModels:
    """The coefficient networks of ``size`` strictly loaded from ``checkpoints_dir``, with the small renderer."""
    states = loader.read_coefficient_state_dicts(checkpoints_dir, size)
    name = loader.sadtalker_file_name(size)
    audio2exp, audio2pose = loader.load_audio_models(states["audio2exp"], states["audio2pose"], name, device)
    recon_net = loader.load_recon_net(states["face_3drecon"], name, device)
    return SizeModels(small_renderer(device, paths), recon_net, audio2exp, audio2pose, image_size=SMALL_IMAGE_SIZE)


def small_bundle(
    checkpoints_dir: str,
    env: Mapping[str, str] | None = None,
    sizes: Sequence[int] = (256,),
    device: str | torch.device = "cpu",
) -> ModelBundle:
    """A :class:`~sadtalker.bundle.ModelBundle` of the real coefficient networks and face finder with the small
    renderer, mappings (seed 2) and GFPGAN, all on ``device`` (the tests: the CPU, whatever ``DEVICE`` says).

    ``env``: settings (:func:`small_settings`); ``FACE_DETECTOR``, ``ENHANCER_DTYPE``, ``PREPROCESS_CACHE_SIZE`` and
    ``FAST_PATHS`` apply to the small networks as to the real ones. ``sizes``: the job sizes loaded (each renders
    32 px frames).
    """
    device = torch.device(device)
    settings = small_settings(checkpoints_dir, env)
    paths = renderer_paths(settings, settings.fast_paths)
    return ModelBundle(
        device=device,
        sizes={size: small_size_models(settings.checkpoints_dir, size, device, paths) for size in sizes},
        mappings={name: build_mapping(dims, device=str(device), seed=2) for name, dims in SMALL_MAPPING.items()},
        face_finder=loader.load_face_finder(settings.checkpoints_dir, settings.face_detector, device),
        enhancer=small_enhancer(
            device, enhancer_precision(settings, device), paths=enhancer_paths(settings, settings.fast_paths)
        ),
        cache=LRUCache(settings.preprocess_cache_size),
    )
