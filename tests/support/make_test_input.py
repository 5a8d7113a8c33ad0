"""Rebuild ``assets/astronaut.jpg``, ``assets/speech.wav`` and ``test_input.json`` (the job ``python handler.py`` runs).

Image: scikit-image's bundled ``astronaut`` (Eileen Collins, NASA photograph, public domain), saved as a 512x512
JPEG. Speech: a sentence synthesised with Debian's ``espeak-ng`` (GPL-3 program; the sound it outputs is ours),
converted by ffmpeg to 16 kHz mono 16-bit WAV. Both files go into ``test_input.json`` as base64, so the job
needs no network. Needs ``espeak-ng`` and ``ffmpeg`` on PATH (``apt-get install espeak-ng ffmpeg``).

    .venv/bin/python -m tests.support.make_test_input
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image
from skimage import data

from tests.support import REPO_ROOT

IMAGE_PATH = REPO_ROOT / "assets" / "astronaut.jpg"
SPEECH_PATH = REPO_ROOT / "assets" / "speech.wav"
JOB_PATH = REPO_ROOT / "test_input.json"
SENTENCE = "Hello. I am a talking face, made from one photo."
JPEG_QUALITY = 85
# Options of the smoke job: defaults, plus a seed so two runs give the same video.
JOB_OPTIONS = {"size": 256, "preprocess": "crop", "enhancer": "gfpgan", "seed": 42}

logger = logging.getLogger("make_test_input")


def write_image(path: Path) -> None:
    """scikit-image's astronaut, 512x512 RGB, as a JPEG."""
    Image.fromarray(data.astronaut()).save(path, format="JPEG", quality=JPEG_QUALITY, optimize=True)


def write_speech(path: Path) -> None:
    """The sentence spoken by espeak-ng, as 16 kHz mono 16-bit PCM WAV."""
    espeak, ffmpeg = shutil.which("espeak-ng"), shutil.which("ffmpeg")
    if not espeak or not ffmpeg:
        raise SystemExit("needs espeak-ng and ffmpeg on PATH: apt-get install -y espeak-ng ffmpeg")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech-22k.wav"
        subprocess.run([espeak, "-v", "en-us", "-s", "165", "-w", str(raw), SENTENCE], check=True)
        subprocess.run(
            [
                ffmpeg,
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(raw),
                "-ac",
                "1",
                "-ar",
                "16000",
                "-c:a",
                "pcm_s16le",
                "-fflags",
                "+bitexact",
                "-map_metadata",
                "-1",
                str(path),
            ],
            check=True,
        )


def write_job(path: Path) -> None:
    """test_input.json: the two files inline as base64 plus :data:`JOB_OPTIONS`."""
    job = {
        "input": {
            "image_base64": base64.b64encode(IMAGE_PATH.read_bytes()).decode("ascii"),
            "audio_base64": base64.b64encode(SPEECH_PATH.read_bytes()).decode("ascii"),
            **JOB_OPTIONS,
        }
    }
    path.write_text(json.dumps(job, indent=1) + "\n")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    IMAGE_PATH.parent.mkdir(exist_ok=True)
    write_image(IMAGE_PATH)
    write_speech(SPEECH_PATH)
    write_job(JOB_PATH)
    for path in (IMAGE_PATH, SPEECH_PATH, JOB_PATH):
        logger.info("wrote %s (%d bytes)", path.relative_to(REPO_ROOT), path.stat().st_size)


if __name__ == "__main__":
    main()
