"""Done when: the built wheel, installed in a fresh virtual environment, trains and benchmarks from an
empty folder with the configs it ships (no repository, no configs/ folder)."""
import os
import shutil
import site
import subprocess
import sys

import pytest

from tests.helpers.runutil import REPO, read_metrics


def _copy_sources(dst):
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", "output",
                                    "data", "download_ckpts", "wkd_cost_matrix", "benchmark_runs", "demo_runs")
    shutil.copytree(REPO, dst, ignore=ignore)


def _run(cmd, cwd, env, timeout=600):
    result = subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, "{}\n{}\n{}".format(cmd, result.stdout[-3000:], result.stderr[-3000:])
    return result


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_trains_and_benchmarks_from_an_empty_folder(tmp_path):
    src, wheels, venv, work = tmp_path / "src", tmp_path / "wheels", tmp_path / "venv", tmp_path / "work"
    _copy_sources(src)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
          str(src)], tmp_path, os.environ)
    (wheel,) = list(wheels.glob("mdistiller-*.whl"))
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path, os.environ)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = str(bindir / "python")
    # The dependencies (torch, ...) come from this interpreter's site-packages, after the new venv's own:
    # a plain .pth line adds the folder without running the .pth files there (no editable mdistiller).
    own = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                         text=True, check=True).stdout.strip()
    with open(os.path.join(own, "zz_parent_site_packages.pth"), "w") as f:
        f.write("\n".join(p for p in site.getsitepackages() if os.path.isdir(p)) + "\n")
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp_path, os.environ)

    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", PATH=str(bindir) + os.pathsep + env.get("PATH", ""))
    where = _run([python, "-c", "import mdistiller; print(mdistiller.__file__)"], work, env).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's package, not the repository's

    train = _run([str(bindir / "mdistiller-train"), "--cfg", "digits/vanilla.yaml", "SOLVER.EPOCHS", "1"], work, env)
    run = work / "demo_runs" / "digits_demo" / "vanilla,resnet8,SOLVER.EPOCHS:1"
    assert "-> ./demo_runs/digits_demo/vanilla,resnet8,SOLVER.EPOCHS:1" in train.stdout
    assert [int(r["epoch"]) for r in read_metrics(run)] == [1]
    assert (run / "student_best").is_file() and (run / "config.yaml").is_file()

    ev = _run([str(bindir / "mdistiller-eval"), "-c", str(run), "--workers", "0"], work, env)
    assert "top-1: {:.2f}".format(float(read_metrics(run)[0]["test_acc"])) in ev.stdout

    _run([str(bindir / "mdistiller-benchmark"), "--configs", "digits/vanilla.yaml", "--seeds", "0", "1",
          "--no-plots", "--name", "sweep", "SOLVER.EPOCHS", "1"], work, env, timeout=900)
    sweep = work / "benchmark_runs" / "sweep"
    assert (sweep / "results.md").is_file() and (sweep / "results.csv").is_file()
    for seed in (0, 1):
        assert len(read_metrics(sweep / "vanilla" / "seed{}".format(seed))) == 1
    assert not (work / "configs").exists()
