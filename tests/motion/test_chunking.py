"""Chunk planning on synthetic speech-like audio with known pauses."""

import itertools

import numpy as np
import pytest

from sadtalker.motion.chunking import (
    ENERGY_BLOCK,
    MODEL_FPS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    num_frames,
    plan_chunks,
    prefix_energy,
    quietest_boundary,
)

# Pauses (start s, end s) of near silence; the first two lie in the search windows before each limit.
PAUSES = [(41.6, 41.95), (84.2, 84.5)]
# A deeper pause outside every search window: a correct planner never cuts there.
DECOY = (20.0, 20.6)


def speech_like(seconds: float, extra_samples: int = 0, seed: int = 0) -> np.ndarray:
    """Syllable-rate bursts of noisy tones (~0.3 rms) with shallow dips between syllables, plus the PAUSES."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE) + extra_samples
    t = np.arange(n) / SAMPLE_RATE
    carrier = np.sin(2 * np.pi * 180 * t) + 0.5 * rng.standard_normal(n)
    envelope = 0.35 + 0.3 * np.sin(2 * np.pi * 4.0 * t)  # syllables at 4 Hz; never below 0.05
    wav = envelope * carrier
    for start, end in PAUSES:
        lo, hi = min(n, int(start * SAMPLE_RATE)), min(n, int(end * SAMPLE_RATE))
        wav[lo:hi] = 1e-3 * rng.standard_normal(hi - lo)
    wav[int(DECOY[0] * SAMPLE_RATE) : int(DECOY[1] * SAMPLE_RATE)] = 0.0
    return wav.astype(np.float32)


@pytest.fixture(scope="module")
def wav100() -> np.ndarray:
    return speech_like(100.0, extra_samples=555)


def test_long_audio_is_cut_inside_the_pauses(wav100):
    chunks = plan_chunks(wav100, chunk_seconds=45.0)
    cuts_s = [c.end_frame / MODEL_FPS for c in chunks[:-1]]
    assert len(cuts_s) == len(PAUSES)
    for cut, (start, end) in zip(cuts_s, PAUSES, strict=True):
        assert start + 0.01 <= cut <= end - 0.01, (cut, start, end)


def test_hundred_seconds_give_three_chunks_within_the_limit(wav100):
    chunks = plan_chunks(wav100, chunk_seconds=45.0)
    assert [c.index for c in chunks] == [0, 1, 2]
    assert all(0 < c.n_frames <= 45 * MODEL_FPS for c in chunks)


def test_chunks_are_contiguous_and_cover_every_frame(wav100):
    chunks = plan_chunks(wav100, chunk_seconds=45.0)
    total = num_frames(len(wav100))
    assert total == (100 * SAMPLE_RATE + 555) // 640 == 2500
    assert chunks[0].start_frame == 0 and chunks[-1].end_frame == total
    for a, b in itertools.pairwise(chunks):
        assert a.end_frame == b.start_frame
    assert sum(c.n_frames for c in chunks) == total
    assert chunks[1].start_sample == chunks[0].end_frame * SAMPLES_PER_FRAME


def test_short_chunk_limit_gives_more_chunks_all_contiguous(wav100):
    chunks = plan_chunks(wav100, chunk_seconds=10.0, search_seconds=2.0)
    assert len(chunks) >= 10
    assert all(c.n_frames <= 250 for c in chunks)
    assert all(c.n_frames >= 200 for c in chunks[:-1])  # each cut within 2 s of its limit
    assert sum(c.n_frames for c in chunks) == num_frames(len(wav100))


def test_audio_within_the_limit_is_one_chunk():
    wav = speech_like(3.0, extra_samples=639)
    assert plan_chunks(wav, chunk_seconds=45.0) == plan_chunks(wav, chunk_seconds=3.04)
    (only,) = plan_chunks(wav, chunk_seconds=45.0)
    assert (only.start_frame, only.end_frame) == (0, 75)


def test_exactly_the_limit_is_one_chunk_and_one_frame_more_is_two():
    one = np.ones(45 * SAMPLE_RATE, np.float32)
    assert len(plan_chunks(one, 45.0)) == 1
    assert len(plan_chunks(np.ones(45 * SAMPLE_RATE + 640, np.float32), 45.0)) == 2


def test_digital_silence_is_cut_near_its_middle():
    wav = np.full(10 * SAMPLE_RATE, 0.5, np.float32)
    wav[4 * SAMPLE_RATE : 6 * SAMPLE_RATE] = 0.0  # 2 s of silence, frames 100..150
    cut = quietest_boundary(wav, 0, 10 * MODEL_FPS)
    assert abs(cut - 125) <= 1


def test_the_energy_computed_once_gives_each_cuts_own_boundary(wav100):
    """plan_chunks sums the squares once for all its cuts; every search range still finds the boundary it finds
    from its own sum (the same running sum, so the same floats)."""
    energy = prefix_energy(wav100)
    ranges = [(first, first + 125) for first in range(1, num_frames(len(wav100)) - 125, 97)]
    for first, last in ranges:
        assert quietest_boundary(wav100, first, last, energy) == quietest_boundary(wav100, first, last)
    short = [c.end_frame for c in plan_chunks(wav100, 7.0)][:-1]
    assert short == [
        quietest_boundary(wav100, max(start + 1, start + 175 - 125), start + 175) for start in [0] + short[:-1]
    ]


@pytest.mark.parametrize("samples", [0, 1, ENERGY_BLOCK, ENERGY_BLOCK + 1, 3 * ENERGY_BLOCK + 17])
def test_prefix_energy_block_by_block_equals_one_running_sum(samples):
    wav = speech_like(samples / SAMPLE_RATE, extra_samples=samples - int(samples / SAMPLE_RATE * SAMPLE_RATE))
    assert len(wav) == samples
    one_pass = np.concatenate(([0.0], np.cumsum(wav.astype(np.float64) ** 2)))
    np.testing.assert_array_equal(prefix_energy(wav), one_pass)


def test_quietest_boundary_rejects_an_empty_range():
    with pytest.raises(ValueError):
        quietest_boundary(np.zeros(16000, np.float32), 10, 9)


def test_stereo_input_is_rejected():
    with pytest.raises(ValueError, match="mono"):
        plan_chunks(np.zeros((16000, 2), np.float32))
