"""Print the golden scenario C fidelity table (stage, max abs error, tolerance) from the issue-15 tests.

    .venv/bin/python -m bench.golden_c_table            # the fast stages
    .venv/bin/python -m bench.golden_c_table --slow     # plus the real-size generator frames (about 30 s on CPU)

Runs the golden C tests with ``GOLDEN_REPORT`` set (tests/support/goldencheck.py records every comparison).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from tests.support import REPO_ROOT

TESTS = ["tests/fidelity/test_golden_c_camera.py", "tests/fidelity/test_golden_c_extcrop.py", "tests/fidelity/test_golden_c_refvideo.py"]


def main() -> int:
    slow = "--slow" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.tsv"
        env = {**os.environ, "GOLDEN_REPORT": str(report)}
        marker = [] if slow else ["-m", "not slow"]
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *marker, *TESTS],
                             cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        print(run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:])
        rows = {}
        for line in report.read_text().splitlines() if report.exists() else []:
            stage, error, tolerance = line.split("\t")
            if stage not in rows or float(error) > float(rows[stage][0]):
                rows[stage] = (error, tolerance)
    print("| stage | max abs error vs golden C | tolerance |")
    print("|---|---|---|")
    for stage, (error, tolerance) in rows.items():
        print(f"| {stage} | {error} | {tolerance} |")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
