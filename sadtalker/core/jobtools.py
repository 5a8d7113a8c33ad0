"""Small pieces of job bookkeeping used by the pipeline: a bounded LRU cache, seeds, stage timers.

Kept apart from ``pipeline.py`` so they are tested without any model.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Dict, Generic, Hashable, Iterator, Optional, TypeVar

import numpy as np

from sadtalker.core.constants import SEED_RANGE

V = TypeVar("V")


class LRUCache(Generic[V]):
    """A thread-safe least-recently-used cache holding at most ``capacity`` entries (0 disables it)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: "OrderedDict[Hashable, V]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_create(self, key: Hashable, create: Callable[[], V]) -> V:
        """Return the cached value for ``key``, computing and storing it on a miss."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
        value = create()  # outside the lock: preprocessing takes a while
        if self.capacity > 0:
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


def image_key(image_rgb: np.ndarray, *parts: object) -> str:
    """A content hash of a decoded image plus the options that change its preprocessing."""
    digest = hashlib.sha256()
    digest.update(repr((image_rgb.shape, str(image_rgb.dtype), parts)).encode())
    digest.update(np.ascontiguousarray(image_rgb).data)
    return digest.hexdigest()


def resolve_seed(seed: Optional[int]) -> int:
    """The job's seed, or a fresh random one when the caller gave none (it is returned in the result)."""
    return secrets.randbelow(SEED_RANGE[1] + 1) if seed is None else int(seed)


def chunk_seed(seed: int, chunk_index: int) -> int:
    """A distinct, reproducible seed per chunk, derived from the job seed."""
    digest = hashlib.sha256(f"{seed}:{chunk_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class StageTimer:
    """Accumulates wall seconds per named stage (a stage may run once per chunk)."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def rounded(self) -> Dict[str, float]:
        return {name: round(value, 3) for name, value in self.seconds.items()}
