"""Print the golden scenario C fidelity table (stage, max abs error, tolerance) from the golden C tests
(``tests/fidelity/test_golden_c_*.py``).

    .venv/bin/python -m bench.golden_c_table            # the fast stages
    .venv/bin/python -m bench.golden_c_table --slow     # plus the real-size generator frames (about 30 s on CPU)

Runs the golden C tests with ``GOLDEN_REPORT`` set (tests/support/goldencheck.py records every comparison).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.support import REPO_ROOT

TESTS = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "tests" / "fidelity").glob("test_golden_c_*.py"))


def run_tests(slow: bool) -> tuple[int, dict[str, tuple[str, str]]]:
    """pytest's exit status over :data:`TESTS` and, per stage, the largest error recorded with its tolerance."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.tsv"
        env = {**os.environ, "GOLDEN_REPORT": str(report)}
        marker = [] if slow else ["-m", "not slow"]
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *marker, *TESTS],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        print(run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:])
        rows: dict[str, tuple[str, str]] = {}
        for line in report.read_text().splitlines() if report.exists() else []:
            stage, error, tolerance = line.split("\t")
            if stage not in rows or float(error) > float(rows[stage][0]):
                rows[stage] = (error, tolerance)
    return run.returncode, rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.golden_c_table", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slow", action="store_true", help="also the tests marked slow (real-size generator frames)")
    args = parser.parse_args(argv)
    code, rows = run_tests(args.slow)
    print("| stage | max abs error vs golden C | tolerance |")
    print("|---|---|---|")
    for stage, (error, tolerance) in rows.items():
        print(f"| {stage} | {error} | {tolerance} |")
    return code


if __name__ == "__main__":
    sys.exit(main())
