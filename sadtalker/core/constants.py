"""Every fixed number and allowed value of the worker, defined once and imported everywhere else."""

from __future__ import annotations

MODEL_FPS = 25  # the models' native rate: coefficients are made 25 per second of audio, whatever the video's fps
SAMPLE_RATE = 16000  # rate of the decoded mono audio the motion networks read
SAMPLES_PER_FRAME = SAMPLE_RATE // MODEL_FPS  # 640 samples = 40 ms = one coefficient frame
FPS_RANGE = (20, 60)  # the request's fps: output frames per second, resampled from the 25 fps coefficients

PREPROCESS_MODES = ("crop", "resize", "full", "extcrop", "extfull")  # ext*: the wider border crop
SIZES = (256, 512)  # render resolutions, one SadTalker weight file each
ENHANCERS = ("gfpgan", "restoreformer", "none")  # restoreformer: optional weights, refused when absent
PASTE_METHODS = ("seamless", "feather")  # full modes: Poisson paste as the reference, or a feathered blend
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")  # arithmetic of RENDER_DTYPE and ENHANCER_DTYPE
FACE_DETECTORS = ("retinaface", "dlib")  # FACE_DETECTOR

# The 3DMM coefficient row the stages pass along (face/stage.py builds it from ReconNet's 257 outputs):
# expression 64 | pose 6 (angles pitch, yaw, roll in radians, then translation x, y, z) | crop 3 (scale, tx, ty).
EXPRESSION_COLUMNS = slice(0, 64)
POSE_COLUMNS = slice(64, 70)
CROP_COLUMNS = slice(70, 73)
MOTION_COEFFS = POSE_COLUMNS.stop  # 70: expression + pose, what the motion stage makes and MappingNet 00229 reads
SOURCE_COEFFS = CROP_COLUMNS.stop  # 73: plus the crop, what preprocessing gives and MappingNet 00109 (full) reads
NUM_POSE_STYLES = 46  # PoseVAE's pose-style classes (the request's pose_style)

EXPRESSION_SCALE_RANGE = (0.0, 3.0)
POSE_STYLE_RANGE = (0, NUM_POSE_STYLES - 1)
UPSCALES = (1, 2)  # output size factor; the default is 2 with an enhancer, 1 without
SEED_RANGE = (0, 2**32 - 1)  # what numpy's and torch's generators accept as a seed
CAMERA_ANGLE_RANGE = (-90.0, 90.0)  # input_yaw / input_pitch / input_roll keyframes, degrees
CAMERA_KEYFRAMES_MAX = 16  # values per camera keyframe list
IDLE_SECONDS_RANGE = (1.0, 60.0)  # idle_seconds: a job without audio, the face at rest
REF_INFOS = ("pose", "blink", "pose+blink", "all")  # what a reference video drives
POSE_SCALE_RANGE = (0.0, 2.0)  # pose_scale: generated head motion around the source pose (our addition)


def is_full(preprocess: str) -> bool:
    """True for the modes that paste the animated crop back into the whole photo (and use MappingNet 00109)."""
    return "full" in preprocess


def num_frames(n_samples: int) -> int:
    """Coefficient frames (25 fps) for ``n_samples`` of 16 kHz audio: floor(n / 640), the reference's T."""
    return n_samples // SAMPLES_PER_FRAME


def output_frames(n_samples: int, fps: int) -> int:
    """Video frames at ``fps`` for ``n_samples`` of 16 kHz audio: floor(n * fps / 16000), the reference's T at 25."""
    return n_samples * fps // SAMPLE_RATE
