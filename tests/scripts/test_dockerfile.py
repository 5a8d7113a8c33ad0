"""The image recipe and its RunPod files: hadolint, install parity with the Makefile, .dockerignore, the
start command (scripts/entrypoint.sh) and .runpod/hub.json / tests.json. No Docker daemon is needed."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

from sadtalker.worker.settings import Settings
from tests.support import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
ENTRYPOINT = REPO_ROOT / "scripts" / "entrypoint.sh"


def found(pattern: str, text: str) -> str:
    """Group 1 of the first match of ``pattern`` (multi-line) in ``text``; fails naming the pattern if none."""
    match = re.search(pattern, text, re.M)
    assert match is not None, f"no line matches {pattern!r}"
    return match.group(1)


def instructions(text: str) -> List[Tuple[str, str]]:
    """(KEYWORD, arguments) per Dockerfile instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def requirement_installs(text: str) -> List[Tuple[Tuple[str, ...], Tuple[str, ...]]]:
    """(requirement files, dependency flags) of each ``install ... -r FILE`` command, in order."""
    flags_of_interest = ("--no-deps", "--no-build-isolation")
    out = []
    for command in re.split(r"&&|;|\n", re.sub(r"\\\n", " ", text)):
        tokens = command.split()
        if "install" not in tokens:
            continue
        files = tuple(tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t == "-r")
        if files:
            out.append((files, tuple(sorted(t for t in tokens if t in flags_of_interest))))
    return out


class TestDockerfile:
    text = DOCKERFILE.read_text()

    def test_hadolint_passes_with_no_findings(self) -> None:
        result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == ""

    def test_installs_the_same_requirement_files_in_the_same_order_as_the_makefile(self) -> None:
        makefile = REPO_ROOT / "Makefile"
        if not makefile.exists():
            pytest.skip("no Makefile in this checkout")
        runtime = [
            entry for entry in requirement_installs(makefile.read_text()) if entry[0] != ("requirements-test.txt",)
        ]
        assert runtime, "the Makefile installs no requirement files"
        # The image first installs torch/torchvision alone from PyTorch's CUDA index, then exactly what make does.
        assert requirement_installs(self.text) == [(("requirements-torch.txt",), ())] + runtime

    def test_every_runtime_requirement_file_is_installed_torch_first(self) -> None:
        installed = [name for files, _ in requirement_installs(self.text) for name in files]
        expected = sorted(p.name for p in REPO_ROOT.glob("requirements*.txt") if "test" not in p.name)
        assert sorted(set(installed)) == expected
        assert installed[0] == "requirements-torch.txt"
        assert (("requirements-nodeps.txt",), ("--no-build-isolation", "--no-deps")) in requirement_installs(self.text)

    def test_base_image_is_cuda_12_8_built_from_the_one_cuda_version_argument(self) -> None:
        assert found(r"^ARG CUDA_VERSION=(\S+)$", self.text) == "12.8.1"
        base = found(r"^ARG BASE_IMAGE=(\S+)$", self.text)
        assert base == "nvidia/cuda:${CUDA_VERSION}-base-ubuntu24.04"
        assert self.text.index("ARG CUDA_VERSION=") < self.text.index("ARG BASE_IMAGE=") < self.text.index("FROM ")

    def torch_index_install(self) -> str:
        """The RUN that installs requirements-torch.txt from PyTorch's wheel index, continuation lines joined."""
        runs = [args for kw, args in instructions(self.text) if kw == "RUN" and "download.pytorch.org" in args]
        assert len(runs) == 1, runs
        return runs[0]

    def wheel_index(self, **args: str) -> str:
        """The torch wheel index the build would use for these build arguments (the RUN's own shell code)."""
        run = self.torch_index_install()
        derive = run.split("&&")[0].strip()
        assert derive.startswith("torch_cuda=")
        env = {"PATH": os.environ["PATH"], "CUDA_VERSION": "", "TORCH_CUDA": "", **args}
        out = subprocess.run(
            ["bash", "-c", derive + ' && echo "$torch_cuda"'],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout.strip()

    def test_torch_wheels_come_from_the_pytorch_index_matching_the_base_cuda(self) -> None:
        assert self.wheel_index(CUDA_VERSION="12.8.1") == "cu128"  # the default image
        assert self.wheel_index(CUDA_VERSION="13.0.1") == "cu130"  # one flag away
        assert self.wheel_index(CUDA_VERSION="12.8.1", TORCH_CUDA="cu129") == "cu129"  # the explicit override
        assert re.search(r"^ARG TORCH_CUDA=\S*$", self.text, re.M)

    def test_only_torch_and_torchvision_come_from_the_pytorch_index(self) -> None:
        commands = [c.strip() for c in self.torch_index_install().split("&&")]
        from_index = [c for c in commands if "--index-url" in c]
        assert from_index == [
            'pip install --no-cache-dir --index-url "https://download.pytorch.org/whl/${torch_cuda}" '
            "-r requirements-torch.txt"
        ]
        assert not any("--extra-index-url" in c for c in commands)
        pins = [
            line
            for line in (REPO_ROOT / "requirements-torch.txt").read_text().splitlines()
            if line and not line.startswith("#")
        ]
        assert sorted(p.split("==")[0] for p in pins) == ["torch", "torchvision"]
        assert all(re.fullmatch(r"[a-z]+==\d+\.\d+\.\d+", p) for p in pins), pins  # +cu128 builds match ==
        assert commands[-1].startswith('python -c "import sys, torch;') and commands[-1].endswith('"${torch_cuda}"')

    def test_python_in_the_image_is_the_version_the_pins_were_tested_on(self) -> None:
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        assert re.search(rf"apt-get install[^&]*\b{re.escape(version)}\b", self.text)
        assert f"{version} -m venv /opt/venv" in self.text

    def test_weights_are_baked_by_the_download_script_in_their_own_stage(self) -> None:
        steps = instructions(self.text)
        froms = [args for kw, args in steps if kw == "FROM"]
        assert froms == ["${BASE_IMAGE} AS weights", "${BASE_IMAGE} AS worker"]
        weight_stage = steps[: next(i for i, (kw, a) in enumerate(steps) if a == "${BASE_IMAGE} AS worker")]
        assert any(kw == "RUN" and "download_models.sh --size" in a for kw, a in weight_stage)
        checkpoints = found(r"CHECKPOINTS_DIR=(\S+)", self.text)
        assert ("COPY", f"--from=weights /weights {checkpoints}") in steps

    def test_unbuffered_python_exec_form_cmd_and_a_numeric_non_root_user(self) -> None:
        steps = instructions(self.text)
        assert any(kw == "ENV" and "PYTHONUNBUFFERED=1" in a for kw, a in steps)
        cmd = [a for kw, a in steps if kw == "CMD"]
        assert len(cmd) == 1 and json.loads(cmd[0]) == ["bash", "/app/scripts/entrypoint.sh"]
        user = [a for kw, a in steps if kw == "USER"]
        assert user and re.fullmatch(r"[1-9]\d*:[1-9]\d*", user[-1])

    def test_every_copied_path_survives_dockerignore(self) -> None:
        patterns = dockerignore_patterns()
        for kw, args in instructions(self.text):
            if kw == "COPY" and not args.startswith("--from"):
                for source in args.split()[:-1]:
                    assert not ignored(source.rstrip("/"), patterns), source


def dockerignore_patterns() -> List[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return out


def ignored(path: str, patterns: List[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").rstrip("/"))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            result = not negated
    return result


class TestDockerignore:
    @pytest.mark.parametrize(
        "path",
        [
            "handler.py",
            "sadtalker/worker/startup.py",
            "scripts/download_models.sh",
            "scripts/weights.tsv",
            "requirements.txt",
            "test_input.json",
        ],
    )
    def test_code_and_pins_are_sent(self, path: str) -> None:
        assert not ignored(path, dockerignore_patterns())

    @pytest.mark.parametrize(
        "path",
        [
            ".venv/bin/python",
            ".git/HEAD",
            "checkpoints/GFPGANv1.4.pth",
            "tests/golden/scenario_a/crop.npz",
            "sadtalker/__pycache__/startup.cpython-311.pyc",
            ".env",
            "checkpoints/x.part",
            "output/local.mp4",
        ],
    )
    def test_venv_weights_tests_caches_and_secrets_are_not_sent(self, path: str) -> None:
        assert ignored(path, dockerignore_patterns())


def run_entrypoint(tmp_path: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    """Run scripts/entrypoint.sh with a stand-in python that prints its working dir and argv."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\npwd\nfor a in "$@"; do echo "$a"; done\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "WORKER_MODE", "RP_API"))}
    full_env.update(PYTHON=str(fake), **env)
    return subprocess.run(["bash", str(ENTRYPOINT), *args], env=full_env, capture_output=True, text=True, timeout=30)


class TestEntrypoint:
    def test_off_runpod_it_serves_the_local_api_on_all_interfaces_port_8000(self, tmp_path) -> None:
        result = run_entrypoint(tmp_path, {})
        assert result.returncode == 0, result.stderr
        lines = result.stdout.split()
        assert lines[0] == str(REPO_ROOT)
        assert lines[1:] == ["-u", "handler.py", "--rp_serve_api", "--rp_api_host", "0.0.0.0", "--rp_api_port", "8000"]

    def test_on_runpod_it_starts_the_plain_serverless_worker(self, tmp_path) -> None:
        result = run_entrypoint(tmp_path, {"RUNPOD_WEBHOOK_GET_JOB": "https://api.runpod.ai/v2/x/job-take"})
        assert result.stdout.split()[1:] == ["-u", "handler.py"]

    def test_worker_mode_and_port_override_and_extra_arguments_pass_through(self, tmp_path) -> None:
        result = run_entrypoint(tmp_path, {"WORKER_MODE": "api", "RP_API_PORT": "9000"}, "--rp_log_level", "DEBUG")
        assert result.stdout.split()[-4:] == ["--rp_api_port", "9000", "--rp_log_level", "DEBUG"]
        forced = run_entrypoint(tmp_path, {"WORKER_MODE": "serverless"})
        assert forced.stdout.split()[1:] == ["-u", "handler.py"]

    def test_an_unknown_worker_mode_is_refused(self, tmp_path) -> None:
        result = run_entrypoint(tmp_path, {"WORKER_MODE": "gpu"})
        assert result.returncode == 2
        assert "WORKER_MODE must be auto, serverless or api" in result.stderr

    def test_the_runpod_sdk_parses_the_api_arguments(self, tmp_path) -> None:
        from runpod.serverless import parser

        argv = run_entrypoint(tmp_path, {}).stdout.split()[3:]
        args, unknown = parser.parse_known_args(argv)
        assert unknown == []
        assert (args.rp_serve_api, args.rp_api_host, args.rp_api_port) == (True, "0.0.0.0", 8000)


class TestRunpodFiles:
    hub = json.loads((REPO_ROOT / ".runpod" / "hub.json").read_text())
    tests = json.loads((REPO_ROOT / ".runpod" / "tests.json").read_text())

    def test_hub_has_the_required_fields(self) -> None:
        assert {"title", "description", "type", "category", "config"} <= set(self.hub)
        assert self.hub["type"] == "serverless" and self.hub["category"] == "video"
        config = self.hub["config"]
        assert config["runsOn"] == "GPU" and config["gpuCount"] == 1
        assert isinstance(config["containerDiskInGb"], int) and config["gpuIds"]

    def test_hub_env_defaults_parse_to_the_worker_defaults_and_other_values_change_them(self) -> None:
        def on_gpu(settings: Settings) -> Settings:  # the hub's endpoints run on GPUs: device defaults resolved
            return dataclasses.replace(settings, render_batch_size=settings.render_batch_for("cuda"))

        defaults = Settings()
        for entry in self.hub["config"]["env"]:
            key, spec = entry["key"], entry["input"]
            assert on_gpu(Settings.from_env({key: str(spec["default"])})) == on_gpu(defaults), key
            options = [o["value"] for o in spec.get("options", [])]
            if options:
                assert spec["default"] in options, key
                other = next(o for o in options if o != spec["default"])
            elif spec["type"] == "number":
                other = str(spec["default"] + 1)
            else:
                other = "https://example.invalid/other" if key.endswith("URL") else "other-value"
            assert Settings.from_env({key: other}) != defaults, f"{key} is not read by Settings.from_env"

    def test_tests_json_jobs_use_only_spec_input_fields(self) -> None:
        allowed = {
            "image_url",
            "image_base64",
            "audio_url",
            "audio_base64",
            "still_mode",
            "enhancer",
            "preprocess",
            "size",
            "expression_scale",
            "pose_style",
            "r2",
            "seed",
        }
        assert self.tests["tests"]
        for case in self.tests["tests"]:
            assert set(case["input"]) <= allowed, case["name"]
            assert case["input"]["image_url"].startswith("https://")
            assert isinstance(case["timeout"], int)
        assert self.tests["config"]["gpuTypeId"] and self.tests["config"]["gpuCount"] == 1

    def test_cuda_versions_agree_between_hub_and_tests(self) -> None:
        assert self.hub["config"]["allowedCudaVersions"] == self.tests["config"]["allowedCudaVersions"]

    def test_hosts_with_a_cuda_12_8_driver_or_newer_are_allowed(self) -> None:
        """The image's CUDA (12.8) is the oldest allowed; the newer drivers run it too."""
        allowed = self.hub["config"]["allowedCudaVersions"]
        assert allowed == ["12.8", "12.9", "13.0"]
        image = found(r"^ARG CUDA_VERSION=(\d+\.\d+)\.", DOCKERFILE.read_text())
        assert min(allowed, key=lambda v: tuple(map(int, v.split(".")))) == image


def test_readme_documents_the_docker_run_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "docker run --gpus all -p 8000:8000" in readme
    assert "scripts/download_models.sh --size" in readme
