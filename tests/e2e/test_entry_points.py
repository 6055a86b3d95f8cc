"""The command-line entry points: ``python -m mdistiller.train`` and mdistiller's ``python tools/train.py``."""
import os
import subprocess
import sys

import pytest

from mdistiller.train import main as train_main
from tests.helpers.runutil import REPO, read_metrics

VANILLA = os.path.join("configs", "digits", "vanilla.yaml")  # digits, no teacher


def _opts(prefix):
    return ["SOLVER.EPOCHS", "1", "SOLVER.BATCH_SIZE", "128", "LOG.PREFIX", str(prefix), "EXPERIMENT.DEVICE", "cpu"]


def _expected_folder(prefix, opts):
    """mdistiller's naming: LOG.PREFIX / PROJECT / TAG followed by every override except LOG.PREFIX."""
    extra = ["{}:{}".format(k, v) for k, v in zip(opts[0::2], opts[1::2]) if k != "LOG.PREFIX"]
    return os.path.join(str(prefix), "digits_demo", ",".join(["vanilla,resnet8"] + extra))


def test_train_main_names_the_run_folder_from_the_config_and_overrides(tmp_path, capsys):
    opts = _opts(tmp_path)
    summary = train_main(["--cfg", os.path.join(REPO, VANILLA)] + opts)
    assert summary["log_path"] == _expected_folder(tmp_path, opts)
    assert len(read_metrics(summary["log_path"])) == 1
    assert "-> {}".format(summary["log_path"]) in capsys.readouterr().out


@pytest.mark.slow
def test_tools_train_py_from_the_repository_root(tmp_path):
    """mdistiller's documented command, run where its users run it; then --resume of the finished run."""
    opts = _opts(tmp_path)
    env = dict(os.environ, PYTHONPATH=REPO)
    cmd = [sys.executable, os.path.join("tools", "train.py"), "--cfg", VANILLA] + opts
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = _expected_folder(tmp_path, opts)
    assert "-> {}".format(run) in result.stdout
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1]
    again = subprocess.run(cmd[:2] + ["--resume"] + cmd[2:], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_metrics(run) == rows
    assert "resumed from epoch 1" in open(os.path.join(run, "worklog.txt")).read()
