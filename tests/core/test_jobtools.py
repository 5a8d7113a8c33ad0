"""Job bookkeeping: the preprocessing cache, seeds and stage timers."""

import numpy as np

from sadtalker.core.constants import SEED_RANGE
from sadtalker.core.jobtools import LRUCache, StageTimer, chunk_seed, image_key, resolve_seed


def test_cache_returns_stored_value_without_recomputing():
    cache = LRUCache(2)
    calls = []
    make = lambda: calls.append(1) or len(calls)  # noqa: E731 (a one-line factory that counts its calls)
    assert cache.get_or_create("a", make) == 1
    assert cache.get_or_create("a", make) == 1
    assert len(calls) == 1 and cache.hits == 1 and cache.misses == 1


def test_cache_evicts_least_recently_used_beyond_capacity():
    cache = LRUCache(2)
    cache.get_or_create("a", lambda: 1)
    cache.get_or_create("b", lambda: 2)
    cache.get_or_create("a", lambda: 99)  # touch a: b is now the oldest
    cache.get_or_create("c", lambda: 3)
    assert len(cache) == 2
    assert cache.get_or_create("a", lambda: 99) == 1
    assert cache.get_or_create("b", lambda: 42) == 42  # was evicted, recomputed


def test_cache_of_capacity_zero_stores_nothing():
    cache = LRUCache(0)
    assert cache.get_or_create("a", lambda: 1) == 1
    assert cache.get_or_create("a", lambda: 2) == 2
    assert len(cache) == 0


def test_image_key_depends_on_pixels_and_options():
    img = np.zeros((4, 4, 3), np.uint8)
    other = img.copy()
    other[0, 0, 0] = 1
    assert image_key(img, "crop", 256) == image_key(img.copy(), "crop", 256)
    assert image_key(img, "crop", 256) != image_key(other, "crop", 256)
    assert image_key(img, "crop", 256) != image_key(img, "full", 256)
    assert image_key(img, "crop", 256) != image_key(img, "crop", 512)


def test_given_seed_is_kept_and_missing_seed_is_drawn_in_range():
    assert resolve_seed(7) == 7
    drawn = {resolve_seed(None) for _ in range(20)}
    assert len(drawn) > 1 and all(SEED_RANGE[0] <= s <= SEED_RANGE[1] for s in drawn)


def test_chunk_seeds_are_reproducible_and_distinct():
    assert chunk_seed(5, 0) == chunk_seed(5, 0)
    assert len({chunk_seed(5, i) for i in range(10)}) == 10
    assert chunk_seed(5, 0) != chunk_seed(6, 0)


def test_stage_timer_accumulates_repeated_stages():
    timer = StageTimer()
    with timer.stage("render"):
        pass
    timer.add("render", 1.0)
    timer.add("encode", 0.5)
    assert timer.seconds["render"] >= 1.0
    assert timer.rounded()["encode"] == 0.5
