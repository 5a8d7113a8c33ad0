"""Print the table of refused inputs: each row of ``tests/test_handler.py``'s BAD_INPUTS run through the handler.

The pipeline is the tests' double (it writes a small real MP4), so no model is needed; address refusals happen
when the host is resolved, before any connection. Output: a Markdown table (case, error_type, error message).

    .venv/bin/python -m bench.bad_inputs_table
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from tests.support import REPO_ROOT

MESSAGE_CHARS = 110


def load_test_module():
    """tests/test_handler.py, imported by path (tests/ is not a package)."""
    sys.path.insert(0, str(REPO_ROOT))
    sys.path.insert(0, str(REPO_ROOT / "tests"))  # the helpers test_handler imports (mediacheck, workerproc)
    spec = importlib.util.spec_from_file_location("test_handler", REPO_ROOT / "tests" / "test_handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_row(module, handler, job_input, env):
    """Run one case with its environment variables set, then restore the environment."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        job = {"id": "bad-input"} if job_input == "NO_INPUT" else {"id": "bad-input", "input": job_input}
        return handler.handler(job)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main() -> int:
    module = load_test_module()
    handler = module.handler
    for name in module.R2_ENV + ("ALLOW_LOOPBACK_URLS",):
        os.environ.pop(name, None)
    sys.modules["sadtalker.pipeline"] = module.PipelineDouble().as_module()
    handler._BUNDLE = "pipeline double"
    handler._send_progress = lambda job, payload: None
    rows, mismatches = [], 0
    for number, (case, job_input, expected, env) in enumerate(module.BAD_INPUTS, start=1):
        result = run_row(module, handler, job_input, env)
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
