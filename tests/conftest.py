"""Shared test fixtures.

``test_checkpoints_dir`` (session): a folder holding every weight file the worker loads, generated
by ``tests/support/checkpoints.py`` (the golden recipe, official containers). It is built once and
cached in ``.cache/test_checkpoints`` (override with the env var ``TEST_CHECKPOINTS_DIR``); a file is
rebuilt when the writer or its manifest changed (a stamp holds their hash). Building all seven takes
about a minute and 2.2 GB of disk; later runs reuse them.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import os
import socket
from pathlib import Path
from types import ModuleType

import pytest

from sadtalker.bundle import ModelBundle
from sadtalker.worker.settings import Settings
from tests.support import REPO_ROOT, checkpoints
from tests.support.smallbundle import small_bundle, small_settings

WRITER_PATH = Path(checkpoints.__file__)
GOLDEN_A = REPO_ROOT / "tests" / "golden" / "scenario_a"


def load_checkpoint_writer() -> ModuleType:
    """The checkpoint writer (tests/support/checkpoints.py)."""
    return checkpoints


def _stamp(writer: ModuleType, name: str) -> str:
    digest = hashlib.sha256(WRITER_PATH.read_bytes())
    digest.update((writer.MANIFEST_DIR / f"{name}.json").read_bytes())
    return digest.hexdigest()


def ensure_test_checkpoints(directory: Path) -> Path:
    """Generate (or reuse) every worker weight file in ``directory``; safe across processes."""
    writer = load_checkpoint_writer()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other pytest processes wait instead of racing
        for name in writer.WORKER_FILES:
            stamp_path = directory / f"{name}.stamp"
            stamp = _stamp(writer, name)
            fresh = (directory / name).is_file() and stamp_path.is_file() and stamp_path.read_text() == stamp
            if not fresh:
                writer.write_file(name, str(directory))
                stamp_path.write_text(stamp)
    return directory


@pytest.fixture(scope="session")
def checkpoint_writer() -> ModuleType:
    """The checkpoint writer module (write_file, write_all, WORKER_FILES, load_manifest, ...)."""
    return load_checkpoint_writer()


@pytest.fixture(scope="session")
def test_checkpoints_dir() -> Path:
    """Folder with all seven generated weight files, under their official names."""
    default = REPO_ROOT / ".cache" / "test_checkpoints"
    return ensure_test_checkpoints(Path(os.environ.get("TEST_CHECKPOINTS_DIR") or default))


@pytest.fixture(scope="session")
def golden_a_dir() -> Path:
    """tests/golden/scenario_a (reference outputs; see the README section on fidelity)."""
    return GOLDEN_A


@pytest.fixture
def loopback_only(monkeypatch):
    """Fail, without connecting, any socket connect to an address other than loopback (the network tests' guard)."""
    original = socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not ipaddress.ip_address(host.split("%")[0]).is_loopback:
            raise AssertionError(f"the test tried to connect to {host}")
        return original(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def golden_c_dir() -> Path:
    """tests/golden/scenario_c (reference outputs for reference videos, camera angles and extcrop; see its README)."""
    return REPO_ROOT / "tests" / "golden" / "scenario_c"


@pytest.fixture(scope="session")
def bundle(test_checkpoints_dir) -> ModelBundle:
    """The small bundle (tests/support/smallbundle.py): real coefficient networks and dlib, small renderer and GFPGAN.
    One per session; a test that changes it does so through ``monkeypatch``."""
    return small_bundle(str(test_checkpoints_dir))


@pytest.fixture(scope="session")
def settings(test_checkpoints_dir) -> Settings:
    """The settings the small bundle's jobs run under (dlib faces; ``animate`` takes them as an argument)."""
    return small_settings(str(test_checkpoints_dir))
