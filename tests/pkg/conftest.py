"""The wheel, built once per session from this checkout's files (for the packaging and installed-CLI tests)."""
import shutil
import subprocess
import sys

import pytest

from tests.helpers.runutil import REPO

# build artefacts and local data, never part of a source tree that is packaged
IGNORED = (".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", "output", "data", "download_ckpts",
           "wkd_cost_matrix", "benchmark_runs", "demo_runs")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory):
    """Path of ``mdistiller-*.whl`` built from a copy of the sources (tracked files and new ones, no artefacts)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO, str(src), symlinks=True, ignore=shutil.ignore_patterns(*IGNORED))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(root / "wheels"), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = list((root / "wheels").glob("mdistiller-*.whl"))
    return path
