"""The weight files the worker loads: names, sizes, SHA-256 and where to fetch them.

This table is the single source of truth. ``scripts/weights.tsv`` (read by
``scripts/download_models.sh``) is generated from it with ``python -m sadtalker.weights.table > scripts/weights.tsv``
and a test checks that the two are equal. All files land in one folder, ``CHECKPOINTS_DIR``.

Every file here has a published SHA-256 (collected from Git LFS pointers and public pin lists of the official
release assets; no hash is published in the GitHub releases themselves). The download script verifies size and
hash; the start-up check verifies presence and size only (hashing 2.4 GB would add seconds to every cold start).
Mirrors are tried after the official URL; a mirror whose bytes differ fails the hash check like any bad download.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Tuple

# Values of ``download_models.sh --size``: which render resolution(s) to fetch weights for.
SIZE_CHOICES = ("256", "512", "all")

_SADTALKER_RELEASE = "https://github.com/OpenTalker/SadTalker/releases/download/v0.0.2-rc/"
_SADTALKER_HF = "https://huggingface.co/vinthony/SadTalker-V002rc/resolve/main/"
_FACEXLIB_010 = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/"


@dataclass(frozen=True)
class WeightFile:
    """One weight file. ``render_sizes`` says which ``--size`` selections need it ("256", "512" or both)."""

    name: str
    size_bytes: int
    sha256: str
    render_sizes: Tuple[str, ...]
    urls: Tuple[str, ...]  # official URL first, then mirrors expected to hold the same bytes
    purpose: str


BOTH = ("256", "512")

WEIGHTS: Tuple[WeightFile, ...] = (
    WeightFile(
        name="SadTalker_V0.0.2_256.safetensors",
        size_bytes=725066984,
        sha256="c211f5d6de003516bf1bbda9f47049a4c9c99133b1ab565c6961e5af16477bff",
        render_sizes=("256",),
        # The HF copy is not shown to be byte-identical; the hash check decides.
        urls=(
            _SADTALKER_RELEASE + "SadTalker_V0.0.2_256.safetensors",
            _SADTALKER_HF + "SadTalker_V0.0.2_256.safetensors",
        ),
        purpose="renderer (256), audio2exp, audio2pose, 3DMM face reconstruction",
    ),
    WeightFile(
        name="SadTalker_V0.0.2_512.safetensors",
        size_bytes=725066984,
        sha256="0e063f7ff5258240bdb0f7690783a7b1374e6a4a81ce8fa33456f4cd49694340",
        render_sizes=("512",),
        urls=(
            _SADTALKER_RELEASE + "SadTalker_V0.0.2_512.safetensors",
            _SADTALKER_HF + "SadTalker_V0.0.2_512.safetensors",
        ),
        purpose="renderer (512) for size=512 jobs",
    ),
    WeightFile(
        name="mapping_00229-model.pth.tar",
        size_bytes=155521183,
        sha256="62a1e06006cc963220f6477438518ed86e9788226c62ae382ddc42fbcefb83f1",
        render_sizes=BOTH,
        urls=(_SADTALKER_RELEASE + "mapping_00229-model.pth.tar", _SADTALKER_HF + "mapping_00229-model.pth.tar"),
        purpose="mapping network for preprocess=crop/resize",
    ),
    WeightFile(
        name="mapping_00109-model.pth.tar",
        size_bytes=155779231,
        sha256="84a8642468a3fcfdd9ab6be955267043116c2bec2284686a5262f1eaf017f64c",
        render_sizes=BOTH,
        urls=(_SADTALKER_RELEASE + "mapping_00109-model.pth.tar", _SADTALKER_HF + "mapping_00109-model.pth.tar"),
        purpose="mapping network for preprocess=full",
    ),
    WeightFile(
        name="GFPGANv1.4.pth",
        size_bytes=348632874,
        sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
        render_sizes=BOTH,
        urls=(
            "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
            "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/GFPGANv1.4.pth",
        ),
        purpose="GFPGAN face restoration (enhancer=gfpgan)",
    ),
    WeightFile(
        name="detection_Resnet50_Final.pth",
        size_bytes=109497761,
        sha256="6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
        render_sizes=BOTH,
        urls=(_FACEXLIB_010 + "detection_Resnet50_Final.pth",),
        purpose="RetinaFace-R50 face detector (face finder and enhancer)",
    ),
    WeightFile(
        name="alignment_WFLW_4HG.pth",
        size_bytes=193670248,
        sha256="bbfd137307a4c7debd5c283b9b0ce539466cee417ac0a155e184d857f9f2899c",
        render_sizes=BOTH,
        urls=(_FACEXLIB_010 + "alignment_WFLW_4HG.pth",),
        purpose="98-point FAN landmarks (FACE_DETECTOR=retinaface)",
    ),
)

# Optional: the RestoreFormer enhancer (enhancer=restoreformer). The file is the reference's, from GFPGAN's release
# v1.3.4 (also attached to v1.3.0). Neither a SHA-256 nor a size is published for it (not in the release, not in
# GFPGAN's or SadTalker's code; the only published digest we found is an MD5, eaeeff6c4a1caa1673977cb374e6f699, in
# lama-cleaner's downloader). So it is not in WEIGHTS: the download script fetches it only with --restoreformer
# (checking that MD5), the start-up check does not require it, and a worker without it refuses
# enhancer=restoreformer with invalid_input. An operator who installs it does so at their own trust.
RESTOREFORMER = WeightFile(
    name="RestoreFormer.pth",
    size_bytes=0,  # unknown: no published size
    sha256="",  # unknown: no published SHA-256
    render_sizes=(),
    urls=("https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/RestoreFormer.pth",),
    purpose="RestoreFormer face restoration (enhancer=restoreformer), optional and unverified",
)
RESTOREFORMER_MD5 = "eaeeff6c4a1caa1673977cb374e6f699"  # third-party (lama-cleaner), the only published digest

# Only the retinaface face finder reads the FAN landmark file; FACE_DETECTOR=dlib does not.
RETINAFACE_ONLY = frozenset({"alignment_WFLW_4HG.pth"})


def by_name(name: str) -> WeightFile:
    """The table entry called ``name``; KeyError for an unknown file."""
    for weight in WEIGHTS:
        if weight.name == name:
            return weight
    raise KeyError(name)


def to_tsv() -> str:
    """The manifest ``download_models.sh`` reads: one tab-separated line per file.

    Columns: name, size in bytes, sha256, sizes ("256", "512" or "both"), URLs separated by spaces.
    """
    lines = [
        "# Generated from sadtalker/weights/table.py by: python -m sadtalker.weights.table > scripts/weights.tsv",
        "# name\tsize_bytes\tsha256\tsizes\turls",
    ]
    for w in WEIGHTS:
        sizes = "both" if set(w.render_sizes) == set(BOTH) else w.render_sizes[0]
        lines.append("\t".join((w.name, str(w.size_bytes), w.sha256, sizes, " ".join(w.urls))))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(to_tsv())
