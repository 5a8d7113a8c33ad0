"""Keep freed memory in the process, so large tensors reuse pages that are already mapped.

By default glibc serves every allocation over 32 MB with its own ``mmap`` and returns it to the kernel on
``free``: each frame batch's large activations (a 2 x 512 x 256 x 256 float map is 268 MB) then come back as
fresh pages, and the kernel faults in and zeroes every 4 KiB page on first touch. On the CPU that is a large share of
the renderer's time (docs/performance.md).

:func:`reuse_freed_memory` turns both off through ``mallopt`` (as the ``MALLOC_MMAP_MAX_=0`` and
``MALLOC_TRIM_THRESHOLD_`` environment variables would at process start): large blocks come from the heap and
stay there after ``free``. The price: the process keeps its high-water mark of memory instead of returning
it. Only glibc has ``mallopt``; elsewhere (musl, macOS) it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Optional

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# Largest value mallopt takes (an int): free memory at the top of the heap above this is still returned.
TRIM_THRESHOLD = 2**31 - 1


def _glibc() -> Optional[ctypes.CDLL]:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    # Only glibc has gnu_get_libc_version; mallopt is what the caller needs.
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def reuse_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed memory there. True when glibc took both settings."""
    libc = _glibc()
    if libc is None:
        log.info("allocator: not glibc, freed memory is left to the system allocator")
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    done = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.info("allocator: large blocks from the heap, freed memory kept: %s", "on" if done else "refused by mallopt")
    return done
