"""A ModelBundle for plumbing tests: the real coefficient networks (strictly loaded from the generated
official-format weights) and dlib faces, with small random renderer and GFPGAN networks, so a few seconds of audio
render in seconds on a CPU. Also the test signals the pipeline tests share."""
from __future__ import annotations

import base64
import io
import wave
from typing import Mapping, Optional

import numpy as np
import torch
from PIL import Image

from sadtalker.bundle import ModelBundle, SizeModels
from sadtalker.core.constants import SAMPLE_RATE
from sadtalker.core.jobtools import LRUCache
from sadtalker.enhance.gfpgan import EnhancerDims, build_gfpgan
from sadtalker.enhance.stage import FaceEnhancer
from sadtalker.kernels.enhancer import prepare_enhancer
from sadtalker.kernels.renderer import prepare_renderer
from sadtalker.render.dims import SMALL, SMALL_IMAGE_SIZE, SMALL_MAPPING
from sadtalker.render.models import build_mapping, build_renderer
from sadtalker.weights.loader import (
    load_audio_models, load_face_finder, load_recon_net, read_coefficient_state_dicts,
)
from sadtalker.worker.settings import Settings
from tests.support import REPO_ROOT

ASTRONAUT = REPO_ROOT / "tests" / "golden" / "scenario_a" / "input_image.png"
SMALL_GFPGAN = EnhancerDims(out_size=64, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.25)


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


def small_bundle(checkpoints_dir: str, env: Optional[Mapping[str, str]] = None) -> ModelBundle:
    """Real coefficient networks and dlib, small renderer and GFPGAN (random weights, fixed seeds), prepared as
    ``sadtalker.bundle`` prepares the real ones. ``env``: more settings (``Settings.from_env``)."""
    cpu = torch.device("cpu")
    states = read_coefficient_state_dicts(checkpoints_dir, 256)
    audio2exp, audio2pose = load_audio_models(states["audio2exp"], states["audio2pose"], "test 256", cpu)
    recon_net = load_recon_net(states["face_3drecon"], "test 256", cpu)
    renderer = build_renderer(SMALL, seed=0)
    prepare_renderer(renderer.generator)
    size_models = SizeModels(renderer, recon_net, audio2exp, audio2pose, SMALL_IMAGE_SIZE)
    torch.manual_seed(1)
    enhancer = FaceEnhancer(prepare_enhancer(build_gfpgan(SMALL_GFPGAN).eval()), SMALL_GFPGAN, batch_size=4)
    settings = Settings.from_env({"FACE_DETECTOR": "dlib", "CHECKPOINTS_DIR": checkpoints_dir, **(env or {})})
    return ModelBundle(
        settings=settings, device=cpu, sizes={256: size_models},
        mappings={name: build_mapping(dims, seed=2) for name, dims in SMALL_MAPPING.items()},
        face_finder=load_face_finder(checkpoints_dir, "dlib", cpu), enhancer=enhancer, cache=LRUCache(4),
    )
