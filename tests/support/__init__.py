"""What the tests share besides fixtures: the small bundle, the golden checks, the media checks, the worker process,
the checkpoint writer and its manifests, the S3 server script. Also importable by ``bench/`` (run from the repo root
as ``python -m bench.<name>``)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
