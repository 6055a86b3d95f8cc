"""A run killed with SIGKILL and resumed with --resume ends exactly as an uninterrupted one."""
import os
import subprocess
import sys
import time

import pytest
import torch

from mdistiller.engine.checkpoint import load_checkpoint
from tests.helpers.runutil import REPO, read_metrics, tiny_opts

TRAIN = [sys.executable, "-m", "mdistiller.train"]
EPOCHS = 2  # killed after its first checkpoint, the run resumes into a second epoch with a decayed LR


def _train_cmd(prefix, epochs, teacher, extra=(), opts_extra=()):
    opts = tiny_opts(prefix, epochs=epochs, batch=128) + list(opts_extra) + [
        "DISTILLER.TYPE", "KD", "DISTILLER.STUDENT", "resnet8", "DISTILLER.TEACHER", "resnet8",
        "DISTILLER.TEACHER_CKPT", teacher, "EXPERIMENT.TAG", "resume", "SOLVER.LR_DECAY_STAGES", "[1]",
        "SOLVER.LR_SCHEDULER", "step",
    ]
    return TRAIN + list(extra) + opts


# digits trains on the batched data path by default, and DOT keeps two momentum buffers in the optimizer
# state: this run covers both. Plain SGD runs are killed and resumed in tests/bench (test_sweep, test_slurm),
# whose tables must equal uninterrupted sweeps'.
@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path, teacher_ckpt):
    opts_extra = ("SOLVER.TRAINER", "dot")
    env = dict(os.environ, PYTHONPATH=REPO)
    # Uninterrupted reference, in a subprocess like the resumed one (same thread settings).
    subprocess.run(_train_cmd(tmp_path / "ref", EPOCHS, teacher_ckpt, opts_extra=opts_extra), check=True, env=env,
                   capture_output=True)
    ref_dir = next((tmp_path / "ref").glob("*/*"))

    log = open(tmp_path / "killed_run.log", "w")
    proc = subprocess.Popen(_train_cmd(tmp_path / "kill", EPOCHS, teacher_ckpt, opts_extra=opts_extra), env=env, stdout=log, stderr=log)
    deadline = time.time() + 300
    latest = None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "kill").glob("*/*/latest"))
        if found:
            latest = found[0]
            break
        time.sleep(0.05)
    assert latest is not None and proc.poll() is None, (tmp_path / "killed_run.log").read_text()[-2000:]
    proc.kill()  # SIGKILL: no cleanup, like a crash or a pre-empted job
    proc.wait()
    killed_at = load_checkpoint(str(latest))["epoch"]
    assert killed_at < EPOCHS
    subprocess.run(_train_cmd(tmp_path / "kill", EPOCHS, teacher_ckpt, ["--resume"], opts_extra), check=True, env=env,
                   capture_output=True)
    kill_dir = latest.parent
    assert read_metrics(kill_dir) == read_metrics(ref_dir)
    a = load_checkpoint(str(ref_dir / "student_latest"))["model"]
    b = load_checkpoint(str(kill_dir / "student_latest"))["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert "resumed from epoch {}".format(killed_at) in (kill_dir / "worklog.txt").read_text()
