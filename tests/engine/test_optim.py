"""Optimizer and learning-rate schedule."""
import pytest
import torch

from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.optim import build_optimizer, learning_rate, set_learning_rate


def test_learning_rate_schedules():
    cfg = get_cfg(None, ["SOLVER.LR", "0.1", "SOLVER.LR_DECAY_STAGES", "[2, 4]", "SOLVER.EPOCHS", "10"])
    assert [round(learning_rate(cfg, e), 10) for e in (1, 2, 3, 4, 5)] == [0.1, 0.1, 0.01, 0.01, 0.001]
    cfg = get_cfg(None, ["SOLVER.LR", "0.1", "SOLVER.LR_SCHEDULER", "cosine", "SOLVER.EPOCHS", "10"])
    assert learning_rate(cfg, 1) == pytest.approx(0.1)
    assert learning_rate(cfg, 6) == pytest.approx(0.05)


def test_unknown_schedule_or_optimizer_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid: step, cosine"):
        learning_rate(get_cfg(None, ["SOLVER.LR_SCHEDULER", "linear"]), 1)
    with pytest.raises(ValueError, match="valid: SGD"):
        build_optimizer(get_cfg(None, ["SOLVER.TYPE", "Adam"]), [torch.nn.Parameter(torch.zeros(1))])


def test_sgd_takes_the_solver_settings_and_the_epoch_lr():
    cfg = get_cfg(None, ["SOLVER.LR", "0.2", "SOLVER.MOMENTUM", "0.8", "SOLVER.WEIGHT_DECAY", "0.001",
                         "SOLVER.NESTEROV", "True"])
    optimizer = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))])
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.2, 0.8, 0.001, True)
    set_learning_rate(optimizer, 0.01)
    assert all(g["lr"] == 0.01 for g in optimizer.param_groups)


def test_warmup_ramps_the_lr_over_the_first_iterations_of_the_run(tmp_path, monkeypatch):
    from mdistiller.engine.optim import warmup_factor
    from mdistiller.engine.trainer import Trainer
    from tests.helpers.runutil import tiny_cfg

    cfg = get_cfg(None, ["SOLVER.WARMUP_ITERS", "4", "SOLVER.WARMUP_FACTOR", "0.2"])
    assert [warmup_factor(cfg, s) for s in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    # the trainer sets it per step, counting the steps of the epochs before (3 per epoch here), and the epoch's LR after
    trainer = Trainer(tiny_cfg(tmp_path, batch=100, per_class=30, SOLVER__LR=0.5, SOLVER__WARMUP_ITERS=4,
                               SOLVER__WARMUP_FACTOR=0.2), str(tmp_path / "run"))
    seen = []
    monkeypatch.setattr(trainer, "train_step", lambda *args: seen.append(trainer.step.optimizer.param_groups[0]["lr"]))
    monkeypatch.setattr(trainer, "evaluate", lambda: {"test_acc": 0.0, "test_acc_top5": 0.0, "test_loss": 0.0})
    for epoch in (1, 2):
        trainer.train_epoch(epoch)
    trainer.logger.close()
    assert seen == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.5])
