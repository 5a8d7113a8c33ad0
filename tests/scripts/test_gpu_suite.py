"""scripts/gpu_suite.sh: the dry run executes every step on the CPU, writes its JSON files and prints the summary
table last; a step whose Python module is missing is reported as skipped, not failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

SUITE = REPO_ROOT / "scripts" / "gpu_suite.sh"
HELPER = ["-m", "bench.gpu"]  # run from the repo root
TABLE_HEAD = "device | case"


def suite_env(out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SADTALKER_REFERENCE", "SADTALKER_LANDMARKS")}
    return {**env, "OUT": str(out)}


def run_suite(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SUITE), *args], cwd=REPO_ROOT, env=suite_env(out), capture_output=True, text=True, timeout=900
    )


def table_lines(stdout: str) -> list:
    """The lines from the summary table's head to the end of the output."""
    lines = stdout.rstrip("\n").splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith(TABLE_HEAD)]
    assert len(heads) == 1, stdout[-3000:]
    return lines[heads[0] :]


def read(out: Path, name: str) -> dict:
    return json.loads((out / name).read_text())


@pytest.fixture(scope="module")
def dry_run(test_checkpoints_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_suite")
    return out, run_suite(out, "--dry-run", "--checkpoints", str(test_checkpoints_dir.resolve()))


def test_the_script_parses():
    subprocess.run(["bash", "-n", str(SUITE)], check=True)


@pytest.mark.slow
def test_dry_run_exits_0_with_every_step_ok(dry_run):
    out, proc = dry_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    steps = read(out, "steps.json")
    assert [s["step"] for s in steps] == ["versions", "weights", "precision", "profile", "bench_fp32_b2", "reference"]
    assert all(s["status"] == "ok" for s in steps), steps
    assert all((out / "logs" / f"{s['step']}.log").is_file() for s in steps)


@pytest.mark.slow
def test_dry_run_writes_the_json_of_every_step(dry_run, test_checkpoints_dir):
    out, _ = dry_run
    versions = read(out, "versions.json")
    assert {
        "python",
        "executable",
        "interpreter",
        "torch",
        "cuda",
        "cudnn",
        "device",
        "nvidia_smi",
        "capabilities",
    } <= set(versions)
    assert versions["interpreter"] == "the repository's .venv" and versions["device"].startswith("cpu")

    weights = read(out, "weights.json")
    assert weights["checkpoints"] == str(test_checkpoints_dir.resolve()) and len(weights["files"]) >= 7

    precision = read(out, "precision.json")
    assert precision["frames"] == 1 and [(r["part"], r["precision"]) for r in precision["rows"]] == [
        ("renderer", "fp32")
    ]
    assert precision["rows"][0]["generator_output"]["max"] < 1e-4  # golden A's tolerance

    bench = read(out, "bench_fp32_b2.json")
    assert bench["small_networks"] and bench["batch_size"] == 2 and bench["render_dtype"] == "fp32"
    assert [(r["enhancer"], r["frames"]) for r in bench["rows"]] == [("none", 5), ("gfpgan", 5)]
    assert all(r["fps"] > 0 for r in bench["rows"]) and "render_tflops" in bench["rows"][0]

    profile = read(out, "profile.json")
    assert [r["part"] for r in profile["rows"]] == ["renderer", "enhancer"]
    for row in profile["rows"]:
        assert row["tflops"] > 0 and row["per_second"] > 0 and 0 < len(row["kernels"]) <= 15
        shares = [k["share"] for k in row["kernels"]]
        assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0001

    assert read(out, "reference.json") == {"available": False, "reason": "reference: not available"}


@pytest.mark.slow
def test_dry_run_prints_the_summary_table_last(dry_run):
    out, proc = dry_run
    rows = read(out, "summary.json")["rows"]
    table = table_lines(proc.stdout)
    assert len(table) == len(rows) + 2  # head, rule, one line per row
    assert all(" | " in line for line in table[2:])
    cases = [r["case"] for r in rows]
    assert {
        "precision renderer fp32",
        "bench_fp32_b2 256 crop none",
        "bench_fp32_b2 256 crop gfpgan",
        "profile renderer fp32 b2",
        "profile enhancer fp32 b2",
        "reference",
    } == set(cases)


def test_without_torch_the_suite_fails_and_still_prints_the_table_last(tmp_path):
    """An interpreter that cannot import torch: the versions step runs, the missing torch is the failure, and every
    later step is reported as skipped."""
    shadow = tmp_path / "shadow" / "torch"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={shadow.parent} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    out = tmp_path / "out"
    proc = run_suite(out, "--dry-run", "--python", str(python))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    steps = read(out, "steps.json")
    assert [(s["step"], s["status"]) for s in steps] == [("versions", "ok"), ("torch", "failed")] + [
        (step, "skipped") for step in ("weights", "precision", "profile", "benchmark", "reference")
    ]
    assert read(out, "versions.json")["torch"] is None
    table = table_lines(proc.stdout)
    assert len(table) == 2 + 6 and "failed: torch is not importable" in table[2]
    assert all("skipped: no torch" in line for line in table[3:])


def test_summary_reports_a_step_that_lacked_a_module(tmp_path):
    (tmp_path / "steps.json").write_text(
        json.dumps(
            [
                {"step": "profile", "status": "skipped", "detail": "missing module gfpgan", "seconds": 3},
                {"step": "weights", "status": "ok", "detail": "", "seconds": 1},
            ]
        )
    )
    proc = subprocess.run(
        [sys.executable, *HELPER, "summary", str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    table = table_lines(proc.stdout)
    assert len(table) == 3 and "profile" in table[2] and "skipped: missing module gfpgan" in table[2]
    assert read(tmp_path, "summary.json")["steps"][0]["detail"] == "missing module gfpgan"


def test_the_reference_is_imported_from_the_checkout_on_pythonpath_only(tmp_path):
    """``bench.gpu reference`` runs the checkout's ``src.facerender`` only when Python imports it from the folder
    given with --reference, through PYTHONPATH (which gpu_suite.sh sets for that step); it never edits the path."""
    checkout, other = tmp_path / "SadTalker", tmp_path / "other"
    for folder in (checkout, other):
        (folder / "src" / "facerender").mkdir(parents=True)
    code = (
        "import sys, pathlib; from bench.gpu.reference import unavailable; "
        "print(unavailable(pathlib.Path(sys.argv[1])))"
    )

    def reason(folder, pythonpath):
        env = {**os.environ, "PYTHONPATH": pythonpath}
        return subprocess.run(
            [sys.executable, "-c", code, str(folder)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    assert reason(checkout, str(checkout)) == "None"
    assert reason(checkout, "") == (
        f"reference: not available (src.facerender is not imported from {checkout}: run "
        f"with PYTHONPATH={checkout}, as scripts/gpu_suite.sh does)"
    )
    assert "is not imported from" in reason(checkout, str(other))
    assert reason(tmp_path, str(tmp_path)) == f"reference: not available ({tmp_path} has no src/facerender)"
