"""The images install ldrt from a wheel (docker/Dockerfile*: copy a few paths, `pip install .`),
while the tests and `ldrt demo` run from an editable install that reads every file in place. A
file the code reads that pyproject.toml does not list (a migration, a DeepSpeed config) is in
every test run and missing from every image. So: build the wheel from exactly what the
Dockerfiles copy, check that it carries every file of the packages, and run it from a folder
with no checkout in it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile*"))
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGES = sorted(
    p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
)
NOT_SHIPPED = shutil.ignore_patterns("__pycache__", "*.pyc")

pytestmark = pytest.mark.slow


def copied(dockerfile: Path) -> set[str]:
    """The paths of the build context that a Dockerfile's COPY lines take."""
    sources: set[str] = set()
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources.update(w.rstrip("/") for w in words[1:-1] if not w.startswith("--"))
    return sources


def python(*args: str, **options: Any) -> str:
    """`python ARGS` with this interpreter: its output, once it has exited 0."""
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, **options)
    assert done.returncode == 0, done.stderr
    return done.stdout


def pip(*args: str) -> None:
    """pip, offline, without dependencies (the test environment has them)."""
    python("-m", "pip", *args, "--no-deps", "--no-index", "--quiet")


def source_files() -> set[str]:
    """Every file of the packages in the checkout, as a wheel names it."""
    return {
        path.relative_to(REPO).as_posix()
        for package in PACKAGES
        for path in (REPO / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip install .` builds in the image, from the paths docker/Dockerfile copies."""
    context = tmp_path_factory.mktemp("context")
    for name in copied(REPO / "docker" / "Dockerfile"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=NOT_SHIPPED)
        else:
            shutil.copy2(source, context / name)
    out = tmp_path_factory.mktemp("wheel")
    pip("wheel", "--no-build-isolation", "--wheel-dir", str(out), str(context))
    (found,) = out.glob("ldrt-*.whl")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_each_dockerfile_copies_every_package_the_wheel_needs(dockerfile: Path) -> None:
    assert {"pyproject.toml", "README.md", *PACKAGES} <= copied(dockerfile)


def test_the_wheel_carries_every_file_of_the_packages(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert source_files() - names == set()  # e.g. a new data file pyproject.toml does not list
    assert re.search(r"^ldrt = flows\.cli:main$", scripts, re.M)
    assert re.search(r"^ldrt-deploy = deployments\.deploy:ldrt_deploy_main$", scripts, re.M)


def test_the_installed_wheel_migrates_and_finds_its_data_away_from_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    pip("install", "--target", str(target), str(wheel))
    run = tmp_path / "run"
    run.mkdir()
    # PYTHONPATH comes before the editable install's finder, so these imports are the wheel's.
    env = {**os.environ, "PYTHONPATH": str(target), "LDRT_HOME": str(run / ".ldrt")}
    env.pop("LDRT_DB_URL", None)
    probe = (
        "import json, flows.pipeline, flows.retraining, deployments.deploy, ldrt_core;"
        "from ldrt_core.train.runs import deepspeed_config_path;"
        "print(json.dumps([ldrt_core.__file__, flows.pipeline.__file__,"
        " json.load(open(deepspeed_config_path('zero3')))['zero_optimization']['stage']]))"
    )
    imported = python("-c", probe, cwd=run, env=env)
    core, pipeline, zero_stage = json.loads(imported.strip().splitlines()[-1])
    assert Path(core).is_relative_to(target) and Path(pipeline).is_relative_to(target)
    assert zero_stage == 3
    python("-m", "flows.cli", "db", "upgrade", cwd=run, env=env)
    current = python("-m", "flows.cli", "db", "current", cwd=run, env=env)
    # The checkout's newest migration is the wheel's head, and the database is at it.
    versions = (REPO / "ldrt_core/db/migrations/versions").glob("*.py")
    newest = max(re.findall(r'^revision = "(\w+)"', "".join(p.read_text() for p in versions), re.M))
    assert re.search(rf"current: {newest}\s+head: {newest}\b", current), current
