"""Face finders: dlib on real faces, RetinaFace + FAN plumbing with generated weights, garbage handling."""

import cv2
import numpy as np
import pytest
import torch

from sadtalker.core.errors import CheckpointError, NoFaceDetected
from sadtalker.face import finders as face
from sadtalker.face import stage as preprocess
from sadtalker.weights.loader import dlib_predictor_path, load_face_finder, load_recon_net
from sadtalker.worker.settings import Settings


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def dlib_finder():
    return load_face_finder("unused", "dlib", "cpu")


@pytest.fixture(scope="module")
def astronaut(golden_a_dir):
    return read_rgb(golden_a_dir / "input_image.png")


@pytest.fixture(scope="module")
def random_retinaface(test_checkpoints_dir):
    settings = Settings.from_env({"CHECKPOINTS_DIR": str(test_checkpoints_dir)})
    return load_face_finder(settings.checkpoints_dir, settings.face_detector, torch.device("cpu"))


def faceless_images():
    from skimage import data

    rng = np.random.default_rng(0)
    return {
        "flat grey": np.full((256, 256, 3), 128, np.uint8),
        "noise": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
        "bricks": np.repeat(data.brick()[:256, :256, None], 3, axis=2),
    }


def test_dlib_finds_the_golden_landmarks_on_the_photo(dlib_finder, astronaut, golden_a_dir):
    lm = dlib_finder.landmarks(astronaut)
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    np.testing.assert_array_equal(lm, np.load(golden_a_dir / "crop.npz")["lm68_full"])


def test_dlib_finds_the_golden_landmarks_on_the_crop(dlib_finder, golden_a_dir):
    lm = dlib_finder.landmarks(read_rgb(golden_a_dir / "source_256.png"))
    np.testing.assert_array_equal(lm, np.load(golden_a_dir / "align3dmm.npz")["lm68_crop"])


@pytest.mark.parametrize("name", ["flat grey", "noise", "bricks"])
def test_dlib_finds_no_face_where_there_is_none(dlib_finder, name):
    with pytest.raises(NoFaceDetected) as caught:
        dlib_finder.landmarks(faceless_images()[name])
    assert caught.value.error_type == "no_face_detected"


def test_dlib_is_chosen_by_the_setting():
    settings = Settings.from_env({"FACE_DETECTOR": "dlib"})
    finder = load_face_finder(settings.checkpoints_dir, settings.face_detector, torch.device("cpu"))
    assert isinstance(finder, face.DlibFinder)


def test_the_dlib_model_is_found_inside_its_package():
    assert dlib_predictor_path().endswith("models/shape_predictor_68_face_landmarks.dat")


def test_retinaface_finder_loads_the_official_file_layouts_strictly(random_retinaface):
    assert isinstance(random_retinaface, face.RetinaFaceFinder)


@pytest.mark.parametrize("name", ["astronaut", "flat grey", "noise"])
def test_random_weight_detector_ends_in_no_face_or_a_plausible_face_never_a_crash(random_retinaface, astronaut, name):
    image = astronaut if name == "astronaut" else faceless_images()[name]
    try:
        lm = random_retinaface.landmarks(image)
    except NoFaceDetected:
        return
    h, w = image.shape[:2]
    assert lm.shape == (68, 2) and np.all(np.isfinite(lm))
    assert lm[:, 0].min() >= -0.5 * w and lm[:, 0].max() <= 1.5 * w


def test_random_weight_finder_through_preprocess_never_crashes(random_retinaface, astronaut, test_checkpoints_dir):
    from sadtalker.weights.loader import read_components, sadtalker_file_name

    path = test_checkpoints_dir / sadtalker_file_name(256)
    recon = load_recon_net(read_components(str(path), ["face_3drecon"])["face_3drecon"], path.name, "cpu")
    try:
        out = preprocess.preprocess_image(astronaut, random_retinaface, recon, "crop", 256)
    except NoFaceDetected:
        return
    assert out.source_image.shape == (256, 256, 3) and np.all(np.isfinite(out.coeff_3dmm))


class FakeDetector:
    def __init__(self, dets):
        self.dets = np.asarray(dets, dtype=np.float32).reshape(-1, 15)

    def detect_faces(self, image, threshold):
        return self.dets


class FakeFan:
    """Heatmaps peaking at fixed points, or NaN."""

    def __init__(self, points=None, nan=False):
        self.points, self.nan = points, nan

    def __call__(self, x):
        heat = torch.zeros(1, 99, 64, 64)
        if self.nan:
            heat[:] = float("nan")
        else:
            for i, (px, py) in enumerate(self.points):
                heat[0, i, py, px] = 1.0
        return [heat], None


def det(x1, y1, x2, y2, score=0.99):
    return [x1, y1, x2, y2, score] + [0.0] * 10


FACE_LIKE_98 = np.array(
    [(8 + (i % 33) * 1.5, 50) for i in range(33)]  # jaw
    + [(20 + i, 20) for i in range(18)]  # brows (33-50)
    + [(32, 28 + i) for i in range(9)]  # nose (51-59)
    + [(20 + i, 25) for i in range(8)]  # left eye (60-67)
    + [(38 + i, 25) for i in range(8)]  # right eye (68-75)
    + [(24 + i, 45) for i in range(20)]  # mouth (76-95)
    + [(32, 32), (26, 25)],  # pupils (96, 97)
    dtype=np.int64,
)


@pytest.mark.parametrize(
    "boxes",
    [
        [],  # nothing detected
        [det(100, -30000, 101, 30000)],  # a sliver kilometres long
        [det(-3e7, -2000, 3e7, 2000)],  # wider than the image by far
        [det(10, 10, 12, 12)],  # 2 px
        [det(np.nan, 0, 50, 50)],  # not a number
        [det(600, 600, 700, 700)],  # outside the image
    ],
)
def test_garbage_boxes_are_no_face(boxes):
    finder = face.RetinaFaceFinder(FakeDetector(boxes), FakeFan(FACE_LIKE_98), "cpu")
    with pytest.raises(NoFaceDetected):
        finder.landmarks(np.zeros((256, 256, 3), np.uint8))


def test_first_plausible_box_is_used_and_landmarks_are_placed_in_the_photo():
    boxes = [det(0, 0, 5000, 3), det(64, 32, 192, 160)]
    finder = face.RetinaFaceFinder(FakeDetector(boxes), FakeFan(FACE_LIKE_98), "cpu")
    lm = finder.landmarks(np.zeros((256, 256, 3), np.uint8))
    # heatmap pixel (x, y) -> (x + 0.5) * box_w / 64 + x1 (no neighbour is larger: no nudge)
    np.testing.assert_allclose(lm[30], (FACE_LIKE_98[54] + 0.5) * 2 + (64, 32))
    np.testing.assert_allclose(lm[18], ((FACE_LIKE_98[34] + FACE_LIKE_98[41]) / 2 + 0.5) * 2 + (64, 32))


def test_nan_heatmaps_are_no_face():
    finder = face.RetinaFaceFinder(FakeDetector([det(64, 32, 192, 160)]), FakeFan(nan=True), "cpu")
    with pytest.raises(NoFaceDetected):
        finder.landmarks(np.zeros((256, 256, 3), np.uint8))


def test_collapsed_fan_points_are_no_face():
    finder = face.RetinaFaceFinder(FakeDetector([det(64, 32, 192, 160)]), FakeFan(np.full((98, 2), 30)), "cpu")
    with pytest.raises(NoFaceDetected):
        finder.landmarks(np.zeros((256, 256, 3), np.uint8))


def test_heatmap_peak_is_nudged_a_quarter_pixel_toward_the_larger_neighbour():
    heat = np.zeros((2, 64, 64))
    heat[0, 10, 20], heat[0, 10, 21], heat[0, 9, 20] = 1.0, 0.5, 0.2  # right and up are larger
    heat[1, 63, 63], heat[1, 63, 62] = 1.0, 0.5  # a corner peak: no index error; outside counts smallest
    points = face.decode_heatmaps(heat)
    np.testing.assert_allclose(points[0], (20 + 0.25 + 0.5, 10 - 0.25 + 0.5))
    np.testing.assert_allclose(points[1], (63 - 0.25 + 0.5, 63 - 0.25 + 0.5))


def test_wflw_table_maps_98_points_to_68_with_averaged_brows():
    assert len(face.WFLW98_TO_68) == 68
    assert all(0 <= i < 98 for group in face.WFLW98_TO_68 for i in group)
    pts = np.stack([np.arange(98), np.zeros(98)], axis=1)
    lm = face.wflw98_to_68(pts)[:, 0]
    assert list(lm[:17]) == list(range(0, 33, 2))
    assert list(lm[17:27]) == [33, 37.5, 37.5, 37.5, 37.5, 46, 46, 46, 46, 46]
    assert list(lm[36:48]) == [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75]
    assert list(lm[48:]) == list(range(76, 96))


@pytest.mark.parametrize(
    "change",
    [
        lambda lm: lm * np.nan,
        lambda lm: lm + 10_000,
        lambda lm: np.full_like(lm, 50),
        lambda lm: lm[:5],
    ],
)
def test_implausible_landmarks_are_no_face(golden_a_dir, change):
    lm = np.load(golden_a_dir / "crop.npz")["lm68_full"]
    face.check_landmarks(lm, 512, 512)  # the real ones pass
    with pytest.raises(NoFaceDetected):
        face.check_landmarks(change(lm), 512, 512)


def test_missing_detector_file_is_a_checkpoint_error(tmp_path):
    settings = Settings.from_env({"CHECKPOINTS_DIR": str(tmp_path)})
    with pytest.raises(CheckpointError, match="detection_Resnet50_Final.pth"):
        load_face_finder(settings.checkpoints_dir, settings.face_detector, torch.device("cpu"))


def two_faces(astronaut):
    """The photo at full size on the right and at half size on the left of one 768 x 512 picture."""
    canvas = np.full((512, 768, 3), 255, np.uint8)
    canvas[:256, :256] = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    canvas[:, 256:] = astronaut
    return canvas


def test_dlib_animates_the_largest_of_several_faces(dlib_finder, astronaut, golden_a_dir):
    import dlib

    picture = two_faces(astronaut)
    assert len(dlib.get_frontal_face_detector()(picture, face.DLIB_UPSAMPLE)) == 2  # both faces are seen
    lm = dlib_finder.landmarks(picture)
    assert lm[:, 0].min() > 256  # the large face on the right, not the first one from the left
    alone = np.load(golden_a_dir / "crop.npz")["lm68_full"] + (256, 0)
    assert np.abs(lm - alone).max() < 4.0  # the same landmarks as on the photo alone


def test_retinaface_animates_the_highest_scoring_of_several_faces_not_the_largest():
    """facexlib returns boxes by falling score (after NMS); the first plausible one is the face."""
    boxes = [det(10, 10, 74, 74, score=0.995), det(96, 64, 224, 192, score=0.98)]
    finder = face.RetinaFaceFinder(FakeDetector(boxes), FakeFan(FACE_LIKE_98), "cpu")
    assert finder.face_box(np.zeros((256, 256, 3), np.uint8)) == (10, 10, 74, 74)
