"""The package map in sadtalker/__init__.py holds: each package imports only packages below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sadtalker

PACKAGE = Path(sadtalker.__file__).resolve().parent
# Rank of each top-level part of the package; a module may import parts of lower rank (and its own part).
RANKS = {
    "core": 0,
    "face": 1,
    "motion": 1,
    "render": 1,
    "enhance": 1,
    "output": 1,
    "kernels": 2,
    "weights": 3,
    "worker": 4,
    "bundle": 5,
    "pipeline": 6,
}


def part_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_parts(path: Path) -> set:
    """Top-level parts of ``sadtalker`` imported anywhere in the module (function-level imports included)."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "sadtalker" and len(pieces) > 1 and pieces[1] in RANKS:
                parts.add(pieces[1])
    return parts


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_belongs_to_a_part_of_the_map():
    assert {part_of(p) for p in MODULES} == set(RANKS)
    for part in RANKS:
        assert f"``{part}" in sadtalker.__doc__, f"{part} is missing from the map in sadtalker/__init__.py"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_part_above_it_or_beside_it(path):
    own = part_of(path)
    wrong = {part for part in imported_parts(path) - {own} if RANKS[part] >= RANKS[own]}
    assert not wrong, f"{path.relative_to(PACKAGE)} ({own}) imports {sorted(wrong)}, which are not below it"


def test_network_modules_do_no_file_io():
    """Networks are pure: weight files are opened by sadtalker/weights/loader.py only."""
    opening = ("torch.load", "safe_open", "load_file", "shape_predictor(", "open(")
    for path in MODULES:
        if path.relative_to(PACKAGE).parts[0] in {"face", "motion", "render", "enhance", "kernels"}:
            text = path.read_text()
            assert not any(call in text for call in opening), f"{path.relative_to(PACKAGE)} opens a file"
