"""Golden-comparison helpers: one assertion that names the stage, the max abs error and the tolerance on failure,
and a face finder that returns stored landmarks.

With ``GOLDEN_REPORT=<file>`` in the environment every comparison appends a line "stage<TAB>max abs error<TAB>
tolerance" to that file (``bench/golden_c_table.py`` turns it into the fidelity table).
"""

from __future__ import annotations

import os

import numpy as np


def assert_close(stage_name: str, actual, expected, atol: float, rtol: float = 0.0) -> float:
    """Fail with the stage's name, the max abs error and the tolerance; return the max abs error."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{stage_name}: shape {actual.shape} != golden {expected.shape}"
    error = np.abs(actual - expected)
    allowed = atol + rtol * np.abs(expected)
    worst = np.unravel_index(np.argmax(error - allowed), error.shape) if error.size else ()
    report = os.environ.get("GOLDEN_REPORT")
    if report:
        tolerance = f"atol {atol:g}" + (f" + rtol {rtol:g}" if rtol else "")
        with open(report, "a") as out:
            out.write(f"{stage_name}\t{float(error.max()) if error.size else 0.0:.3g}\t{tolerance}\n")
    assert np.all(error <= allowed), (
        f"{stage_name}: max abs error {error.max():.3g} exceeds tolerance atol={atol:g} rtol={rtol:g} "
        f"(worst at {tuple(int(i) for i in worst)}: {actual[worst]:.7g} vs golden {expected[worst]:.7g})"
    )
    return float(error.max()) if error.size else 0.0


class FixedFinder:
    """A face finder returning the given landmarks, one per call, in order; a None answer raises NoFaceDetected."""

    def __init__(self, *answers):
        self.answers = list(answers)

    def landmarks(self, image_rgb):
        from sadtalker.core.errors import NoFaceDetected

        answer = self.answers.pop(0)
        if answer is None:
            raise NoFaceDetected("none")
        return answer
