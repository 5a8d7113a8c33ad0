"""Start-up checks: weight files by size, ffmpeg, device, the refusal message and the RunPod fitness check."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sadtalker.output import ffmpeg as tools
from sadtalker.weights import table as weights
from sadtalker.worker import startup
from sadtalker.worker.settings import Settings
from sadtalker.worker.startup import StartupError, run_checks

NAME_512 = "SadTalker_V0.0.2_512.safetensors"


def settings_for(folder: Path, **env: str) -> Settings:
    return Settings.from_env({"CHECKPOINTS_DIR": str(folder), "DEVICE": "cpu", **env})


def make_stand_ins(folder: Path, skip: tuple = ()) -> None:
    """Sparse files with the table's exact sizes (no data written)."""
    folder.mkdir(parents=True, exist_ok=True)
    for weight in weights.WEIGHTS:
        if weight.name not in skip:
            with open(folder / weight.name, "wb") as handle:
                handle.truncate(weight.size_bytes)


def fake_ffmpeg(folder: Path, script: str) -> Path:
    """A fake ``ffmpeg`` executable in ``folder`` running the given shell body."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "ffmpeg"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


class TestWeights:
    def test_the_table_lists_exactly_the_files_the_loader_opens(self) -> None:
        """Nothing is downloaded, baked or required that no loader reads (parsing_parsenet.pth was, until #14)."""
        from sadtalker.weights import loader

        opened = {
            loader.sadtalker_file_name(256),
            loader.sadtalker_file_name(512),
            *loader.MAPPING_FILES.values(),
            loader.GFPGAN_FILE,
            loader.DETECTION_FILE,
            loader.ALIGNMENT_FILE,
        }
        assert {w.name for w in weights.WEIGHTS} == opened

    def test_empty_dir_lists_every_required_file_and_the_download_command(self, tmp_path) -> None:
        with pytest.raises(StartupError) as err:
            run_checks(settings_for(tmp_path))
        message = str(err.value)
        for weight in weights.WEIGHTS:
            assert (f"{weight.name}: missing" in message) == (weight.name != NAME_512)
        assert f"Fetch them with: CHECKPOINTS_DIR={tmp_path} {startup.DOWNLOAD_SCRIPT} --size 256" in message
        assert message.startswith("The worker cannot start:\n6 weight file(s) missing")

    def test_load_512_at_startup_requires_the_512_file_and_fetches_all(self, tmp_path) -> None:
        with pytest.raises(StartupError) as err:
            run_checks(settings_for(tmp_path, LOAD_512="startup"))
        assert f"{NAME_512}: missing" in str(err.value)
        assert str(err.value).endswith("--size all")

    def test_stand_ins_of_the_right_size_pass(self, tmp_path) -> None:
        make_stand_ins(tmp_path)
        report = run_checks(settings_for(tmp_path, LOAD_512="startup"))
        assert sorted(report.weights) == sorted(w.name for w in weights.WEIGHTS)
        assert report.device == "cpu"
        assert report.checkpoints_dir == str(tmp_path.resolve())
        assert report.notes == ()

    def test_a_wrong_size_is_reported_with_both_sizes(self, tmp_path) -> None:
        make_stand_ins(tmp_path)
        gfpgan = weights.by_name("GFPGANv1.4.pth")
        os.truncate(tmp_path / gfpgan.name, 1000)
        with pytest.raises(StartupError) as err:
            run_checks(settings_for(tmp_path))
        assert f"GFPGANv1.4.pth: 1000 bytes, expected {gfpgan.size_bytes}" in str(err.value)
        assert "1 weight file(s) missing or incomplete" in str(err.value)
        assert str(err.value).endswith(
            "not the official weights (generated test weights, for example): `make demo` "
            "runs the worker on those, with CHECK_WEIGHT_SIZES=false"
        )

    def test_size_check_off_accepts_other_sizes_but_still_needs_every_file(self, tmp_path) -> None:
        make_stand_ins(tmp_path, skip=("detection_Resnet50_Final.pth",))
        os.truncate(tmp_path / "GFPGANv1.4.pth", 1000)
        with pytest.raises(StartupError) as err:
            run_checks(settings_for(tmp_path, CHECK_WEIGHT_SIZES="false"))
        assert "detection_Resnet50_Final.pth: missing" in str(err.value)
        assert "GFPGANv1.4.pth" not in str(err.value)
        (tmp_path / "detection_Resnet50_Final.pth").write_bytes(b"x")
        report = run_checks(settings_for(tmp_path, CHECK_WEIGHT_SIZES="false"))
        assert "GFPGANv1.4.pth" in report.weights
        (note,) = [note for note in report.notes if note.startswith("CHECK_WEIGHT_SIZES=false")]
        assert "2 weight file(s) are not the official ones" in note
        assert "GFPGANv1.4.pth" in note and "detection_Resnet50_Final.pth" in note
        assert startup.unofficial_weights(settings_for(tmp_path)) == ("GFPGANv1.4.pth", "detection_Resnet50_Final.pth")

    def test_official_sizes_with_the_check_off_are_only_checked_for_presence(self, tmp_path) -> None:
        make_stand_ins(tmp_path)
        report = run_checks(settings_for(tmp_path, CHECK_WEIGHT_SIZES="false"))
        assert report.notes == ("CHECK_WEIGHT_SIZES=false: weight files are checked for presence only",)

    def test_an_empty_file_fails_even_with_the_size_check_off(self, tmp_path) -> None:
        make_stand_ins(tmp_path)
        os.truncate(tmp_path / "GFPGANv1.4.pth", 0)
        with pytest.raises(StartupError, match="GFPGANv1.4.pth: 0 bytes"):
            run_checks(settings_for(tmp_path, CHECK_WEIGHT_SIZES="false"))

    def test_absent_512_file_with_lazy_loading_only_adds_a_note(self, tmp_path) -> None:
        make_stand_ins(tmp_path, skip=(NAME_512,))
        report = run_checks(settings_for(tmp_path, LOAD_512="lazy"))
        assert NAME_512 not in report.weights
        assert len(report.notes) == 1 and NAME_512 in report.notes[0] and "--size 512" in report.notes[0]

    def test_dlib_face_finder_does_not_need_the_fan_landmark_file(self, tmp_path) -> None:
        make_stand_ins(tmp_path, skip=("alignment_WFLW_4HG.pth",))
        report = run_checks(settings_for(tmp_path, FACE_DETECTOR="dlib"))
        assert "alignment_WFLW_4HG.pth" not in report.weights
        with pytest.raises(StartupError, match="alignment_WFLW_4HG.pth: missing"):
            run_checks(settings_for(tmp_path, FACE_DETECTOR="retinaface"))


class TestFfmpeg:
    def test_system_ffmpeg_on_path_is_preferred(self, tmp_path, monkeypatch) -> None:
        exe = fake_ffmpeg(tmp_path / "bin", "exit 0\n")
        monkeypatch.setenv("PATH", str(exe.parent))
        assert tools.ffmpeg_exe() == str(exe)

    def test_without_system_ffmpeg_the_imageio_binary_is_used(self, tmp_path, monkeypatch) -> None:
        import imageio_ffmpeg

        monkeypatch.setenv("PATH", str(tmp_path))
        assert tools.ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()

    def test_real_ffmpeg_runs_and_is_reported(self, tmp_path) -> None:
        make_stand_ins(tmp_path)
        report = run_checks(settings_for(tmp_path))
        assert report.ffmpeg.startswith(tools.ffmpeg_exe() + ": ffmpeg version")

    def test_an_ffmpeg_that_fails_stops_the_start(self, tmp_path, monkeypatch) -> None:
        make_stand_ins(tmp_path / "ckpt")
        fake_ffmpeg(tmp_path / "bin", "echo 'libfoo.so: cannot open shared object' >&2\nexit 127\n")
        monkeypatch.setenv("PATH", str(tmp_path / "bin"))
        with pytest.raises(StartupError, match="does not run.*libfoo.so"):
            run_checks(settings_for(tmp_path / "ckpt"))

    def test_an_ffmpeg_without_libx264_stops_the_start(self, tmp_path, monkeypatch) -> None:
        make_stand_ins(tmp_path / "ckpt")
        body = 'case "$2" in -version) echo "ffmpeg version 0-test";; -encoders) echo " A..... aac AAC";; esac\n'
        fake_ffmpeg(tmp_path / "bin", body)
        monkeypatch.setenv("PATH", str(tmp_path / "bin"))
        with pytest.raises(StartupError, match=r"lacks encoder\(s\): libx264$"):
            run_checks(settings_for(tmp_path / "ckpt"))


class TestDevice:
    def test_a_cuda_device_is_reported_by_name_and_memory(self, tmp_path, monkeypatch) -> None:
        make_stand_ins(tmp_path)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        props = SimpleNamespace(name="Test GPU", total_memory=80 * 1024**3)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
        report = run_checks(settings_for(tmp_path, DEVICE="auto"))
        assert report.device == "cuda:0 Test GPU, 80.0 GiB"

    def test_device_cuda_without_a_gpu_stops_the_start(self, tmp_path, monkeypatch) -> None:
        make_stand_ins(tmp_path)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(StartupError, match="DEVICE=cuda but no CUDA device is usable"):
            run_checks(settings_for(tmp_path, DEVICE="cuda"))
        assert run_checks(settings_for(tmp_path, DEVICE="auto")).device == "cpu"
        with pytest.raises(StartupError, match="DEVICE=auto but no CUDA device"):
            run_checks(settings_for(tmp_path, DEVICE="auto"), require_cuda=True)

    def test_every_problem_is_listed_in_one_error(self, tmp_path, monkeypatch) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        fake_ffmpeg(tmp_path / "bin", "exit 1\n")
        monkeypatch.setenv("PATH", str(tmp_path / "bin"))
        with pytest.raises(StartupError) as err:
            run_checks(settings_for(tmp_path / "empty", DEVICE="cuda"))
        text = str(err.value)
        assert "weight file(s) missing" in text and "does not run" in text and "DEVICE=cuda" in text


class TestEntryPoints:
    def test_check_or_exit_logs_the_message_and_exits_1(self, tmp_path, caplog) -> None:
        with caplog.at_level(logging.ERROR, logger="sadtalker.worker.startup"), pytest.raises(SystemExit) as exited:
            startup.check_or_exit(settings_for(tmp_path))
        assert exited.value.code == 1
        assert "Fetch them with: CHECKPOINTS_DIR=" in caplog.text

    def test_check_or_exit_logs_the_report(self, tmp_path, caplog) -> None:
        make_stand_ins(tmp_path)
        with caplog.at_level(logging.INFO, logger="sadtalker.worker.startup"):
            report = startup.check_or_exit(settings_for(tmp_path))
        assert f"start-up check: device: {report.device}" in caplog.text

    def test_fitness_check_is_registered_with_runpod_and_runs_the_same_checks(self, tmp_path) -> None:
        from runpod.serverless.modules import rp_fitness

        before = list(rp_fitness._fitness_checks)
        try:
            check = startup.register_fitness_check(settings_for(tmp_path))
            assert rp_fitness._fitness_checks[-1] is check
            with pytest.raises(RuntimeError, match="weight file\\(s\\) missing"):
                check()
            make_stand_ins(tmp_path)
            check()  # DEVICE=cpu: no GPU needed
        finally:
            rp_fitness._fitness_checks[:] = before

    def test_fitness_check_requires_a_gpu_unless_device_is_cpu(self, tmp_path, monkeypatch) -> None:
        from runpod.serverless.modules import rp_fitness

        make_stand_ins(tmp_path)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        before = list(rp_fitness._fitness_checks)
        try:
            check = startup.register_fitness_check(settings_for(tmp_path, DEVICE="auto"))
            with pytest.raises(RuntimeError, match="no CUDA device"):
                check()
        finally:
            rp_fitness._fitness_checks[:] = before


class TestSizes:
    def test_a_256_only_worker_serves_only_256(self, tmp_path) -> None:
        make_stand_ins(tmp_path, skip=(NAME_512,))
        assert startup.servable_sizes(settings_for(tmp_path, LOAD_512="lazy")) == (256,)
        hint = startup.missing_size_hint(settings_for(tmp_path), 512)
        assert NAME_512 in hint and "--size 512" in hint and str(tmp_path.resolve()) in hint

    def test_the_512_file_makes_512_servable_lazily_even_when_fetched_later(self, tmp_path) -> None:
        make_stand_ins(tmp_path, skip=(NAME_512,))
        settings = settings_for(tmp_path, LOAD_512="lazy")
        assert startup.servable_sizes(settings) == (256,)
        make_stand_ins(tmp_path)  # the operator fetches it while the worker runs
        assert startup.servable_sizes(settings) == (256, 512)

    def test_an_incomplete_512_file_is_not_servable_unless_sizes_are_unchecked(self, tmp_path) -> None:
        make_stand_ins(tmp_path)
        os.truncate(tmp_path / NAME_512, 1000)
        assert startup.servable_sizes(settings_for(tmp_path)) == (256,)
        assert startup.servable_sizes(settings_for(tmp_path, CHECK_WEIGHT_SIZES="false")) == (256, 512)

    def test_load_512_at_startup_serves_both(self, tmp_path) -> None:
        assert startup.servable_sizes(settings_for(tmp_path, LOAD_512="startup")) == (256, 512)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


R2_SECRET = "startup-secret-0123456789"


def r2_env(endpoint: str, **overrides: str) -> dict:
    env = {
        "R2_ENDPOINT_URL": endpoint,
        "R2_ACCESS_KEY_ID": "key-id",
        "R2_SECRET_ACCESS_KEY": R2_SECRET,
        "R2_BUCKET_NAME": "videos",
    }
    env.update(overrides)
    return env


class TestStorage:
    """The operator's R2 destination at start-up. Wrong key and missing bucket: tests/test_storage_swift.py."""

    def test_without_r2_results_are_inline_and_nothing_is_checked(self, tmp_path) -> None:
        make_stand_ins(tmp_path)
        assert run_checks(settings_for(tmp_path)).storage.startswith("no R2_*: results come back inline")

    def test_an_unreachable_endpoint_stops_the_start_naming_it_without_the_secret(self, tmp_path) -> None:
        make_stand_ins(tmp_path)
        port = closed_port()
        with pytest.raises(StartupError) as err:
            run_checks(settings_for(tmp_path, **r2_env(f"http://127.0.0.1:{port}")))
        text = str(err.value)
        assert f"cannot reach the storage endpoint http://127.0.0.1:{port} for bucket 'videos'" in text
        assert "EndpointConnectionError" in text and "R2_CHECK_AT_STARTUP=false" in text
        assert R2_SECRET not in text

    def test_the_check_can_be_turned_off(self, tmp_path) -> None:
        make_stand_ins(tmp_path)
        env = r2_env(f"http://127.0.0.1:{closed_port()}", R2_CHECK_AT_STARTUP="false")
        report = run_checks(settings_for(tmp_path, **env))
        assert report.storage.endswith("not checked (R2_CHECK_AT_STARTUP=false)")

    def test_partly_set_r2_is_a_note_not_a_refusal(self, tmp_path) -> None:
        make_stand_ins(tmp_path)
        report = run_checks(settings_for(tmp_path, R2_BUCKET_NAME="videos"))
        assert any("R2_BUCKET_NAME" not in note and "R2_ENDPOINT_URL" in note for note in report.notes)

    def test_a_non_http_endpoint_with_every_r2_variable_set_stops_the_start(self, tmp_path) -> None:
        make_stand_ins(tmp_path)
        with pytest.raises(StartupError, match="R2 storage: the R2 endpoint_url must be an http"):
            run_checks(settings_for(tmp_path, **r2_env("s3://videos")))

    def test_the_fitness_check_checks_the_destination_too(self, tmp_path) -> None:
        from runpod.serverless.modules import rp_fitness

        make_stand_ins(tmp_path)
        before = list(rp_fitness._fitness_checks)
        try:
            check = startup.register_fitness_check(
                settings_for(tmp_path, **r2_env(f"http://127.0.0.1:{closed_port()}"))
            )
            with pytest.raises(RuntimeError, match="cannot reach the storage endpoint"):
                check()
        finally:
            rp_fitness._fitness_checks[:] = before
