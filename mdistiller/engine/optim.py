"""Optimizer and learning-rate schedule of a run (``SOLVER.*``)."""
import math

import torch


def learning_rate(cfg, epoch):
    """LR for a 1-based epoch: mdistiller's step decay, or cosine annealing to ``SOLVER.LR_MIN``.

    step:   ``LR · LR_DECAY_RATE^k``, k = number of ``LR_DECAY_STAGES`` strictly below ``epoch``
    cosine: ``LR_MIN + (LR − LR_MIN) · (1 + cos(π (epoch − 1) / EPOCHS)) / 2`` — torch's
    ``CosineAnnealingLR(T_max=EPOCHS, eta_min=LR_MIN)`` stepped once per epoch.
    """
    if cfg.SOLVER.LR_SCHEDULER == "cosine":
        lr_min = cfg.SOLVER.LR_MIN
        return lr_min + 0.5 * (cfg.SOLVER.LR - lr_min) * (1 + math.cos(math.pi * (epoch - 1) / cfg.SOLVER.EPOCHS))
    if cfg.SOLVER.LR_SCHEDULER != "step":
        raise ValueError("Unknown SOLVER.LR_SCHEDULER {!r}; valid: step, cosine".format(cfg.SOLVER.LR_SCHEDULER))
    steps = sum(epoch > stage for stage in cfg.SOLVER.LR_DECAY_STAGES)
    return cfg.SOLVER.LR * cfg.SOLVER.LR_DECAY_RATE**steps


def warmup_factor(cfg, step):
    """The LR multiplier at the run's ``step``-th iteration (0-based) of ``SOLVER.WARMUP_ITERS`` linear warm-up:
    ``f + (1 − f) · step / WARMUP_ITERS``, f = ``SOLVER.WARMUP_FACTOR``, and 1 from ``WARMUP_ITERS`` on
    (Detectron2's ``WarmupMultiStepLR``, ``linear``)."""
    iters = int(cfg.SOLVER.WARMUP_ITERS)
    if step >= iters:
        return 1.0
    alpha = step / iters
    return cfg.SOLVER.WARMUP_FACTOR * (1.0 - alpha) + alpha


def set_learning_rate(optimizer, lr):
    """Set ``lr`` on every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def sgd_settings(cfg):
    """``lr``, ``momentum``, ``weight_decay`` of ``SOLVER.TYPE`` SGD (the one optimizer type) from ``SOLVER.*``."""
    if cfg.SOLVER.TYPE != "SGD":
        raise ValueError("Unknown SOLVER.TYPE {!r}; valid: SGD".format(cfg.SOLVER.TYPE))
    return dict(lr=cfg.SOLVER.LR, momentum=cfg.SOLVER.MOMENTUM, weight_decay=cfg.SOLVER.WEIGHT_DECAY)


def build_optimizer(cfg, params):
    """``SOLVER.TYPE`` SGD with ``SOLVER.LR``, ``MOMENTUM``, ``WEIGHT_DECAY``, ``NESTEROV`` (the plain step's; DOT's
    optimizer is :meth:`mdistiller.engine.dot.DotStep.build_optimizer`)."""
    return torch.optim.SGD(params, nesterov=cfg.SOLVER.NESTEROV, **sgd_settings(cfg))
