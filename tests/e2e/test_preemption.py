"""SIGTERM / SIGUSR2 (a SLURM preemption or time limit) stop a run after its current step, with `latest` intact:
resumed, it ends exactly as an uninterrupted run; stopped before its first checkpoint, it leaves nothing behind."""
import os
import signal

import pytest
import torch

from mdistiller import train as train_cli
from mdistiller._cli import EXIT_REQUEUE
from mdistiller.engine import trainer as trainer_module
from mdistiller.engine.checkpoint import load_checkpoint
from mdistiller.engine.trainer import TrainingInterrupted, train
from tests.helpers.runutil import read_metrics, tiny_cfg, tiny_opts

# two epochs of 5 steps (300 images, batch 64); the step LR decay makes epoch 2 differ from epoch 1
OPTS = dict(epochs=2, DISTILLER__STUDENT="resnet8", SOLVER__LR_SCHEDULER="step", SOLVER__LR_DECAY_STAGES="[1]")


def signal_at(monkeypatch, number, epoch, iteration):
    """Send ``number`` to this process right after training step (epoch, iteration), as SLURM would at any time."""
    step = trainer_module.Trainer.train_step

    def train_step(self, batch, at_epoch, at_iteration, meters):
        step(self, batch, at_epoch, at_iteration, meters)
        if (at_epoch, at_iteration) == (epoch, iteration):
            os.kill(os.getpid(), number)

    monkeypatch.setattr(trainer_module.Trainer, "train_step", train_step)


def test_sigterm_stops_after_the_step_and_the_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    reference = train(tiny_cfg(tmp_path / "ref", **OPTS), str(tmp_path / "ref" / "run"))
    run_dir = str(tmp_path / "run")
    handler = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as patch:
        signal_at(patch, signal.SIGTERM, epoch=2, iteration=1)
        with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM during epoch 2") as stopped:
            train(tiny_cfg(tmp_path, **OPTS), run_dir)
    assert (stopped.value.epoch, stopped.value.latest) == (2, os.path.join(run_dir, "latest"))
    assert signal.getsignal(signal.SIGTERM) == handler  # the trainer's handler is gone with the run
    assert load_checkpoint(os.path.join(run_dir, "latest"))["epoch"] == 1  # the abandoned epoch left no trace
    assert len(read_metrics(run_dir)) == 1
    summary = train(tiny_cfg(tmp_path, **OPTS), run_dir, resume=True)
    assert read_metrics(run_dir) == read_metrics(reference["log_path"])
    assert summary["last_acc"] == reference["last_acc"]
    ours, theirs = (load_checkpoint(os.path.join(d, "student_latest"))["model"] for d in (run_dir,
                                                                                          reference["log_path"]))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_a_time_limit_in_the_first_epoch_exits_75_and_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    """SIGUSR2 before any checkpoint: the command says so in one line and exits with EXIT_REQUEUE (the runner reads
    it as interrupted, not failed); the run folder it had created is removed (the next attempt starts anew)."""
    monkeypatch.chdir(tmp_path)
    signal_at(monkeypatch, signal.SIGUSR2, epoch=1, iteration=0)
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(["DISTILLER.TYPE", "NONE"] + tiny_opts("out", epochs=2))
    assert exit_info.value.code == EXIT_REQUEUE == 75
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("mdistiller-train: stopped by SIGUSR2 during epoch 1: no epoch had finished")
    assert os.listdir(str(tmp_path)) == []
