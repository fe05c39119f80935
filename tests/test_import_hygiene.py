"""Read-only commands import no OpenCV, scipy, numpy or TFLite runtime (`python -X importtime` tells), answer
quickly, and there is no import cycle between the packages of the data path."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("cv2", "scipy", "numpy", "tflite_runtime", "ai_edge_litert", "tensorflow", "aiohttp", "av")


def imported_modules(*args: str, cwd: Path) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "edgecam", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-2000:]
    return {m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", result.stderr, re.M)}


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        ["models", "list", "--model-dir", "{tmp}"],
        ["models", "verify", "--model-dir", "{tmp}"],
        ["models", "fetch", "coco_labels", "--model-dir", "{tmp}"],
        ["check-config", str(REPO / "config.yaml")],
        ["password", "--help"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_read_only_commands_import_nothing_heavy(args, tmp_path):
    modules = imported_modules(*(a.format(tmp=tmp_path) for a in args), cwd=tmp_path)
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, f"`edgecam {' '.join(args)}` imported {heavy[:8]}"


def test_version_prints_the_version():
    from edgecam import __version__

    result = subprocess.run([sys.executable, "-m", "edgecam", "--version"], capture_output=True, text=True)
    assert result.stdout.strip() == f"edgecam {__version__}"


def test_the_tracker_needs_only_numpy_and_scipy():
    code = "import sys, edgecam.track as t; t.make_tracker(15.0); print(sorted(m for m in sys.modules if m.startswith(('cv2', 'aiohttp'))))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def package_imports() -> dict[str, set[str]]:
    """Which top-level packages of edgecam each package imports at module level (TYPE_CHECKING aside)."""
    edges: dict[str, set[str]] = {}
    for path in (REPO / "edgecam").rglob("*.py"):
        rel = path.relative_to(REPO / "edgecam").parts
        if len(rel) < 2:
            continue
        package = rel[0]
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: lazy imports inside functions do not make a cycle
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgecam."):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("edgecam.")]
            for name in names:
                target = name.split(".")[1]
                if target != package and (REPO / "edgecam" / target).is_dir():
                    edges.setdefault(package, set()).add(target)
    return edges


def test_no_import_cycle_between_packages():
    edges = package_imports()
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " → ".join([*path, node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            visit(nxt, [*path, node])
        state[node] = 2
        order.append(node)

    for package in sorted(edges):
        visit(package, [])
    # the data path flows one way: nothing upstream imports the app that wires it
    assert "app" not in set().union(*(edges[p] for p in edges if p != "app"))
