"""torchrun with two CPU processes (gloo): one run, metrics over the whole test split."""
import os
import subprocess
import sys

import pytest

from mdistiller.eval import main as evaluate
from tests.helpers.runutil import REPO, read_metrics, tiny_opts


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    opts = tiny_opts(tmp_path, epochs=1, batch=128, size=32) + ["DISTILLER.TYPE", "NONE", "DISTILLER.STUDENT", "resnet8",
                                                       "EXPERIMENT.TAG", "ddp"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mdistiller.train"] + opts
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = next(tmp_path.glob("*/ddp*"))
    rows = read_metrics(str(run))
    assert len(rows) == 1
    env_info = (run / "env.json").read_text()
    assert '"world_size": 2' in env_info
    # The logged test accuracy is over the whole test split (all-reduced over the two shards):
    # evaluating the saved student in one process gives the same number.
    top1, top5, loss = evaluate(["-m", "resnet8", "-c", str(run / "student_latest"), "-d", "digits",
                                 "--device", "cpu", "--workers", "0"])
    assert top1 == pytest.approx(float(rows[0]["test_acc"]), abs=1e-9)
    assert loss == pytest.approx(float(rows[0]["test_loss"]), rel=1e-5)
