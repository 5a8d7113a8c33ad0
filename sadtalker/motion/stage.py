"""Audio to motion coefficients: blinks, ExpNet, PoseVAE, smoothing -> (T, 70) per-frame coefficients.

Output row t = [exp 64 | angle 3 | trans 3] for video frame t:

- exp comes from ExpNet, one frame at a time, given the source's exp and that frame's blink ratio;
- pose = source pose + PoseVAE motion; frame 0 keeps the source pose (zero motion); frames 1..T-1
  are decoded 32 at a time, each 32-frame chunk with its own z ~ N(0, I); a remainder of r frames
  decodes the LAST 32 frames with one more z and keeps the last r outputs;
- the pose is smoothed along time by a Savitzky-Golay filter (window 13, order 2).

Randomness is explicit: blinks from a ``random.Random``, z from a CPU ``torch.Generator`` (drawn on
the CPU, one (1, 64) draw per chunk in chunk order, then moved to the network's device, as the
reference does), or injected with ``pose_z`` (tests feed the golden draws).
"""

from __future__ import annotations

import logging
import random
from typing import Callable, Iterator, List, Optional

import numpy as np
import torch
from torch import Tensor

from sadtalker.core.constants import EXPRESSION_COLUMNS, NUM_POSE_STYLES, POSE_COLUMNS
from sadtalker.core.jobtools import chunk_seed
from sadtalker.motion.chunking import Chunk
from sadtalker.motion.expnet import ExpNet
from sadtalker.motion.mel import Mels
from sadtalker.motion.posevae import PoseVAE
from sadtalker.motion.seams import carry_pose, seam_jumps

log = logging.getLogger(__name__)

BLINK_SHAPE = (0.5, 0.9, 1.0, 0.9, 0.5)  # eye-closure ratio over the 5 frames of one blink
MIN_FRAMES_FOR_BLINKS = 21  # with T <= 20 the reference draws no blinks
FIRST_BLINK_MIN = 10  # earliest gap (frames) before a blink
BLINK_GAP_MAX = 70  # gaps are drawn below min(T // 2, 70)
SAVGOL_WINDOW = 13
SAVGOL_ORDER = 2
EXP_BATCH = 128  # frames per ExpNet call (memory only; frames are independent)
AUDIO_BATCH = 256  # mel windows per audio-encoder call in the PoseVAE


def blink_sequence(frames: int, rng: random.Random) -> np.ndarray:
    """Random blinks as the reference draws them: (T, 1) float32 eye-closure ratio in [0, 1].

    Repeatedly draws a gap in [min(10, T), min(T // 2, 70)) and places a 5-frame blink after it,
    while the blink fits before the last frame. For T = 21 the reference's range is empty and it
    crashes; here that gives no blinks.
    """
    ratio = np.zeros((frames, 1), dtype=np.float32)
    if frames < MIN_FRAMES_FOR_BLINKS:
        return ratio
    gaps = range(min(FIRST_BLINK_MIN, frames), min(int(frames / 2), BLINK_GAP_MAX))
    if len(gaps) == 0:
        return ratio
    frame = 0
    while frame < frames:
        start = frame + rng.choice(gaps)
        if start + len(BLINK_SHAPE) > frames - 1:
            break
        ratio[start : start + len(BLINK_SHAPE), 0] = BLINK_SHAPE
        frame = start + len(BLINK_SHAPE)
    return ratio


def pose_chunk_count(frames: int, seq_len: int = 32) -> int:
    """Number of z draws for T frames: ceil((T - 1) / 32)."""
    moving = max(frames - 1, 0)
    return moving // seq_len + (1 if moving % seq_len else 0)


def draw_pose_z(count: int, generator: torch.Generator, latent: int = 64) -> Tensor:
    """(count, 64) float32 on the CPU: ``count`` successive (1, 64) standard-normal draws."""
    draws = [torch.randn((1, latent), generator=generator) for _ in range(count)]
    return torch.cat(draws, dim=0) if draws else torch.zeros((0, latent))


def _module_place(module: torch.nn.Module) -> tuple:
    param = next(module.parameters())
    return param.device, param.dtype


@torch.no_grad()
def predict_exp(audio2exp: ExpNet, indiv_mels: Mels, ref_exp: np.ndarray, blink: np.ndarray) -> np.ndarray:
    """ExpNet over all frames: mels (T, 80, 16), ref_exp (64,) or per frame (T, 64), blink (T, 1) -> exp (T, 64).

    A per-frame ``ref_exp`` is the reference's ``ref_eyeblink``: the video's expressions instead of the source's."""
    device, dtype = _module_place(audio2exp)
    frames = indiv_mels.shape[0]
    mels = torch.as_tensor(np.asarray(indiv_mels), dtype=dtype, device=device).unsqueeze(1)
    ref = torch.as_tensor(np.asarray(ref_exp), dtype=dtype, device=device)
    ref = ref.reshape(1, -1).expand(frames, -1) if ref.ndim == 1 else ref.reshape(frames, -1)
    ratio = torch.as_tensor(blink, dtype=dtype, device=device).reshape(frames, 1)
    out = [
        audio2exp(mels[i : i + EXP_BATCH], ref[i : i + EXP_BATCH], ratio[i : i + EXP_BATCH])
        for i in range(0, frames, EXP_BATCH)
    ]
    if not out:
        return np.zeros((0, ref_exp.shape[-1]), dtype=np.float32)
    return torch.cat(out).float().cpu().numpy()


@torch.no_grad()
def audio_embeddings(audio2pose: PoseVAE, indiv_mels: Mels) -> Tensor:
    """(N, 80, 16) mel windows -> (N, 512) PoseVAE audio embeddings, ``AUDIO_BATCH`` windows per call."""
    device, dtype = _module_place(audio2pose)
    mels = torch.as_tensor(np.asarray(indiv_mels), dtype=dtype, device=device).unsqueeze(1)
    if mels.shape[0] == 0:
        return torch.zeros((0, audio2pose.dims.audio_emb), dtype=dtype, device=device)
    return torch.cat([audio2pose.encode_audio(mels[i : i + AUDIO_BATCH]) for i in range(0, len(mels), AUDIO_BATCH)])


def pose_windows(emb: Tensor, seq_len: int) -> Tensor:
    """Embeddings of frames 1..T-1 (T-1, 512) -> decoder inputs (n_chunks, 32, 512): whole chunks first, then (if
    T-1 is not a multiple of 32) the last 32 frames; with fewer than 32 frames the first embedding is repeated in
    front."""
    moving = emb.shape[0]
    if moving == 0:
        return emb.new_zeros((0, seq_len, emb.shape[-1]))
    chunks = [emb[i * seq_len : (i + 1) * seq_len] for i in range(moving // seq_len)]
    if moving % seq_len:
        tail = emb[-seq_len:]
        if tail.shape[0] < seq_len:
            tail = torch.cat([tail[:1].expand(seq_len - tail.shape[0], -1), tail])
        chunks.append(tail)
    return torch.stack(chunks)


def pose_chunk_inputs(audio2pose: PoseVAE, indiv_mels: Mels) -> Tensor:
    """Audio embeddings per decoder call: (n_chunks, 32, 512) for frames 1..T-1 (:func:`pose_windows`)."""
    return pose_windows(audio_embeddings(audio2pose, indiv_mels[1:]), audio2pose.dims.seq_len)


@torch.no_grad()
def decode_pose(
    audio2pose: PoseVAE, chunk_emb: Tensor, ref_pose: np.ndarray, pose_style: int, z: Tensor, batch: int
) -> np.ndarray:
    """PoseVAE's decoder on the first windows: (n, 32, 512) -> motion (n, 32, 6) float32, run as one call of
    ``batch`` >= n rows (the rest repeat the last window) so that every row sees the batch shape of the whole
    chunk's call: the decoder's matrix products round differently with another batch size."""
    device, dtype = _module_place(audio2pose)
    count = chunk_emb.shape[0]
    pad = batch - count
    emb = torch.cat([chunk_emb, chunk_emb[-1:].expand(pad, -1, -1)]) if pad else chunk_emb
    z = z.to(device=device, dtype=dtype)
    z = torch.cat([z, z[-1:].expand(pad, -1)]) if pad else z
    ref = torch.as_tensor(ref_pose, dtype=dtype, device=device).reshape(1, -1).expand(batch, -1)
    style = torch.full((batch,), pose_style, dtype=torch.long, device=device)
    return audio2pose(emb, ref, z, style).float().cpu().numpy()[:count]


@torch.no_grad()
def predict_pose_motion(
    audio2pose: PoseVAE,
    indiv_mels: Mels,
    ref_pose: np.ndarray,
    pose_style: int,
    z: Tensor,
    emb: Optional[Tensor] = None,
) -> np.ndarray:
    """Raw PoseVAE motion (T, 6) float32: a zero row for frame 0, then the decoded chunks in order.

    ``emb``: the (T-1, 512) audio embeddings of frames 1..T-1 when already computed (:func:`audio_embeddings`)."""
    if not 0 <= pose_style < NUM_POSE_STYLES:
        raise ValueError(f"pose_style must be in 0..{NUM_POSE_STYLES - 1}, got {pose_style}")
    frames, seq_len = indiv_mels.shape[0], audio2pose.dims.seq_len
    emb = audio_embeddings(audio2pose, indiv_mels[1:]) if emb is None else emb
    chunk_emb = pose_windows(emb, seq_len)
    count = chunk_emb.shape[0]
    if z.shape[0] != count:
        raise ValueError(f"{frames} frames need {count} PoseVAE z draws, got {z.shape[0]}")
    parts = [np.zeros((min(frames, 1), 6), dtype=np.float32)]
    if count:
        motion = decode_pose(audio2pose, chunk_emb, ref_pose, pose_style, z, count)
        remainder = (frames - 1) % seq_len
        whole = (frames - 1) // seq_len
        parts.extend(motion[:whole])
        if remainder:
            parts.append(motion[whole][-remainder:])
    return np.concatenate(parts, axis=0).astype(np.float32)


def smooth_pose(pose: np.ndarray) -> np.ndarray:
    """Savitzky-Golay along time (window 13, order 2; for T < 13 the largest odd window <= T).

    (T, 6) -> (T, 6) float32. Fewer than 3 frames cannot hold an order-2 fit (the reference
    crashes there); such poses are returned unchanged.
    """
    from scipy.signal import savgol_filter

    frames = pose.shape[0]
    window = SAVGOL_WINDOW if frames >= SAVGOL_WINDOW else int((frames - 1) / 2) * 2 + 1
    if window <= SAVGOL_ORDER:
        return pose.astype(np.float32)
    return savgol_filter(pose, window, SAVGOL_ORDER, axis=0).astype(np.float32)


def audio_to_coeffs(
    audio2exp: ExpNet,
    audio2pose: PoseVAE,
    indiv_mels: Mels,
    coeff_3dmm: np.ndarray,
    blink: np.ndarray,
    pose_style: int,
    generator: torch.Generator,
    *,
    pose_z: Optional[Tensor] = None,
    ref_exp: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Per-frame motion coefficients.

    Parameters
    ----------
    indiv_mels : (T, 80, 16) mel windows (:func:`sadtalker.motion.mel.mel_windows`, or a
        :class:`~sadtalker.motion.mel.MelWindows` that computes them).
    coeff_3dmm : (73,) (or at least 70) source coefficients: exp 64 | angle 3 | trans 3 | ...
    blink : (T, 1) eye-closure ratio (:func:`blink_sequence`, or zeros for no blinks).
    pose_style : 0..45.
    generator : CPU generator for the PoseVAE z draws (seeded from the job's seed).
    pose_z : optional (ceil((T-1)/32), 64) draws used instead of ``generator``.
    ref_exp : optional (T, 64) per-frame expressions for ExpNet instead of the source's (``ref_eyeblink``).

    Returns
    -------
    (T, 70) float32: exp 64 | smoothed pose 6.
    """
    frames, indiv_mels = indiv_mels.shape[0], np.asarray(indiv_mels)  # computed once for ExpNet and PoseVAE
    exp = predict_exp(audio2exp, indiv_mels, coeff_3dmm[EXPRESSION_COLUMNS] if ref_exp is None else ref_exp, blink)
    if pose_z is None:
        pose_z = draw_pose_z(pose_chunk_count(frames, audio2pose.dims.seq_len), generator, audio2pose.dims.latent)
    motion = predict_pose_motion(audio2pose, indiv_mels, coeff_3dmm[POSE_COLUMNS], pose_style, pose_z)
    pose = np.asarray(coeff_3dmm[POSE_COLUMNS], dtype=np.float32)[None] + motion
    return np.concatenate([exp, smooth_pose(pose)], axis=1).astype(np.float32)


SMOOTH_HALF = SAVGOL_WINDOW // 2  # frames on each side that one smoothed pose row depends on


def head_split(frames: int, head_rows: int, seq_len: int = 32) -> int:
    """Motion frames K (1 + whole PoseVAE windows) a chunk of ``frames`` decodes first so that its first
    ``head_rows`` rows (and the 6 the smoothing needs after them) are final; 0: the chunk comes in one piece."""
    if head_rows <= 0:
        return 0
    windows = -(-(head_rows + SMOOTH_HALF - 1) // seq_len)
    known = 1 + windows * seq_len
    if windows > (frames - 1) // seq_len or known < SAVGOL_WINDOW or known - SMOOTH_HALF >= frames:
        return 0
    return known


def _rows_of(ref_exp: np.ndarray, start: int, stop: int) -> np.ndarray:
    return ref_exp if ref_exp.ndim == 1 else ref_exp[start:stop]


def chunk_pieces(
    audio2exp: ExpNet,
    audio2pose: PoseVAE,
    indiv_mels: Mels,
    coeff_3dmm: np.ndarray,
    blink: np.ndarray,
    pose_style: int,
    generator: torch.Generator,
    head_rows: int = 0,
    *,
    ref_exp: Optional[np.ndarray] = None,
) -> Iterator[np.ndarray]:
    """:func:`audio_to_coeffs`'s (T, 70) rows in up to two pieces: first at least ``head_rows`` rows from the
    PoseVAE windows they and their smoothing need (:func:`head_split`), then the rest.

    The same numbers: ExpNet and the audio encoder work frame by frame, the head's decoder call runs at the whole
    chunk's batch shape (:func:`decode_pose`), the same z draws, and a smoothed row inside the head depends only on
    the 6 rows each side of it."""
    frames, seq_len = indiv_mels.shape[0], audio2pose.dims.seq_len
    z = draw_pose_z(pose_chunk_count(frames, seq_len), generator, audio2pose.dims.latent)
    known = head_split(frames, head_rows, seq_len)
    if not known or not 0 <= pose_style < NUM_POSE_STYLES:  # a bad style raises in audio_to_coeffs
        yield audio_to_coeffs(
            audio2exp, audio2pose, indiv_mels, coeff_3dmm, blink, pose_style, generator, pose_z=z, ref_exp=ref_exp
        )
        return
    exp_ref = coeff_3dmm[EXPRESSION_COLUMNS] if ref_exp is None else ref_exp
    source_pose = np.asarray(coeff_3dmm[POSE_COLUMNS], dtype=np.float32)[None]
    rows = known - SMOOTH_HALF
    mels_head = np.asarray(indiv_mels[:known])  # computed once for ExpNet and the audio encoder
    exp_head = predict_exp(audio2exp, mels_head[:rows], _rows_of(exp_ref, 0, rows), blink[:rows])
    emb_head = audio_embeddings(audio2pose, mels_head[1:])
    windows = (known - 1) // seq_len
    motion = decode_pose(
        audio2pose, pose_windows(emb_head, seq_len), coeff_3dmm[POSE_COLUMNS], pose_style, z[:windows], len(z)
    )
    pose_head = source_pose + np.concatenate([np.zeros((1, 6), np.float32), motion.reshape(-1, 6)])
    yield np.concatenate([exp_head, smooth_pose(pose_head)[:rows]], axis=1).astype(np.float32)
    mels_rest = np.asarray(indiv_mels[rows:])  # computed once for ExpNet and the audio encoder
    exp_rest = predict_exp(audio2exp, mels_rest, _rows_of(exp_ref, rows, frames), blink[rows:])
    emb = torch.cat([emb_head, audio_embeddings(audio2pose, mels_rest[known - rows :])])
    pose = source_pose + predict_pose_motion(audio2pose, indiv_mels, coeff_3dmm[POSE_COLUMNS], pose_style, z, emb)
    yield np.concatenate([exp_rest, smooth_pose(pose)[rows:]], axis=1).astype(np.float32)


def coefficient_pieces(
    audio2exp: ExpNet,
    audio2pose: PoseVAE,
    indiv_mels: Mels,
    coeff_3dmm: np.ndarray,
    chunks: List[Chunk],
    seed: int,
    pose_style: int,
    on_chunk: Callable[[int], None] = lambda done: None,
    *,
    use_blink: bool = True,
    ref_exp: Optional[np.ndarray] = None,
    head_rows: int = 0,
) -> Iterator[np.ndarray]:
    """The rows of :func:`chunked_coefficients`, in time order, as soon as they are final: the first chunk in two
    pieces (:func:`chunk_pieces`, its first ``head_rows`` rows early), every later chunk whole (its pose carry
    needs the previous chunk and its own whole pose curve, :func:`~.seams.carry_pose`).

    ``on_chunk(done)`` runs before a chunk's last piece is handed out; the seam log before the very last."""
    previous: Optional[np.ndarray] = None
    poses: List[np.ndarray] = []
    for chunk in chunks:
        cseed = chunk_seed(seed, chunk.index)
        blink = blink_sequence(chunk.n_frames, random.Random(cseed))
        if not use_blink:
            blink = np.zeros_like(blink)
        args = (
            audio2exp,
            audio2pose,
            indiv_mels[chunk.start_frame : chunk.end_frame],
            coeff_3dmm,
            blink,
            pose_style,
            torch.Generator().manual_seed(cseed),
        )
        cref = None if ref_exp is None else ref_exp[chunk.start_frame : chunk.end_frame]
        pieces = chunk_pieces(*args, head_rows if previous is None else 0, ref_exp=cref)
        done: List[np.ndarray] = []
        for piece in pieces:
            if previous is not None:
                piece = carry_pose(previous, piece)  # later chunks come in one piece
            done.append(piece)
            poses.append(piece[:, POSE_COLUMNS])
            if sum(len(p) for p in done) == chunk.n_frames:
                on_chunk(chunk.index + 1)
                if chunk is chunks[-1] and len(chunks) > 1:
                    _log_seams(np.concatenate(poses), chunks)
            yield piece
        previous = np.concatenate(done)


def _log_seams(pose: np.ndarray, chunks: List[Chunk]) -> None:
    jumps = seam_jumps(pose, [c.start_frame for c in chunks[1:]])
    log.info("pose jump at seams / inside chunks: %.3f", jumps.worst_ratio)


def chunked_coefficients(
    audio2exp: ExpNet,
    audio2pose: PoseVAE,
    indiv_mels: Mels,
    coeff_3dmm: np.ndarray,
    chunks: List[Chunk],
    seed: int,
    pose_style: int,
    on_chunk: Callable[[int], None] = lambda done: None,
    *,
    use_blink: bool = True,
    ref_exp: Optional[np.ndarray] = None,
) -> np.ndarray:
    """(T, 70) coefficients of the whole audio: each chunk from the source coefficients, with blinks and PoseVAE
    draws seeded from ``seed`` and the chunk's index, its pose carried across the seam (:mod:`.seams`).

    ``on_chunk(done)`` is called after each chunk with the number of chunks done. ``use_blink`` False gives
    ExpNet a zero blink ratio (the web demo's ``use_blink`` switch). ``ref_exp`` (T, 64): per-frame expressions
    for ExpNet (a reference video's, :func:`loop_frames`), sliced per chunk. The pipeline takes the same rows piece
    by piece (:func:`coefficient_pieces`).
    """
    return np.concatenate(
        list(
            coefficient_pieces(
                audio2exp,
                audio2pose,
                indiv_mels,
                coeff_3dmm,
                chunks,
                seed,
                pose_style,
                on_chunk,
                use_blink=use_blink,
                ref_exp=ref_exp,
            )
        )
    )


def scale_pose(coeffs: np.ndarray, source_pose: np.ndarray, scale: float) -> np.ndarray:
    """Head motion scaled around the source pose: pose = source + scale * (pose - source), in ``POSE_COLUMNS``.

    ``scale`` 1 returns ``coeffs`` unchanged (bit for bit), 0 holds the source pose on every frame. Our addition
    (``pose_scale``); the reference has no such control.
    """
    if scale == 1.0:
        return coeffs
    out = np.array(coeffs, dtype=np.float32)
    source = np.asarray(source_pose, dtype=np.float32).reshape(1, 6)
    out[:, POSE_COLUMNS] = source + np.float32(scale) * (out[:, POSE_COLUMNS] - source)
    return out


def loop_frames(values: np.ndarray, frames: int) -> np.ndarray:
    """A reference video's per-frame rows (N, C) looped to ``frames`` rows: row i is video frame i % N (the
    reference's ``div`` whole copies plus the first ``re`` rows); a longer video is cut."""
    values = np.asarray(values)
    return values[np.arange(frames) % values.shape[0]]


def ref_pose_delta(video_pose: np.ndarray, frames: int, rows: Optional[np.ndarray] = None) -> np.ndarray:
    """(N, 6) video pose -> (frames, 6) float32 delta relative to the video's first frame, looped
    (the reference's ``using_refpose``: ``refpose[:T] - refpose[0:1]``, taken in float32); ``rows``: only these
    frames' deltas (a piece of the sequence)."""
    pose = np.asarray(video_pose, dtype=np.float32)
    rows = np.arange(frames) if rows is None else np.asarray(rows)
    return pose[rows % pose.shape[0]] - pose[0:1]


def apply_ref_pose(coeffs: np.ndarray, video_pose: np.ndarray, rows: Optional[np.ndarray] = None) -> np.ndarray:
    """Generated (T, 70) coefficients with the video's head motion added to the pose columns (``POSE_COLUMNS``)
    (after smoothing, as the reference's ``using_refpose``); ``rows``: the frames ``coeffs`` holds (default 0..T-1)."""
    out = np.array(coeffs, dtype=np.float32)
    out[:, POSE_COLUMNS] = out[:, POSE_COLUMNS] + ref_pose_delta(video_pose, out.shape[0], rows)
    return out
