"""Reference video (ref_video_* + ref_info) against golden scenario C, stage by stage, plus decoding and fill-in.

Golden stages (tolerances from the golden README): the crop of frame 0 (exact box, quad 1e-4), every frame cut with
it and resized to 256 (exact), per-frame alignment (5 points exact, trans_params rtol 1e-6, ReconNet input exact),
ReconNet per frame in one batch (full_3dmm / coeff_3dmm[:70] atol 1e-4), the looped ExpNet reference and ExpNet with
the video's expressions and a zero blink ratio (1e-4), PoseVAE with pose style 3 (1e-5), the looped pose delta and
the final coefficients after ``using_refpose`` (1e-5; 1e-4 when fed our own ReconNet outputs).
"""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest
import torch

from sadtalker.core.constants import EXPRESSION_COLUMNS, POSE_COLUMNS
from sadtalker.core.errors import InvalidInput, NoFaceDetected, UnsupportedMedia
from sadtalker.face import align3dmm, crop
from sadtalker.face import stage as face_stage
from sadtalker.motion import stage as motion
from sadtalker.output.ffmpeg import ffmpeg_exe
from sadtalker.weights.loader import load_audio_models, load_recon_net, read_components, sadtalker_file_name
from sadtalker.worker.media import decode_video
from tests.support.goldencheck import FixedFinder, assert_close


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def g(golden_c_dir, golden_a_dir):
    out = {name: dict(np.load(golden_c_dir / f"{name}.npz")) for name in ("refvideo", "expnet", "posevae", "align3dmm")}
    out["audio"] = dict(np.load(golden_a_dir / "audio.npz"))  # golden C's audio.npz is identical to A's (same wav)
    out["frame0"] = read_rgb(golden_c_dir / "refvideo_frame_00.png")
    return out


@pytest.fixture(scope="module")
def nets(test_checkpoints_dir):
    path = test_checkpoints_dir / sadtalker_file_name(256)
    parts = read_components(str(path), ["audio2exp", "audio2pose", "face_3drecon"])
    exp_net, pose_vae = load_audio_models(parts["audio2exp"], parts["audio2pose"], path.name, torch.device("cpu"))
    return exp_net, pose_vae, load_recon_net(parts["face_3drecon"], path.name, torch.device("cpu"))


# --- preprocessing ----------------------------------------------------------------------------------------------


def test_video_crop_comes_from_frame_0(g):
    v = g["refvideo"]
    fq = crop.face_quad(v["lm68_frame0"], tuple(v["frame_size"]))
    assert fq.rsize == tuple(v["rsize"])
    assert fq.border_crop == tuple(v["crop"]) == (118, 0, 337, 219), "video crop box"
    assert_close("video crop quad", np.array(fq.quad), v["quad"], atol=1e-4)


def test_frame_0_cut_and_resized_to_256_is_the_reference_crop(g):
    v = g["refvideo"]
    region, _ = crop.crop_face(g["frame0"], v["lm68_frame0"], "extcrop")
    assert region.shape == (219, 219, 3)
    np.testing.assert_array_equal(crop.resize_source(region, face_stage.VIDEO_SIZE), v["frames_256_sel"][0])


def test_per_frame_alignment_and_batched_reconnet_match_golden_c(g, nets):
    v, recon_net = g["refvideo"], nets[2]
    sel = v["sel"]
    images = []
    for k, i in enumerate(sel):
        lm = align3dmm.flip_y(v["lm68_crop"][i], 256)
        assert_close(f"video frame {i} y-flipped landmarks", lm, v["lm68_crop_yflipped"][i], atol=0.0)
        assert_close(f"video frame {i} 5 points", align3dmm.five_points(lm), v["lm5p"][i], atol=0.0)
        aligned = align3dmm.align_image(v["frames_256_sel"][k], lm)
        assert_close(f"video frame {i} trans_params", aligned.trans_params, v["trans_params"][i], atol=0.0, rtol=1e-6)
        np.testing.assert_array_equal(aligned.image, v["recon_input_u8_sel"][k], err_msg=f"ReconNet input frame {i}")
        images.append(aligned.image)
    with torch.no_grad():
        full = recon_net(torch.tensor(np.stack(images) / 255.0, dtype=torch.float32).permute(0, 3, 1, 2)).numpy()
    assert_close("video ReconNet full_3dmm (frames 0, 5, 11; one batch)", full, v["full_3dmm"][sel], atol=1e-4)


def test_preprocess_video_with_injected_landmarks(g, nets):
    """preprocess_video over 3 copies of frame 0 (frames 1-11 are not stored here; the stage is per frame)."""
    v = g["refvideo"]
    frames = np.stack([g["frame0"]] * 3)
    out = face_stage.preprocess_video(
        frames, None, nets[2], "extcrop", landmarks=v["lm68_frame0"], crop_landmarks=np.stack([v["lm68_crop"][0]] * 3)
    )
    assert out.filled == 0 and out.coeff_3dmm.shape == (3, 73)
    for i in range(3):
        assert_close("video coeff_3dmm[:70] frame 0", out.coeff_3dmm[i, :70], v["coeff_3dmm"][0, :70], atol=1e-4)
        assert_close(
            "video coeff_3dmm[70:] frame 0", out.coeff_3dmm[i, 70:], v["coeff_3dmm"][0, 70:], atol=0.0, rtol=1e-6
        )
    assert_close("video .mat full_3dmm (frame 0)", out.full_3dmm[:1], v["mat_full_3dmm"], atol=1e-4)


def test_frames_without_a_face_take_the_nearest_frames_coefficients(g, nets):
    v = g["refvideo"]
    frames = np.stack([g["frame0"]] * 5)
    lm = v["lm68_crop"][0]
    finder = FixedFinder(v["lm68_frame0"], None, lm, None, None, lm)  # frame 0 pass, then the 5 crops
    out = face_stage.preprocess_video(frames, finder, nets[2], "extcrop")
    assert out.filled == 3
    assert np.array_equal(out.coeff_3dmm[0], out.coeff_3dmm[1]) and np.array_equal(out.coeff_3dmm[3], out.coeff_3dmm[4])


def test_no_face_on_the_first_frame_is_no_face_detected(g, nets):
    with pytest.raises(NoFaceDetected, match="first frame"):
        face_stage.preprocess_video(np.stack([g["frame0"]] * 2), FixedFinder(None), nets[2], "crop")
    with pytest.raises(NoFaceDetected):
        finder = FixedFinder(g["refvideo"]["lm68_frame0"], None, None)
        face_stage.preprocess_video(np.stack([g["frame0"]] * 2), finder, nets[2], "crop")


# --- ref_eyeblink / ref_pose -------------------------------------------------------------------------------------


def test_expnet_reference_is_the_video_looped(g):
    e, v = g["expnet"], g["refvideo"]
    assert_close("ref_exp_video_index", np.arange(75) % 12, e["ref_exp_video_index"], atol=0.0)
    assert_close(
        "ExpNet ref (looped video exp)",
        motion.loop_frames(v["coeff_3dmm"][:, EXPRESSION_COLUMNS], 75),
        e["ref_exp"],
        atol=0.0,
    )
    assert not e["blink_ratio"].any() and e["blink_ratio_generated"].any()


def test_expnet_with_the_video_expressions_matches_golden_c(g, nets):
    e = g["expnet"]
    exp = motion.predict_exp(nets[0], g["audio"]["indiv_mels"], e["ref_exp"], e["blink_ratio"])
    assert_close("ExpNet exp (ref_eyeblink)", exp, e["exp"], atol=1e-4)


def test_posevae_pose_style_3_matches_golden_c(g, nets):
    p = g["posevae"]
    assert_close("PoseVAE ref pose = source pose", p["ref_pose"], g["align3dmm"]["coeff_3dmm"][POSE_COLUMNS], atol=0.0)
    motion_raw = motion.predict_pose_motion(
        nets[1], g["audio"]["indiv_mels"], p["ref_pose"], int(p["pose_class"]), torch.from_numpy(p["z"])
    )
    pose_raw = p["ref_pose"][None] + motion_raw
    assert_close("PoseVAE pose_raw (style 3)", pose_raw, p["pose_raw"], atol=1e-5)
    assert_close("PoseVAE pose_smooth (style 3)", motion.smooth_pose(pose_raw), p["pose_smooth"], atol=1e-5)


def test_ref_pose_delta_and_coefficients_match_golden_c(g):
    p, v = g["posevae"], g["refvideo"]
    assert_close("refpose_video", v["coeff_3dmm"][:, POSE_COLUMNS], p["refpose_video"], atol=0.0)
    assert_close("refpose_looped", motion.loop_frames(p["refpose_video"], 75), p["refpose_looped"], atol=0.0)
    assert_close("refpose_delta", motion.ref_pose_delta(p["refpose_video"], 75), p["refpose_delta"], atol=0.0)
    coeffs = motion.apply_ref_pose(p["coeffs_before_refpose"], p["refpose_video"])
    assert_close("coefficients after using_refpose", coeffs, p["coeffs"], atol=0.0)


def test_whole_coefficient_chain_with_ref_eyeblink_and_ref_pose(g, nets):
    """Our chain: ExpNet with the looped video exps and zero blinks, PoseVAE (style 3), smoothing, pose delta."""
    p, v = g["posevae"], g["refvideo"]
    coeffs = motion.audio_to_coeffs(
        nets[0],
        nets[1],
        g["audio"]["indiv_mels"],
        g["align3dmm"]["coeff_3dmm"],
        np.zeros((75, 1), np.float32),
        int(p["pose_class"]),
        torch.Generator(),
        pose_z=torch.from_numpy(p["z"]),
        ref_exp=motion.loop_frames(v["coeff_3dmm"][:, EXPRESSION_COLUMNS], 75),
    )
    coeffs = motion.apply_ref_pose(coeffs, v["coeff_3dmm"][:, POSE_COLUMNS])
    exp, pose = EXPRESSION_COLUMNS, POSE_COLUMNS
    assert_close("final coefficients exp (ref video)", coeffs[:, exp], p["coeffs"][:, exp], atol=1e-4)
    assert_close("final coefficients pose (ref video)", coeffs[:, pose], p["coeffs"][:, pose], atol=1e-5)


# --- decoding ----------------------------------------------------------------------------------------------------


def make_video(path, fps, frames):
    """An FFV1 video whose frame k is a flat grey of value 8 * k (so the decoded value names the source frame)."""
    argv = [
        ffmpeg_exe(),
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        "32x32",
        "-r",
        str(fps),
        "-i",
        "pipe:0",
        "-c:v",
        "ffv1",
        "-pix_fmt",
        "bgr0",
        str(path),
    ]
    data = b"".join(bytes([8 * k]) * (32 * 32 * 3) for k in range(frames))
    subprocess.run(argv, input=data, check=True)
    return path.read_bytes()


@pytest.mark.parametrize("fps, frames", [(25, 12), (30, 30), (10, 10)])
def test_video_is_resampled_to_25_fps_by_time(tmp_path, fps, frames):
    data = make_video(tmp_path / "in.mkv", fps, frames)
    out = decode_video(data, tmp_path, 60, 4096)
    source = out[:, 0, 0, 0].astype(int) // 8
    seconds = frames / fps
    assert len(out) == round(seconds * 25), f"{fps} fps: {len(out)} frames for {seconds} s"
    times = np.arange(len(out)) / 25
    assert np.all(np.abs(source / fps - times) <= 1 / fps + 1e-9), "each output frame shows the input frame at its time"
    if fps == 25:
        assert source.tolist() == list(range(frames))


def test_a_one_frame_video_decodes(tmp_path):
    data = make_video(tmp_path / "one.mkv", 25, 1)
    assert decode_video(data, tmp_path, 60, 4096).shape == (1, 32, 32, 3)


def test_decode_refusals(tmp_path):
    with pytest.raises(UnsupportedMedia):
        decode_video(b"not a video" * 30, tmp_path, 60, 4096)
    data = make_video(tmp_path / "long.mkv", 25, 30)
    with pytest.raises(InvalidInput, match="MAX_REF_VIDEO_SECONDS"):
        decode_video(data, tmp_path, 1.0, 4096)
    with pytest.raises(InvalidInput, match="MAX_IMAGE_SIDE"):
        decode_video(data, tmp_path, 60, 16)
