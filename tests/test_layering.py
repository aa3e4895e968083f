"""ARCHITECTURE.md's layering: the domain never imports the orchestration layers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("prefect", "flows", "tasks")

pytestmark = pytest.mark.unit


def test_ldrt_core_sources_import_no_orchestration() -> None:
    offenders = []
    for path in sorted((REPO / "ldrt_core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN
            ]
    assert offenders == []


def test_importing_all_of_ldrt_core_loads_no_prefect() -> None:
    code = (
        "import importlib, pkgutil, sys, ldrt_core\n"
        "for m in pkgutil.walk_packages(ldrt_core.__path__, 'ldrt_core.'):\n"
        "    if '.migrations' not in m.name: importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('prefect', 'flows', 'tasks'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
