"""sadtalker.kernels.allocator: after reuse_freed_memory, large blocks freed and allocated again cost no page faults.

Each check runs in its own interpreter (the setting is process-wide and cannot be undone).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from sadtalker.kernels import allocator
from tests.support import REPO_ROOT

# 16 steps that each allocate and free two 64 MB tensors (above glibc's largest mmap threshold, 32 MB); prints
# the minor page faults of the last 8 steps (the heap needs a few steps to settle).
PROBE = """
import resource, sys
import torch
from sadtalker.kernels.allocator import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
x = torch.ones(16 * 2**20)
def step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = x * 2.0
    z = y + 1.0
    del y, z
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(sum([step() for _ in range(16)][8:]))
"""

PAGES = 8 * 2 * 64 * 2**20 // 4096  # 8 steps of two fresh 64 MB blocks in 4 KiB pages: 262144


def late_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.mark.slow  # a subprocess rendering with and without the tweak
@pytest.mark.skipif(allocator._glibc() is None, reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    default, reused = late_faults("default"), late_faults("reuse")
    assert default > PAGES // 2  # glibc mmaps every block anew: each page faults in again
    assert reused < PAGES // 4  # at most a block or two while the heap settles; usually none


def test_without_glibc_it_reports_that_nothing_changed(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.reuse_freed_memory() is False
