"""The motion controls: pose_scale, use_blink, blinks in still mode, and the pipeline plumbing of the camera
angles (small renderer networks, real coefficient networks)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sadtalker.core.constants import EXPRESSION_COLUMNS, MOTION_COEFFS, POSE_COLUMNS
from sadtalker.core.contract import AnimationRequest, RenderOptions
from sadtalker.motion import stage as motion
from sadtalker.render.stage import target_coefficients
from sadtalker.weights.loader import load_audio_models, read_components, sadtalker_file_name
from tests.support.smallbundle import astronaut, speech_like


@pytest.fixture(scope="module")
def audio_models(test_checkpoints_dir):
    path = test_checkpoints_dir / sadtalker_file_name(256)
    parts = read_components(str(path), ["audio2exp", "audio2pose"])
    return load_audio_models(parts["audio2exp"], parts["audio2pose"], path.name, torch.device("cpu"))


@pytest.fixture(scope="module")
def golden_a(golden_a_dir):
    return {name: np.load(golden_a_dir / f"{name}.npz") for name in ("audio", "align3dmm")}


@pytest.fixture(scope="module")
def generated(audio_models, golden_a):
    """Golden A's 75 frames: coefficients with seed-0 blinks (blinks at frames 22-26 and 61-65) and without."""
    exp_net, pose_vae = audio_models
    mels, source = golden_a["audio"]["indiv_mels"], golden_a["align3dmm"]["coeff_3dmm"]
    blink = motion.blink_sequence(75, random.Random(0))
    out = {}
    for name, ratio in (("blink", blink), ("none", np.zeros_like(blink))):
        out[name] = motion.audio_to_coeffs(exp_net, pose_vae, mels, source, ratio, 0, torch.Generator().manual_seed(0))
    return out, blink, source


class TestPoseScale:
    def test_one_is_bit_identical_zero_is_the_source_pose(self, generated):
        coeffs, _, source = generated
        base = coeffs["blink"]
        assert motion.scale_pose(base, source[POSE_COLUMNS], 1.0) is base
        still = motion.scale_pose(base, source[POSE_COLUMNS], 0.0)
        assert np.array_equal(still[:, POSE_COLUMNS], np.repeat(source[None, POSE_COLUMNS], 75, 0))
        assert np.array_equal(still[:, EXPRESSION_COLUMNS], base[:, EXPRESSION_COLUMNS])  # expressions untouched

    @pytest.mark.parametrize("scale", [0.5, 2.0])
    def test_motion_around_the_source_pose_is_scaled(self, generated, scale):
        coeffs, _, source = generated
        base = coeffs["blink"]
        scaled = motion.scale_pose(base, source[POSE_COLUMNS], scale)
        pose = POSE_COLUMNS
        assert np.allclose(scaled[:, pose] - source[pose], scale * (base[:, pose] - source[pose]), atol=1e-6)


class TestBlinks:
    def test_the_blink_ratio_reaches_only_the_blink_frames_of_expnet(self, generated):
        coeffs, blink, _ = generated
        change = np.abs(coeffs["blink"][:, EXPRESSION_COLUMNS] - coeffs["none"][:, EXPRESSION_COLUMNS]).max(axis=1)
        blinking = blink[:, 0] > 0
        assert np.all(change[blinking] > 1e-3), "a blink frame's expression did not change"
        assert np.all(change[~blinking] == 0), "ExpNet frames are independent: no other frame may change"

    def test_still_mode_keeps_the_blinks(self, generated):
        """Still mode replaces the pose columns only: the expression (where ExpNet put the blink) is untouched, in
        the reference as here, so a still-mode video blinks exactly as a moving one does."""
        coeffs, blink, source = generated
        with_blink = target_coefficients(coeffs["blink"], source, 1.0, still_mode=True)
        without = target_coefficients(coeffs["none"], source, 1.0, still_mode=True)
        assert np.array_equal(with_blink[:, EXPRESSION_COLUMNS], coeffs["blink"][:, EXPRESSION_COLUMNS])
        assert np.all(with_blink[:, POSE_COLUMNS] == source[POSE_COLUMNS])
        blinking = blink[:, 0] > 0
        assert np.abs(with_blink - without)[blinking].max() > 1e-3

    def test_use_blink_false_gives_expnet_a_zero_ratio(self, audio_models, golden_a):
        exp_net, pose_vae = audio_models
        mels, source = golden_a["audio"]["indiv_mels"], golden_a["align3dmm"]["coeff_3dmm"]
        from sadtalker.motion.chunking import Chunk

        chunks = [Chunk(index=0, start_frame=0, end_frame=75)]
        on = motion.chunked_coefficients(exp_net, pose_vae, mels, source, chunks, 0, 0)
        off = motion.chunked_coefficients(exp_net, pose_vae, mels, source, chunks, 0, 0, use_blink=False)
        blink = motion.blink_sequence(75, random.Random(motion.chunk_seed(0, 0)))
        assert blink.any(), "seed 0 must draw blinks for this test to mean anything"
        zero = motion.audio_to_coeffs(
            exp_net,
            pose_vae,
            mels,
            source,
            np.zeros_like(blink),
            0,
            torch.Generator().manual_seed(motion.chunk_seed(0, 0)),
        )
        assert np.array_equal(off, zero)
        assert not np.array_equal(on[:, EXPRESSION_COLUMNS], off[:, EXPRESSION_COLUMNS])
        assert np.array_equal(on[:, POSE_COLUMNS], off[:, POSE_COLUMNS])  # the head pose does not depend on blinks


def run(bundle, settings, tmp_path, name, **fields):
    from sadtalker.pipeline import animate

    options = RenderOptions(**{"enhancer": "none", **fields})
    request = AnimationRequest(astronaut(), speech_like(1.2), options, seed=3, name=name)
    return animate(bundle, settings, request, str(tmp_path))


class TestPipelinePlumbing:
    def test_camera_pose_scale_and_use_blink_reach_the_renderer(self, bundle, settings, tmp_path, monkeypatch):
        import sadtalker.pipeline as pipeline

        seen = {"pieces": []}
        real_render, real_targets = pipeline.render, pipeline.target_coefficients

        def spy_render(*args, **kwargs):
            seen["camera"] = kwargs.get("camera")
            return real_render(*args, **kwargs)

        def spy_targets(coeffs, *args, **kwargs):  # called once per piece of coefficients
            seen["pieces"].append(coeffs)
            return real_targets(coeffs, *args, **kwargs)

        monkeypatch.setattr(pipeline, "render", spy_render)
        monkeypatch.setattr(pipeline, "target_coefficients", spy_targets)
        result = run(
            bundle,
            settings,
            tmp_path,
            "cam",
            input_yaw=(0.0, 20.0),
            input_roll=(5.0,),
            pose_scale=0.0,
            use_blink=False,
            still_mode=True,
        )
        assert result.frames == 30
        camera = seen["camera"]
        assert camera.shape == (30, 3) and camera[0, 0] == 0 and camera[-1, 0] > 19
        assert np.all(np.isnan(camera[:, 1])) and np.all(camera[:, 2] == 5)
        pose = np.concatenate(seen["pieces"])[:, POSE_COLUMNS]
        assert np.all(pose == pose[0]), "pose_scale 0 must hold the source pose"


def moved_frames(count: int) -> np.ndarray:
    """``count`` frames of the astronaut, each shifted a little (a head moving in a reference video)."""
    import cv2

    image = astronaut()
    out = []
    for i in range(count):
        m = np.array([[1, 0, 3 * np.sin(i)], [0, 1, 2 * np.cos(i)]], dtype=np.float32)
        out.append(cv2.warpAffine(image, m, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE))
    return np.stack(out)


class TestIdleAndReferenceVideo:
    def test_idle_mode_feeds_zero_mel_windows(self, bundle, settings, tmp_path, monkeypatch):
        import sadtalker.pipeline as pipeline

        seen = {}
        real = pipeline.coefficient_pieces

        def spy(exp, pose, windows, *args, **kwargs):
            seen["windows"] = windows
            return real(exp, pose, windows, *args, **kwargs)

        monkeypatch.setattr(pipeline, "coefficient_pieces", spy)
        options = RenderOptions(enhancer="none", idle_seconds=1.2)
        request = AnimationRequest(astronaut(), np.zeros(int(1.2 * 16000), np.float32), options, seed=2, name="idle")
        result = pipeline.animate(bundle, settings, request, str(tmp_path))
        assert result.frames == 30 and seen["windows"].shape == (30, 80, 16) and not seen["windows"].any()

    @pytest.mark.slow  # four whole small-network jobs
    @pytest.mark.parametrize("ref_info", ["pose", "blink", "pose+blink", "all"])
    def test_reference_video_drives_the_coefficients(self, bundle, settings, tmp_path, monkeypatch, ref_info):
        import sadtalker.pipeline as pipeline

        seen = {"pieces": []}
        real_targets, real_chunks = pipeline.target_coefficients, pipeline.coefficient_pieces

        def spy_targets(coeffs, *args, **kwargs):  # called once per piece of coefficients
            seen["pieces"].append(coeffs)
            return real_targets(coeffs, *args, **kwargs)

        def spy_chunks(*args, **kwargs):
            seen["chunk_kwargs"] = kwargs
            return real_chunks(*args, **kwargs)

        monkeypatch.setattr(pipeline, "target_coefficients", spy_targets)
        monkeypatch.setattr(pipeline, "coefficient_pieces", spy_chunks)
        frames = moved_frames(4)
        options = RenderOptions(enhancer="none", ref_info=ref_info)
        request = AnimationRequest(
            astronaut(), speech_like(0.4), options, seed=2, name=ref_info.replace("+", "_"), ref_frames=frames
        )
        result = pipeline.animate(bundle, settings, request, str(tmp_path))
        assert result.frames == 10 and result.warnings == ()
        video = pipeline.preprocess_video(frames, bundle.face_finder, bundle.sizes[256].recon_net, "crop")
        coeffs = np.concatenate(seen["pieces"])
        if ref_info == "all":
            np.testing.assert_array_equal(coeffs, motion.loop_frames(video.coeff_3dmm[:, :MOTION_COEFFS], 10))
        if "blink" in ref_info:
            np.testing.assert_array_equal(
                seen["chunk_kwargs"]["ref_exp"], motion.loop_frames(video.coeff_3dmm[:, EXPRESSION_COLUMNS], 10)
            )
            assert seen["chunk_kwargs"]["use_blink"] is False
        if "pose" in ref_info:
            delta = coeffs[:, POSE_COLUMNS] - coeffs[0, POSE_COLUMNS]
            assert np.abs(delta).max() > 0

    def test_lost_face_frames_are_filled_and_reported(self, bundle, settings, tmp_path):
        from sadtalker.pipeline import animate

        frames = moved_frames(4)
        frames[2] = 128  # a grey frame: no face on its crop
        request = AnimationRequest(
            astronaut(),
            speech_like(0.4),
            RenderOptions(enhancer="none", ref_info="pose"),
            seed=2,
            name="filled",
            ref_frames=frames,
        )
        result = animate(bundle, settings, request, str(tmp_path))
        assert len(result.warnings) == 1 and "1 of 4 reference video frames" in result.warnings[0]

    def test_no_face_on_the_first_frame(self, bundle, settings, tmp_path):
        from sadtalker.core.errors import NoFaceDetected
        from sadtalker.pipeline import animate

        frames = moved_frames(2)
        frames[0] = 128
        request = AnimationRequest(
            astronaut(),
            speech_like(0.4),
            RenderOptions(enhancer="none", ref_info="pose"),
            seed=2,
            name="noface",
            ref_frames=frames,
        )
        with pytest.raises(NoFaceDetected, match="first frame of the reference video"):
            animate(bundle, settings, request, str(tmp_path))


class TestRestoreFormer:
    def test_a_worker_without_its_weights_refuses_it_before_any_model_work(
        self, bundle, settings, tmp_path, monkeypatch
    ):
        import sadtalker.pipeline as pipeline
        from sadtalker.core.errors import InvalidInput

        assert bundle.restoreformer is None
        monkeypatch.setattr(pipeline, "preprocess_image", lambda *a, **k: pytest.fail("preprocess ran"))
        with pytest.raises(InvalidInput, match="restoreformer enhancer is not available"):
            run(bundle, settings, tmp_path, "rf", enhancer="restoreformer")

    def test_load_models_starts_without_the_file(self, test_checkpoints_dir):
        from sadtalker.bundle import load_restoreformer_enhancer

        assert not (test_checkpoints_dir / "RestoreFormer.pth").exists()
        assert load_restoreformer_enhancer(str(test_checkpoints_dir)) is None

    def test_the_file_loads_strictly_and_restores_through_face_enhancer(self, tmp_path):
        from sadtalker.core.errors import CheckpointError
        from sadtalker.enhance.gfpgan import EnhancerDims
        from sadtalker.enhance.restoreformer import SMALL_ARGS, build_restoreformer, restoreformer_forward
        from sadtalker.enhance.stage import FaceEnhancer
        from sadtalker.weights.loader import load_restoreformer

        torch.manual_seed(0)
        net = build_restoreformer(SMALL_ARGS)
        torch.save({"params_ema": net.state_dict()}, tmp_path / "RestoreFormer.pth")
        loaded = load_restoreformer(str(tmp_path), args=SMALL_ARGS)
        for key, value in net.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        dims = EnhancerDims(out_size=64, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.25)
        enhancer = FaceEnhancer(loaded, dims, forward=restoreformer_forward)
        frames = np.random.default_rng(0).integers(0, 255, (2, 48, 48, 3), dtype=np.uint8)
        out = enhancer.restore(frames)
        assert out.shape == frames.shape and out.dtype == np.uint8
        torch.save({"params": {"bad": torch.zeros(1)}}, tmp_path / "RestoreFormer.pth")
        with pytest.raises(CheckpointError):
            load_restoreformer(str(tmp_path), args=SMALL_ARGS)
