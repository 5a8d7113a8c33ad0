"""Print the table of refused inputs: each row of ``tests/test_handler.py``'s BAD_INPUTS run through the handler.

The pipeline is the tests' double (it writes a small real MP4), so no model is needed; address refusals happen
when the host is resolved, before any connection. Output: a Markdown table (case, error_type, error message).

    .venv/bin/python -m bench.bad_inputs_table
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import handler
from tests import test_handler  # BAD_INPUTS and the pipeline double

MESSAGE_CHARS = 110


def run_row(job_input: object, env: dict[str, str]) -> dict[str, Any]:
    """Run one case through the handler with its environment variables set, then restore the environment."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        job = {"id": "bad-input"} if job_input == "NO_INPUT" else {"id": "bad-input", "input": job_input}
        result: dict[str, Any] = handler.handler(job)
        return result
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def use_pipeline_double() -> None:
    """The handler as the tests run it: no storage settings, the pipeline double, no progress updates."""
    for name in test_handler.R2_ENV + ("ALLOW_LOOPBACK_URLS",):
        os.environ.pop(name, None)
    sys.modules["sadtalker.pipeline"] = test_handler.PipelineDouble().as_module()
    handler._BUNDLE = "pipeline double"
    handler._send_progress = lambda job, payload: None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bad_inputs_table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    use_pipeline_double()
    rows, mismatches = [], 0
    for number, (case, job_input, expected, env) in enumerate(test_handler.BAD_INPUTS, start=1):
        result = run_row(job_input, env)
        got = result.get("error_type", "(success)")
        mismatches += got != expected
        message = result.get("error", "").replace("|", "\\|")
        short = message if len(message) <= MESSAGE_CHARS else message[: MESSAGE_CHARS - 3] + "..."
        flag = "" if got == expected else f" (expected {expected})"
        rows.append(f"| {number} | {case.replace('|', '/')} | `{got}`{flag} | {short} |")
    sys.stdout.write("| # | input | error_type | error |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
    sys.stdout.write(f"\n{len(rows)} inputs, {mismatches} with an unexpected error_type\n")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
