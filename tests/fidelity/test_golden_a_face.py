"""Crop, 3DMM alignment, ReconNet and preprocess_image: golden scenario A plus the crop rules."""

import cv2
import numpy as np
import pytest
import torch

from sadtalker.core.errors import NoFaceDetected
from sadtalker.face import align3dmm, crop
from sadtalker.face import stage as preprocess
from sadtalker.face.reconnet import ReconNet
from sadtalker.weights.loader import load_recon_net, read_components, sadtalker_file_name
from tests.support.goldencheck import FixedFinder

RECON_TOLERANCE = 1e-4  # golden README: full_3dmm / coeff_3dmm[:70] atol 1e-4


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def recon_net(test_checkpoints_dir):
    path = test_checkpoints_dir / sadtalker_file_name(256)
    state = read_components(str(path), ["face_3drecon"])["face_3drecon"]
    return load_recon_net(state, path.name, torch.device("cpu"))


@pytest.fixture(scope="module")
def golden(golden_a_dir):
    return {
        "crop": np.load(golden_a_dir / "crop.npz"),
        "align": np.load(golden_a_dir / "align3dmm.npz"),
        "image": read_rgb(golden_a_dir / "input_image.png"),
        "crop_face": read_rgb(golden_a_dir / "crop_face.png"),
        "source": read_rgb(golden_a_dir / "source_256.png"),
        "recon_input": read_rgb(golden_a_dir / "recon_input_224.png"),
    }


def test_crop_box_and_quad_match_golden_a(golden):
    c = golden["crop"]
    fq = crop.face_quad(c["lm68_full"], tuple(c["original_size"]))
    assert fq.rsize == tuple(c["rsize"])
    assert fq.border_crop == tuple(c["crop"]) == (116, 0, 333, 215)
    assert np.abs(np.array(fq.quad) - c["quad"]).max() <= 1e-4


def test_crop_image_and_crop_info_match_golden_a_exactly(golden):
    region, info = crop.crop_face(golden["image"], golden["crop"]["lm68_full"], "crop")
    np.testing.assert_array_equal(region, golden["crop_face"])
    assert info.size == tuple(golden["crop"]["crop_info_size"]) == (182, 182)
    assert info.box == (134, 16, 316, 198)  # (clx + int(lx), cly + int(ly), ...) in the 512x512 photo
    np.testing.assert_array_equal(golden["image"][16:198, 134:316], region)


def test_source_image_matches_golden_a_exactly(golden):
    np.testing.assert_array_equal(crop.resize_source(golden["crop_face"], 256), golden["source"])


def test_full_mode_crops_like_crop_mode_and_resize_mode_keeps_the_whole_image(golden):
    lm = golden["crop"]["lm68_full"]
    crop_region, crop_info = crop.crop_face(golden["image"], lm, "crop")
    full_region, full_info = crop.crop_face(golden["image"], lm, "full")
    np.testing.assert_array_equal(crop_region, full_region)
    assert full_info == crop_info
    region, info = crop.crop_face(golden["image"], None, "resize")
    assert region is golden["image"] and info.box == (0, 0, 512, 512) and info.quad is None


def test_inner_box_bottom_is_clamped_with_the_image_width_as_the_reference_does(golden):
    # A face near the bottom of a wide, short image: ry runs past the border crop (only W clamps it);
    # the cut region simply ends at the crop, and the crop info describes the region actually cut.
    moved = golden["crop"]["lm68_full"] + np.array([0, 300], np.float32)
    fq = crop.face_quad(moved, (1200, 400))
    assert fq.quad[3] > fq.border_crop[3] - fq.border_crop[1]
    region, info = crop.crop_face(np.zeros((400, 1200, 3), np.uint8), moved, "crop")
    assert info.box[3] == 400 and info.size == (region.shape[1], region.shape[0])


def test_a_face_over_2048_px_is_cropped_from_a_shrunk_image_without_crashing(golden):
    scale = 12  # the face square becomes ~2200 px: shrink factor 2 (the reference crashes here)
    lm = golden["crop"]["lm68_full"] * scale
    big = cv2.resize(golden["image"], (512 * scale, 512 * scale), interpolation=cv2.INTER_NEAREST)
    fq = crop.face_quad(lm, (big.shape[1], big.shape[0]))
    assert fq.rsize == (3072, 3072)
    region, info = crop.crop_face(big, lm, "crop")
    assert np.abs(np.array(info.box) - np.array((134, 16, 316, 198)) * scale).max() <= 2 * scale
    assert region.shape[0] > 1000


def test_collapsed_landmarks_are_no_face(golden):
    with pytest.raises(NoFaceDetected):
        crop.crop_face(golden["image"], np.full((68, 2), 100.0, np.float32), "crop")


def test_unknown_preprocess_mode_is_refused(golden):
    with pytest.raises(ValueError, match="preprocess"):
        crop.crop_face(golden["image"], golden["crop"]["lm68_full"], "widecrop")  # extcrop/extfull are valid now


def test_alignment_points_and_trans_params_match_golden_a(golden):
    a = golden["align"]
    lm = align3dmm.flip_y(a["lm68_crop"], 256)
    np.testing.assert_array_equal(lm, a["lm68_crop_yflipped"])
    np.testing.assert_array_equal(align3dmm.five_points(lm), a["lm5p"])
    result = align3dmm.align_image(golden["source"], lm)
    np.testing.assert_allclose(result.trans_params, a["trans_params"], rtol=1e-6)


def test_recon_input_image_matches_golden_a_exactly(golden):
    lm = align3dmm.flip_y(golden["align"]["lm68_crop"], 256)
    result = align3dmm.align_image(golden["source"], lm)
    np.testing.assert_array_equal(result.image, golden["recon_input"])  # crop at (27, 45), truncated
    tensor = (result.image / 255.0).astype(np.float32).transpose(2, 0, 1)
    np.testing.assert_array_equal(tensor, golden["align"]["recon_input"])


def test_template_matches_the_reference_5_point_template(golden):
    np.testing.assert_array_equal(align3dmm.LM3D_TEMPLATE.astype(np.float64), golden["align"]["lm3d_std"])


def test_recon_coefficients_match_golden_a(recon_net, golden):
    lm = align3dmm.flip_y(golden["align"]["lm68_crop"], 256)
    recon = preprocess.reconstruct(recon_net, golden["source"], lm)
    assert np.abs(recon.full_3dmm - golden["align"]["full_3dmm"]).max() <= RECON_TOLERANCE
    assert np.abs(recon.coeff_3dmm[:70] - golden["align"]["coeff_3dmm"][:70]).max() <= RECON_TOLERANCE
    np.testing.assert_allclose(recon.coeff_3dmm[70:], golden["align"]["coeff_3dmm"][70:], rtol=1e-6)


def test_preprocess_image_with_injected_landmarks_matches_golden_a(recon_net, golden):
    out = preprocess.preprocess_image(
        golden["image"],
        None,
        recon_net,
        "crop",
        256,
        landmarks=golden["crop"]["lm68_full"],
        crop_landmarks=golden["align"]["lm68_crop"],
    )
    np.testing.assert_array_equal(out.source_image, golden["source"])
    assert out.coeff_3dmm.shape == (73,) and out.coeff_3dmm.dtype == np.float32
    assert np.abs(out.coeff_3dmm - golden["align"]["coeff_3dmm"]).max() <= RECON_TOLERANCE
    assert out.crop_info.size == (182, 182)


def test_preprocess_image_asks_the_finder_for_both_passes(recon_net, golden):
    finder = FixedFinder(golden["crop"]["lm68_full"], golden["align"]["lm68_crop"])
    out = preprocess.preprocess_image(golden["image"], finder, recon_net, "full", 256)
    assert not finder.answers
    assert np.abs(out.coeff_3dmm - golden["align"]["coeff_3dmm"]).max() <= RECON_TOLERANCE


def test_no_face_on_the_crop_falls_back_to_the_template(recon_net, golden):
    finder = FixedFinder(golden["crop"]["lm68_full"], None)
    out = preprocess.preprocess_image(golden["image"], finder, recon_net, "crop", 256)
    expected = align3dmm.align_image(golden["source"], align3dmm.template_landmarks(256, 256)).trans_params
    np.testing.assert_allclose(out.coeff_3dmm[70:], expected[2:], rtol=1e-6)


def test_no_face_in_the_photo_is_an_error_in_crop_mode(recon_net, golden):
    with pytest.raises(NoFaceDetected):
        preprocess.preprocess_image(golden["image"], FixedFinder(None), recon_net, "crop", 256)


def test_no_face_at_all_is_an_error_in_resize_mode(recon_net, golden):
    with pytest.raises(NoFaceDetected):
        preprocess.preprocess_image(golden["image"], FixedFinder(None), recon_net, "resize", 256)


def test_resize_mode_uses_the_whole_image_resized(recon_net, golden):
    lm_on_source = golden["align"]["lm68_crop"]  # any plausible face on the 512x512 -> 512 source
    out = preprocess.preprocess_image(golden["image"], FixedFinder(lm_on_source), recon_net, "resize", 512)
    np.testing.assert_array_equal(out.source_image, golden["image"])  # 512 -> 512 is an identity
    assert out.crop_info.box == (0, 0, 512, 512)


def test_reconnet_holds_exactly_the_files_face_3drecon_keys(checkpoint_writer):
    manifest = checkpoint_writer.load_manifest(sadtalker_file_name(256))["tensors"]
    expected = {
        k[len("face_3drecon.") :]: tuple(v["shape"]) for k, v in manifest.items() if k.startswith("face_3drecon.")
    }
    assert {k: tuple(v.shape) for k, v in ReconNet().state_dict().items()} == expected
