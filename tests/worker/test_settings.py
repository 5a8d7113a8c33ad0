"""Settings are read from a mapping, with defaults, and refuse bad values by name."""

import pytest

from sadtalker.worker.settings import MB, Settings


def test_empty_environment_gives_documented_defaults():
    s = Settings.from_env({})
    assert s.checkpoints_dir == "./checkpoints"
    assert s.face_detector == "retinaface"
    assert s.max_audio_seconds == 600.0
    assert s.chunk_seconds == 45.0
    assert s.presign_expires_s == 3600
    assert s.inline_result_max_bytes == 15 * MB
    assert s.allow_loopback_urls is False
    assert s.r2_key_prefix == "sadtalker/results/"
    assert s.reuse_freed_memory is True
    assert s.render_batch_size is None
    assert (s.render_batch_for("cuda"), s.render_batch_for("cpu")) == (8, 2)


def test_values_are_parsed_from_strings():
    s = Settings.from_env(
        {"FACE_DETECTOR": "DLIB", "MAX_AUDIO_SECONDS": "12.5", "ALLOW_LOOPBACK_URLS": "true", "RENDER_BATCH_SIZE": "4"}
    )
    assert (s.face_detector, s.max_audio_seconds, s.allow_loopback_urls, s.render_batch_size) == ("dlib", 12.5, True, 4)
    assert Settings.from_env({"REUSE_FREED_MEMORY": "false"}).reuse_freed_memory is False
    assert (s.render_batch_for("cuda"), s.render_batch_for("cpu")) == (4, 4)  # a set value holds on every device


@pytest.mark.parametrize(
    "name, value",
    [
        ("FACE_DETECTOR", "mtcnn"),
        ("MAX_AUDIO_SECONDS", "nan"),
        ("MAX_AUDIO_SECONDS", "-1"),
        ("RENDER_BATCH_SIZE", "0"),
        ("RENDER_BATCH_SIZE", "2.5"),
        ("ALLOW_LOOPBACK_URLS", "maybe"),
        ("DEVICE", "tpu"),
        ("REUSE_FREED_MEMORY", "sometimes"),
    ],
)
def test_bad_values_raise_naming_the_variable(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_repr_hides_the_secret():
    s = Settings.from_env({"R2_SECRET_ACCESS_KEY": "very-secret-value"})
    assert "very-secret-value" not in repr(s)


@pytest.mark.parametrize(
    "setting, device, expected",
    [("auto", "cuda", "fp16"), ("auto", "cpu", "fp32"), ("bf16", "cpu", "bf16"), ("fp32", "cuda", "fp32")],
)
def test_enhancer_precision_auto_is_fp16_on_cuda_only(setting, device, expected):
    import torch

    from sadtalker.bundle import enhancer_precision

    settings = Settings.from_env({"ENHANCER_DTYPE": setting})
    assert enhancer_precision(settings, torch.device(device)) == expected


def test_render_and_enhancer_dtype_refuse_unknown_values():
    for name in ("RENDER_DTYPE", "ENHANCER_DTYPE"):
        with pytest.raises(ValueError, match=name):
            Settings.from_env({name: "fp8"})


def test_stream_first_segment_seconds_defaults_to_one_and_takes_zero():
    assert Settings.from_env({}).stream_first_segment_seconds == 1.0
    assert Settings.from_env({"STREAM_FIRST_SEGMENT_SECONDS": "0"}).stream_first_segment_seconds == 0.0
    assert Settings.from_env({"STREAM_FIRST_SEGMENT_SECONDS": "0.4"}).stream_first_segment_seconds == 0.4
    with pytest.raises(ValueError, match="STREAM_FIRST_SEGMENT_SECONDS"):
        Settings.from_env({"STREAM_FIRST_SEGMENT_SECONDS": "-1"})
