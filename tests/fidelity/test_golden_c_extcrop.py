"""preprocess extcrop / extfull (the reference's wider crop, ``crop(..., still=True)``) against golden scenario C.

Stages: crop box and quad (exact / 1e-4), the border-crop region and the 256 source PNG (exact), crop_info's quad
size (exact), 5-point alignment (rtol 1e-6), ReconNet full_3dmm / coeff_3dmm (atol 1e-4); then the pipeline's
output shape (extcrop: the quad's aspect, as the reference; extfull: pasted back into the photo).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from sadtalker.core.contract import AnimationRequest, RenderOptions
from sadtalker.face import align3dmm, crop
from sadtalker.face import stage as preprocess
from sadtalker.weights.loader import load_recon_net, read_components, sadtalker_file_name
from tests.support.goldencheck import assert_close
from tests.support.smallbundle import astronaut, speech_like


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def golden(golden_c_dir):
    return {
        "crop": np.load(golden_c_dir / "crop.npz"),
        "align": np.load(golden_c_dir / "align3dmm.npz"),
        "source": read_rgb(golden_c_dir / "source_256.png"),
        "image": astronaut(),  # golden C's input_image.png is byte-identical to scenario A's
    }


@pytest.fixture(scope="module")
def recon_net(test_checkpoints_dir):
    path = test_checkpoints_dir / sadtalker_file_name(256)
    state = read_components(str(path), ["face_3drecon"])["face_3drecon"]
    return load_recon_net(state, path.name, torch.device("cpu"))


@pytest.mark.parametrize("mode", ["extcrop", "extfull"])
def test_ext_crop_is_the_border_crop_of_golden_c(golden, mode):
    c = golden["crop"]
    assert bool(c["still"])
    region, info = crop.crop_face(golden["image"], c["lm68_full"], mode)
    assert info.border_crop == tuple(c["crop"]) == (116, 0, 333, 215)
    assert_close("extcrop quad", np.array(info.quad), c["quad"], atol=1e-4)
    assert region.shape == tuple(c["crop_face_shape"]) == (215, 217, 3), "extcrop region shape"
    np.testing.assert_array_equal(region, golden["image"][0:215, 116:333])
    assert info.box == (116, 0, 333, 215)  # paste-back box of extfull: the border crop
    assert info.frame_size == tuple(c["crop_info_size"]) == (182, 182)  # crop_info[0]: the QUAD size
    np.testing.assert_array_equal(crop.resize_source(region, 256), golden["source"])


def test_alignment_and_reconnet_on_the_ext_source_match_golden_c(recon_net, golden):
    a = golden["align"]
    lm = align3dmm.flip_y(a["lm68_crop"], 256)
    assert_close("extcrop y-flipped landmarks", lm, a["lm68_crop_yflipped"], atol=0.0)
    assert_close("extcrop 5 points", align3dmm.five_points(lm), a["lm5p"], atol=0.0)
    recon = preprocess.reconstruct(recon_net, golden["source"], lm)
    assert_close("extcrop trans_params", recon.alignment.trans_params, a["trans_params"], atol=0.0, rtol=1e-6)
    assert_close("extcrop ReconNet full_3dmm", recon.full_3dmm, a["full_3dmm"], atol=1e-4)
    assert_close("extcrop coeff_3dmm[:70]", recon.coeff_3dmm[:70], a["coeff_3dmm"][:70], atol=1e-4)
    assert_close("extcrop coeff_3dmm[70:]", recon.coeff_3dmm[70:], a["coeff_3dmm"][70:], atol=0.0, rtol=1e-6)


def test_preprocess_image_extcrop_with_injected_landmarks(recon_net, golden):
    out = preprocess.preprocess_image(
        golden["image"],
        None,
        recon_net,
        "extcrop",
        256,
        landmarks=golden["crop"]["lm68_full"],
        crop_landmarks=golden["align"]["lm68_crop"],
    )
    np.testing.assert_array_equal(out.source_image, golden["source"])
    assert_close("extcrop preprocess coeff_3dmm", out.coeff_3dmm, golden["align"]["coeff_3dmm"], atol=1e-4)


@pytest.mark.slow  # whole small-network jobs
@pytest.mark.parametrize("mode, size", [("extcrop", (256, 256)), ("extfull", (512, 512))])
def test_pipeline_runs_ext_modes(bundle, settings, tmp_path, mode, size):
    from sadtalker.pipeline import animate

    request = AnimationRequest(
        astronaut(), speech_like(0.5), RenderOptions(enhancer="none", preprocess=mode), seed=1, name=mode
    )
    result = animate(bundle, settings, request, str(tmp_path))
    assert (result.width, result.height) == size and result.frames == 12
