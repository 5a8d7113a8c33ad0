"""The renderer starts before the whole audio's coefficients exist, and the frames stay today's.

One streamed job (0.4 s first segment, 1 s segments) and one plain job on the small networks, over 4.4 s of audio cut
into three chunks; their rendered frames against frames rendered from coefficients computed the old way (every
chunk whole, tests/support/wholecoeffs.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sadtalker import pipeline
from sadtalker.core.constants import num_frames
from sadtalker.core.contract import AnimationHooks, AnimationRequest, RenderOptions
from sadtalker.face.stage import preprocess_image
from sadtalker.motion.chunking import plan_chunks
from sadtalker.motion.mel import fit_to_frames, mel_windows, melspectrogram
from sadtalker.render.stage import render, source_semantics, target_semantics
from tests.support.smallbundle import astronaut, speech_like
from tests.support.wholecoeffs import whole_sequence

SECONDS = 4.4  # 110 frames
CHUNK_SECONDS = 2.0  # three chunks
SEED = 3
pytestmark = pytest.mark.slow  # three renders of 110 frames


def run_job(bundle, settings, wav, workdir, first_segment_seconds=None):
    """Animate ``wav``; returns the result, the rendered batches and the order of events (coefficient chunks done,
    batches rendered, segments handed over)."""
    events, batches, segments = [], [], []
    real_render = pipeline.render

    def recording_render(*args, **kwargs):
        for batch in real_render(*args, **kwargs):
            events.append(("batch", len(batch)))
            batches.append(batch)
            yield batch

    def progress(stage, chunk=0, chunks=0, percent=0.0):
        if stage == "audio2coeff" and chunk > 0:
            events.append(("coefficients", chunk))

    def on_segment(segment):
        events.append(("segment", segment.index))
        segments.append(segment)

    hooks = AnimationHooks(progress)
    if first_segment_seconds is not None:
        hooks = AnimationHooks(
            progress, on_segment=on_segment, segment_seconds=1.0, first_segment_seconds=first_segment_seconds
        )
    request = AnimationRequest(astronaut(), wav, RenderOptions(enhancer="none"), seed=SEED, name="clip")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "render", recording_render)
        result = pipeline.animate(bundle, settings, request, str(workdir), hooks)
    return result, np.concatenate(batches), events, segments


def frames_of_today(bundle, settings, wav):
    """The frames the whole-sequence path rendered: every chunk's coefficients first, then the windows at once."""
    models = bundle.for_size(256)
    pre = preprocess_image(astronaut(), bundle.face_finder, models.recon_net, "crop", 256)
    total = num_frames(len(wav))
    mels = mel_windows(melspectrogram(fit_to_frames(wav, total)), total)
    chunks = plan_chunks(wav, CHUNK_SECONDS)
    coeffs = whole_sequence(models.audio2exp, models.audio2pose, mels, pre.coeff_3dmm, chunks, SEED, 0)
    batches = render(
        models.renderer,
        bundle.mapping("crop"),
        pipeline._source_for(models, pre),
        source_semantics(pre.coeff_3dmm, "crop"),
        target_semantics(coeffs, pre.coeff_3dmm),
        settings.render_batch_for("cpu"),
        precision=settings.render_dtype,
    )
    return np.concatenate(list(batches)), chunks


@pytest.fixture(scope="module")
def jobs(bundle, settings, tmp_path_factory):
    chunked = dataclasses.replace(settings, chunk_seconds=CHUNK_SECONDS)
    wav = speech_like(SECONDS, quiet_at=(1.7, 3.5))
    streamed = run_job(bundle, chunked, wav, tmp_path_factory.mktemp("streamed"), first_segment_seconds=0.4)
    plain = run_job(bundle, chunked, wav, tmp_path_factory.mktemp("plain"))
    return streamed, plain, frames_of_today(bundle, chunked, wav)


def test_streamed_and_plain_jobs_render_todays_frames_bit_for_bit(jobs):
    (_, streamed, _, _), (_, plain, _, _), (today, chunks) = jobs
    assert len(chunks) == 3 and streamed.shape[0] == 110
    np.testing.assert_array_equal(streamed, today)
    np.testing.assert_array_equal(plain, today)


@pytest.mark.parametrize("which", [0, 1], ids=["streamed", "plain"])
def test_rendering_starts_before_the_first_chunks_coefficients_are_done(jobs, which):
    events = jobs[which][2]
    first_batch = events.index(("batch", 2))
    assert first_batch < events.index(("coefficients", 1)) < events.index(("coefficients", 3))
    assert [e for e in events if e[0] == "coefficients"] == [
        ("coefficients", 1),
        ("coefficients", 2),
        ("coefficients", 3),
    ]


def test_the_first_segment_is_handed_over_before_the_rest_of_the_coefficients(jobs):
    events = jobs[0][2]
    assert events.index(("segment", 0)) < events.index(("coefficients", 1))


def test_a_short_first_segment_then_contiguous_segments_that_add_up(jobs):
    result, _, _, segments = jobs[0]
    assert [s.frames for s in segments] == [10, 25, 25, 25, 25]
    assert [s.start_frame for s in segments] == [0, 10, 35, 60, 85]
    assert sum(s.frames for s in segments) == result.frames == 110
    assert segments[0].duration_seconds == 0.4
