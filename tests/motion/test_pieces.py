"""Coefficients in pieces (sadtalker.motion.stage.coefficient_pieces) equal the whole-chunk computation bit for bit
(the reference: tests/support/wholecoeffs.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sadtalker.core.jobtools import chunk_seed
from sadtalker.motion import stage as motion
from sadtalker.motion.chunking import Chunk
from sadtalker.motion.seams import carry_pose
from tests.support.wholecoeffs import whole_sequence


@pytest.fixture(scope="module")
def nets(bundle):
    models = bundle.sizes[256]
    return models.audio2exp, models.audio2pose


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(7)
    mels = rng.standard_normal((150, 80, 16)).astype(np.float32)
    source = (rng.standard_normal(73) * 0.1).astype(np.float32)
    return mels, source


CHUNKS = [Chunk(0, 0, 90), Chunk(1, 90, 130), Chunk(2, 130, 150)]


@pytest.mark.parametrize("head_rows", [0, 1, 23, 40, 58, 200])
def test_pieces_equal_the_whole_chunk_computation_bit_for_bit(nets, inputs, head_rows):
    mels, source = inputs
    expected = whole_sequence(*nets, mels, source, CHUNKS, 9, 4)
    pieces = list(motion.coefficient_pieces(*nets, mels, source, CHUNKS, 9, 4, head_rows=head_rows))
    np.testing.assert_array_equal(np.concatenate(pieces), expected)
    split = motion.head_split(90, head_rows)
    sizes = [len(p) for p in pieces]
    assert sizes == ([split - 6, 90 - split + 6] if split else [90]) + [40, 20]
    if split:
        assert split - 6 >= head_rows


def test_pieces_with_reference_expressions_equal_the_whole_computation(nets, inputs):
    mels, source = inputs
    ref_exp = (np.random.default_rng(3).standard_normal((150, 64)) * 0.1).astype(np.float32)
    expected = whole_sequence(*nets, mels, source, CHUNKS, 2, 0, ref_exp)
    got = np.concatenate(
        list(
            motion.coefficient_pieces(*nets, mels, source, CHUNKS, 2, 0, head_rows=10, use_blink=False, ref_exp=ref_exp)
        )
    )
    # use_blink False and a per-frame ref_exp: the reference's ExpNet gets the blinks of a zero ratio
    blinkless = []
    for chunk in CHUNKS:
        coeffs = motion.audio_to_coeffs(
            *nets,
            mels[chunk.start_frame : chunk.end_frame],
            source,
            np.zeros((chunk.n_frames, 1), np.float32),
            0,
            torch.Generator().manual_seed(chunk_seed(2, chunk.index)),
            ref_exp=ref_exp[chunk.start_frame : chunk.end_frame],
        )
        blinkless.append(coeffs if not blinkless else carry_pose(blinkless[-1], coeffs))
    np.testing.assert_array_equal(got, np.concatenate(blinkless))
    assert not np.array_equal(got, expected)  # the blinks did change ExpNet's input


def test_the_first_piece_comes_before_the_rest_of_the_audio_is_touched(nets, inputs):
    """Counting ExpNet's frames: the first piece needs only its own rows', not the first chunk's or the audio's."""
    mels, source = inputs
    exp_net, pose_vae = nets
    seen = []
    real_forward = exp_net.forward

    def counting(mel, *args):
        seen.append(mel.shape[0])
        return real_forward(mel, *args)

    exp_net.forward = counting
    try:
        pieces = motion.coefficient_pieces(exp_net, pose_vae, mels, source, CHUNKS, 9, 4, head_rows=20)
        first = next(pieces)
        assert sum(seen) == len(first) == 33 - 6
        list(pieces)
        assert sum(seen) == 150
    finally:
        del exp_net.forward


def test_head_split_decodes_whole_windows_covering_the_rows_and_their_smoothing():
    assert motion.head_split(90, 0) == 0
    assert motion.head_split(90, 1) == 33  # one 32-frame window: rows 0..26 final
    assert motion.head_split(90, 27) == 33 and motion.head_split(90, 28) == 65
    assert motion.head_split(40, 27) == 33
    assert motion.head_split(33, 27) == 33  # rows 0..26 first, the last 6 after
    assert motion.head_split(32, 27) == 0  # no whole window before the remainder: one piece
    assert motion.head_split(90, 100) == 0


def test_seams_are_logged_once_all_chunks_are_done(nets, inputs, caplog):
    mels, source = inputs
    done = []
    with caplog.at_level("INFO", logger="sadtalker.motion.stage"):
        pieces = motion.coefficient_pieces(*nets, mels, source, CHUNKS, 9, 4, done.append, head_rows=5)
        for _ in range(3):
            next(pieces)
        assert done == [1, 2] and "seams" not in caplog.text
        next(pieces)
        assert done == [1, 2, 3] and "pose jump at seams" in caplog.text
