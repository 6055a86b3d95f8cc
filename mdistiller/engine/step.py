"""The optimisation step of a run, a strategy the trainer's loop calls once per batch.

A step owns the optimizer and the gradient scaler and everything done between a batch and updated weights:
:class:`Step` (``SOLVER.TRAINER`` base/crd: one forward, the sum of the losses backward, one optimizer step)
here, :class:`~mdistiller.engine.dot.DotStep` (``dot``: DOT's two backward passes and two momentum buffers)
in ``engine/dot.py``. The forward runs under autocast with ``SOLVER.AMP``; the losses are fp32 (the
distiller's scope), their batch means summed in fp32.
"""
from .device import autocast, grad_scaler, unwrap
from .optim import build_optimizer


class Step:
    """One forward, ``loss = Σ mean(term)`` backward (scaled under AMP), one optimizer step.

    Args:
        cfg: the run's config (``SOLVER.*``).
        distiller: the distiller, possibly inside DistributedDataParallel.
        runtime: the process's :class:`~mdistiller.engine.device.Runtime`.
    """

    def __init__(self, cfg, distiller, runtime):
        self.distiller = distiller
        self.runtime = runtime
        self.amp = bool(cfg.SOLVER.AMP)
        self.optimizer = self.build_optimizer(cfg, unwrap(distiller).get_learnable_parameters())
        self.scaler = grad_scaler(runtime.device, cfg.SOLVER.AMP)

    @staticmethod
    def build_optimizer(cfg, params):
        return build_optimizer(cfg, params)

    def forward(self, inputs, epoch):
        """``(logits, losses)`` of the distiller on ``inputs`` (the batch as its keyword arguments)."""
        with autocast(self.runtime.device, self.amp):
            return self.distiller(epoch=epoch, **inputs)

    def __call__(self, inputs, epoch):
        """Train on one batch; returns ``(logits, losses, loss)``, ``loss`` the fp32 objective."""
        self.optimizer.zero_grad(set_to_none=True)
        logits, losses = self.forward(inputs, epoch)
        loss = sum(value.float().mean() for value in losses.values())
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return logits, losses, loss
