"""parse_job_input turns raw job input into JobOptions, refusing every malformed field by name."""

import base64
import dataclasses

import pytest

from sadtalker.core.errors import InvalidInput
from sadtalker.worker.options import JobOptions, R2Credentials, parse_job_input

IMAGE = base64.b64encode(b"\x89PNG fake image bytes").decode()
AUDIO = base64.b64encode(b"RIFF fake audio bytes").decode()


def job(**fields):
    """A minimal valid input plus ``fields`` (a value of ``...`` removes that field)."""
    raw = {"image_base64": IMAGE, "audio_base64": AUDIO}
    raw.update(fields)
    return {key: value for key, value in raw.items() if value is not ...}


def refused(raw):
    with pytest.raises(InvalidInput) as caught:
        parse_job_input(raw)
    assert caught.value.error_type == "invalid_input"
    return caught.value.message


class TestDefaultsAndValues:
    def test_minimal_input_gets_the_documented_defaults(self):
        options = parse_job_input(job())
        assert (options.render.still_mode, options.render.enhancer, options.render.preprocess, options.render.size) == (
            False,
            "gfpgan",
            "crop",
            256,
        )
        assert (options.render.expression_scale, options.render.pose_style, options.r2, options.seed) == (
            1.0,
            0,
            None,
            None,
        )

    def test_base64_is_decoded_into_bytes(self):
        options = parse_job_input(job())
        assert options.image.data == b"\x89PNG fake image bytes"
        assert options.audio.data == b"RIFF fake audio bytes"
        assert options.image.url is None

    def test_data_uri_prefix_and_line_breaks_are_accepted(self):
        wrapped = "\n".join(IMAGE[i : i + 8] for i in range(0, len(IMAGE), 8))
        options = parse_job_input(job(image_base64="data:image/png;base64," + wrapped))
        assert options.image.data == b"\x89PNG fake image bytes"

    def test_urls_are_kept_as_given(self):
        options = parse_job_input(job(image_base64=..., image_url="https://example.com/face.png?sig=1"))
        assert options.image.url == "https://example.com/face.png?sig=1"
        assert options.image.data is None

    def test_every_option_is_read(self):
        options = parse_job_input(
            job(
                still_mode=True,
                enhancer="none",
                preprocess="full",
                size=512,
                expression_scale=2,
                pose_style=45,
                seed=0,
            )
        )
        assert options.render.still_mode is True
        assert (
            options.render.enhancer,
            options.render.preprocess,
            options.render.size,
            options.render.pose_style,
            options.seed,
        ) == (
            "none",
            "full",
            512,
            45,
            0,
        )
        assert options.render.expression_scale == 2.0 and isinstance(options.render.expression_scale, float)

    @pytest.mark.parametrize("fps", [20, 24, 25, 30, 48, 50, 60])
    def test_fps_is_an_integer_from_20_to_60_and_defaults_to_25(self, fps):
        assert parse_job_input(job()).render.fps == 25
        assert parse_job_input(job(fps=fps)).render.fps == fps

    def test_options_are_frozen(self):
        options = parse_job_input(job())
        with pytest.raises(dataclasses.FrozenInstanceError):
            options.render.size = 512

    def test_null_means_absent_for_fields_without_a_default(self):
        options = parse_job_input(job(image_url=None, seed=None, r2=None))
        assert options.seed is None and options.r2 is None

    def test_repr_shows_neither_payload_nor_query_string(self):
        options = parse_job_input(job(image_base64=..., image_url="https://h.example/a.png?token=SECRET"))
        text = repr(options)
        assert "SECRET" not in text and IMAGE not in text and "h.example/a.png" in text


class TestSources:
    def test_both_image_sources_are_refused(self):
        assert "exactly one of image_url or image_base64" in refused(job(image_url="https://a.example/x.png"))

    def test_missing_audio_is_refused(self):
        assert "audio_url or audio_base64 (neither" in refused(job(audio_base64=...))

    @pytest.mark.parametrize("url", ["ftp://a.example/x.png", "file:///etc/passwd", "a.example/x.png", "gopher://x"])
    def test_non_http_schemes_are_refused(self, url):
        assert "http:// or https://" in refused(job(image_base64=..., image_url=url))

    def test_url_without_host_is_refused(self):
        assert "no host" in refused(job(image_base64=..., image_url="http:///x.png"))

    def test_url_with_a_bad_port_is_refused(self):
        assert "not a valid URL" in refused(job(image_base64=..., image_url="http://a.example:99999/x"))

    def test_non_string_source_is_refused(self):
        assert "image_base64 must be a string" in refused(job(image_base64=12))

    @pytest.mark.parametrize("payload", ["not base64 at all!", "QUJD$", "====", ""])
    def test_broken_base64_is_refused(self, payload):
        message = refused(job(audio_base64=payload))
        assert "audio_base64" in message


class TestStrictTypes:
    @pytest.mark.parametrize(
        "field, value, expected",
        [
            ("size", True, "size must be the integer 256 or 512"),
            ("size", "256", "size must be the integer 256 or 512"),
            ("size", 256.0, "size must be the integer 256 or 512"),
            ("size", 384, "size must be the integer 256 or 512"),
            ("pose_style", True, "pose_style must be an integer from 0 to 45"),
            ("pose_style", 46, "pose_style must be an integer from 0 to 45"),
            ("pose_style", -1, "pose_style must be an integer from 0 to 45"),
            ("pose_style", 1.5, "pose_style must be an integer from 0 to 45"),
            ("fps", "30", "fps must be an integer from 20 to 60, got string '30'"),
            ("fps", 29.97, "fps must be an integer from 20 to 60, got number 29.97"),
            ("fps", 30.0, "fps must be an integer from 20 to 60, got number 30.0"),
            ("fps", 19, "fps must be an integer from 20 to 60, got number 19"),
            ("fps", 61, "fps must be an integer from 20 to 60, got number 61"),
            ("fps", True, "fps must be an integer from 20 to 60, got boolean true"),
            ("fps", None, "fps must be an integer from 20 to 60, got null"),
            ("expression_scale", "1.0", "expression_scale must be a number from 0 to 3"),
            ("expression_scale", float("nan"), "expression_scale must be a number from 0 to 3"),
            ("expression_scale", float("inf"), "expression_scale must be a number from 0 to 3"),
            ("expression_scale", 3.5, "expression_scale must be a number from 0 to 3"),
            ("expression_scale", -0.1, "expression_scale must be a number from 0 to 3"),
            ("expression_scale", False, "expression_scale must be a number from 0 to 3"),
            ("still_mode", 1, "still_mode must be true or false"),
            ("still_mode", "true", "still_mode must be true or false"),
            ("still_mode", None, "still_mode must be true or false"),
            ("enhancer", "GFPGAN", "enhancer must be one of 'gfpgan', 'restoreformer', 'none'"),
            ("enhancer", None, "enhancer must be one of 'gfpgan', 'restoreformer', 'none'"),
            ("preprocess", "ext", "preprocess must be one of 'crop', 'resize', 'full', 'extcrop', 'extfull'"),
            ("seed", -1, "seed must be an integer from 0 to 4294967295"),
            ("seed", 2**32, "seed must be an integer from 0 to 4294967295"),
            ("seed", "42", "seed must be an integer from 0 to 4294967295"),
            ("seed", True, "seed must be an integer from 0 to 4294967295"),
            (
                "input_yaw",
                15,
                "input_yaw must be a list of 1 to 16 numbers from -90 to 90 (degrees), got number 15, e.g. [15]",
            ),
            ("input_pitch", [], "input_pitch must be a list of 1 to 16 numbers"),
            ("input_roll", [0] * 17, "input_roll must be a list of 1 to 16 numbers"),
            ("input_yaw", [0, 91], "item 1 is number 91"),
            ("input_yaw", [0, "5"], "item 1 is string '5'"),
            ("input_pitch", [True], "item 0 is boolean true"),
            ("input_roll", [float("nan")], "item 0 is number nan"),
            ("input_yaw", "[0, 15]", "input_yaw must be a list"),
            ("pose_scale", 2.5, "pose_scale must be a number from 0 to 2"),
            ("pose_scale", -0.1, "pose_scale must be a number from 0 to 2"),
            ("pose_scale", "1", "pose_scale must be a number from 0 to 2"),
            ("pose_scale", None, "pose_scale must be a number from 0 to 2"),
            ("use_blink", 0, "use_blink must be true or false"),
            ("use_blink", "false", "use_blink must be true or false"),
        ],
    )
    def test_wrong_type_or_range_is_refused_saying_what_is_allowed(self, field, value, expected):
        assert expected in refused(job(**{field: value}))

    def test_camera_pose_scale_and_blink_fields(self):
        render = parse_job_input(
            job(input_yaw=[0, 15], input_pitch=[-90, 90.0, 0], input_roll=[5], pose_scale=0, use_blink=False)
        ).render
        assert render.input_yaw == (0.0, 15.0) and render.input_pitch == (-90.0, 90.0, 0.0)
        assert render.input_roll == (5.0,)
        assert render.pose_scale == 0.0 and render.use_blink is False
        defaults = parse_job_input(job(input_yaw=None)).render
        assert (defaults.input_yaw, defaults.pose_scale, defaults.use_blink) == (None, 1.0, True)
        assert len(parse_job_input(job(input_roll=[1] * 16)).render.input_roll) == 16

    @pytest.mark.parametrize("mode", ["full", "extfull"])
    def test_paste_defaults_to_seamless_and_takes_feather_in_the_full_modes(self, mode):
        assert parse_job_input(job(preprocess=mode)).render.paste == "seamless"
        assert parse_job_input(job(preprocess=mode, paste="feather")).render.paste == "feather"
        assert parse_job_input(job(preprocess=mode, paste="seamless")).render.paste == "seamless"

    @pytest.mark.parametrize(
        "fields, expected",
        [
            ({"preprocess": "full", "paste": "Seamless"}, "paste must be one of 'seamless', 'feather', got 'Seamless'"),
            ({"preprocess": "full", "paste": None}, "paste must be one of 'seamless', 'feather', got null"),
            ({"preprocess": "extfull", "paste": True}, "paste must be one of 'seamless', 'feather', got boolean true"),
            ({"preprocess": "full", "paste": 1}, "paste must be one of 'seamless', 'feather', got number 1"),
            ({"paste": "feather"}, "paste applies only to preprocess 'full' or 'extfull'"),
            ({"preprocess": "extcrop", "paste": "seamless"}, "with preprocess 'extcrop' leave it out"),
            ({"preprocess": "resize", "paste": "feather"}, "with preprocess 'resize' leave it out"),
        ],
    )
    def test_paste_is_refused_with_a_bad_value_or_outside_the_full_modes(self, fields, expected):
        assert expected in refused(job(**fields))

    @pytest.mark.parametrize("value", [0, 3, 0.5, 3.0])
    def test_expression_scale_range_is_inclusive(self, value):
        assert parse_job_input(job(expression_scale=value)).render.expression_scale == value


class TestUnknownFieldsAndShape:
    def test_unknown_fields_are_named(self):
        message = refused(job(sise=512, stil_mode=True))
        assert "sise" in message and "stil_mode" in message and "allowed fields" in message

    @pytest.mark.parametrize("raw", [None, [], "input", 5])
    def test_input_must_be_an_object(self, raw):
        assert "job input must be a JSON object" in refused(raw)


class TestR2:
    def test_complete_r2_object_is_read(self):
        r2 = {
            "endpoint_url": "https://acc.r2.cloudflarestorage.com",
            "access_key_id": "AK",
            "secret_access_key": "SK",
            "bucket_name": "b",
        }
        options = parse_job_input(job(r2=r2))
        assert options.r2 == R2Credentials(**r2)

    def test_partial_r2_object_is_kept_for_the_environment_to_complete(self):
        options = parse_job_input(job(r2={"bucket_name": "other-bucket"}))
        assert options.r2 == R2Credentials(bucket_name="other-bucket")

    def test_unknown_r2_field_is_named(self):
        assert "r2: region" in refused(job(r2={"region": "auto"}))

    def test_r2_must_be_an_object(self):
        assert "r2 must be an object" in refused(job(r2="https://x"))

    @pytest.mark.parametrize("value", ["", "   ", 5, True])
    def test_r2_fields_must_be_non_empty_strings(self, value):
        assert "r2.bucket_name must be a non-empty string" in refused(job(r2={"bucket_name": value}))

    def test_r2_endpoint_must_be_http(self):
        assert "r2.endpoint_url must be an http:// or https:// URL" in refused(job(r2={"endpoint_url": "s3://b"}))

    def test_secret_is_not_in_the_repr(self):
        options = parse_job_input(job(r2={"secret_access_key": "TOP-SECRET-VALUE"}))
        assert "TOP-SECRET-VALUE" not in repr(options)

    def test_secret_is_not_echoed_when_another_r2_field_is_wrong(self):
        message = refused(job(r2={"secret_access_key": "TOP-SECRET-VALUE", "bucket_name": 7}))
        assert "TOP-SECRET-VALUE" not in message


def test_job_options_type_is_the_dataclass():
    assert isinstance(parse_job_input(job()), JobOptions)
