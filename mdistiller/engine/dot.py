"""Distillation-Oriented Trainer (Zhao et al., "DOT: A Distillation-Oriented Trainer", ICCV 2023).

SGD with two momentum buffers per parameter: one for the gradient of the task
loss (cross-entropy) with momentum ``μ − Δ``, one for the gradient of the
distillation loss with momentum ``μ + Δ`` (Section 3.2, Eq. 5-6). A step takes
both gradients, from two backward passes over the same forward. The update
rules follow mdistiller's ``engine/dot.py`` exactly, including its treatment of
parameters that receive only one of the two gradients:

* task gradient ``g`` (plus weight decay ``wd·θ``): buffer ``b ← m·b + g`` where
  ``m = μ − Δ`` when the parameter also has a distillation gradient, else the
  mean ``((μ − Δ) + (μ + Δ)) / 2 = μ``; ``θ ← θ − lr·b``;
* distillation gradient ``k``: buffer ``c ← (μ + Δ)·c + k`` when the parameter
  also has a task gradient (no weight decay: the task side carries it), else
  ``c ← μ·c + (k + wd·θ)``; ``θ ← θ − lr·c``;
* a buffer's first value is the gradient itself (as ``torch.optim.SGD``), and
  on that first step the distillation side adds no weight decay.

``SOLVER.TRAINER`` names that run it: mdistiller's ``dot`` and ``crd_dot`` (its CRD data variant; here the
data variant follows the distiller, as for ``base`` / ``crd``). :class:`DotStep` is the trainer's step with this
optimizer: it owns the distillation/task split of the losses, the gradient scaler's internals under AMP and
the explicit gradient averaging under DDP.
"""
import contextlib

import torch

from .device import unwrap
from .optim import sgd_settings
from .step import Step


class DistillationOrientedSGD(torch.optim.Optimizer):
    """``step_kd()`` after the distillation backward, then ``step()`` after the task backward.

    Args:
        params: the learnable parameters (one group).
        lr: learning rate.
        momentum: the base momentum μ (``SOLVER.MOMENTUM``).
        delta: Δ (``SOLVER.DOT.DELTA``): task momentum μ − Δ, distillation momentum μ + Δ.
        weight_decay: L2 penalty added to the gradients as described above.
    """

    def __init__(self, params, lr, momentum, delta, weight_decay=0.0):
        if not (0.0 <= momentum - delta and momentum + delta < 1.0):
            raise ValueError("SOLVER.DOT.DELTA {} puts a momentum outside [0, 1) around {}".format(delta, momentum))
        defaults = dict(lr=lr, momentum=momentum, delta=delta, weight_decay=weight_decay)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("DistillationOrientedSGD takes one parameter group")
        self._kd_grads = None

    def load_state_dict(self, state_dict):
        """Load this optimizer's state, or mdistiller's ``DistillationOrientedTrainer`` state (its DOT ``latest``).

        mdistiller's parameter group stores the two momenta, ``momentum`` = μ − Δ and ``momentum_kd`` = μ + Δ,
        and ``dampening`` (0; any other value is refused: its updates are not this optimizer's); this one
        stores μ and Δ. The per-parameter buffers (``momentum_buffer``, ``momentum_kd_buffer``) have the same
        names and meaning in both, so only the groups are converted.
        """
        groups = state_dict["param_groups"]
        if any("momentum_kd" in group for group in groups):
            converted = []
            for group in groups:
                group = dict(group)
                m_task, m_kd = group.pop("momentum"), group.pop("momentum_kd")
                dampening = group.pop("dampening", 0)
                if dampening:
                    raise ValueError("an mdistiller DOT checkpoint with dampening {} cannot be continued here "
                                     "(DistillationOrientedSGD has no dampening)".format(dampening))
                group["momentum"], group["delta"] = (m_task + m_kd) / 2.0, (m_kd - m_task) / 2.0
                converted.append(group)
            state_dict = dict(state_dict, param_groups=converted)
        super().load_state_dict(state_dict)

    @torch.no_grad()
    def step_kd(self):
        """Record the distillation gradients currently in ``.grad`` (call ``zero_grad`` before the task backward)."""
        self._kd_grads = {p: p.grad.clone() for p in self.param_groups[0]["params"] if p.grad is not None}

    @torch.no_grad()
    def step(self, closure=None):
        if self._kd_grads is None:
            raise RuntimeError("DistillationOrientedSGD.step() needs step_kd() first")
        group = self.param_groups[0]
        lr, wd = group["lr"], group["weight_decay"]
        m_task, m_kd = group["momentum"] - group["delta"], group["momentum"] + group["delta"]
        m_mean = (m_task + m_kd) / 2.0
        kd_grads, self._kd_grads = self._kd_grads, None
        task_params = [p for p in group["params"] if p.grad is not None]
        task_set = set(task_params)
        for p in task_params:
            grad = p.grad.add(p, alpha=wd) if wd != 0 else p.grad
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.clone()
            else:
                buf.mul_(m_task if p in kd_grads else m_mean).add_(grad)
            p.add_(buf, alpha=-lr)
        for p, grad in kd_grads.items():
            state = self.state[p]
            buf = state.get("momentum_kd_buffer")
            if buf is None:
                buf = state["momentum_kd_buffer"] = grad.clone()
            elif p in task_set:
                buf.mul_(m_kd).add_(grad)
            else:
                if wd != 0:
                    grad = grad.add(p, alpha=wd)
                buf.mul_(m_mean).add_(grad)
            p.add_(buf, alpha=-lr)
        return None


class DotStep(Step):
    """DOT's step: one forward; distillation terms backward, ``step_kd``; the task's terms (cross-entropy; a
    detector's four losses) backward, ``step``.

    With AMP both losses are scaled; each gradient set is unscaled as it is produced and an inf/NaN
    in either makes the scaler skip the step and lower its scale. Under DDP both backward passes run
    without DDP's hooks and each gradient set is averaged over the processes explicitly.
    """

    @staticmethod
    def build_optimizer(cfg, params):
        """:class:`DistillationOrientedSGD` with ``SOLVER.LR``, ``MOMENTUM``, ``WEIGHT_DECAY`` and ``SOLVER.DOT.DELTA``
        (no Nesterov variant: ``SOLVER.NESTEROV True`` is an error)."""
        settings = sgd_settings(cfg)
        if cfg.SOLVER.NESTEROV:
            raise ValueError("SOLVER.TRAINER {} has no Nesterov variant; set SOLVER.NESTEROV False".format(
                cfg.SOLVER.TRAINER))
        return DistillationOrientedSGD(params, delta=cfg.SOLVER.DOT.DELTA, **settings)

    def __call__(self, inputs, epoch):
        opt, scaler = self.optimizer, self.scaler
        opt.zero_grad(set_to_none=True)
        distributed = self.runtime.distributed
        sync = self.distiller.no_sync() if distributed else contextlib.nullcontext()
        with sync:
            logits, losses = self.forward(inputs, epoch)
            task_keys = unwrap(self.distiller).task_loss_keys
            ce = sum(losses[key].float().mean() for key in task_keys)
            kd_terms = [value.float().mean() for key, value in losses.items() if key not in task_keys]
            kd = sum(kd_terms) if kd_terms else ce.new_zeros(())
            loss = ce + kd if kd_terms else ce
            kd_inf = None
            if kd.requires_grad:
                scaler.scale(kd).backward(retain_graph=True)
            if distributed:
                self._average_gradients()
            if scaler.is_enabled():
                kd_inf = self._unscale_inplace()
            opt.step_kd()
            opt.zero_grad(set_to_none=True)
            scaler.scale(ce).backward()
        if distributed:
            self._average_gradients()
        if kd_inf is not None:
            # An inf/NaN among the distillation gradients poisons one task gradient, so that the scaler's
            # own check (unscale_ in step) skips this step and lowers the scale.
            grads = [p.grad for p in opt.param_groups[0]["params"] if p.grad is not None]
            if grads:
                grads[0].view(-1)[:1].masked_fill_(kd_inf > 0, float("inf"))
        scaler.step(opt)
        scaler.update()
        return logits, losses, loss

    def _unscale_inplace(self):
        """Divide the current gradients by the scaler's scale; returns a device flag (> 0: inf/NaN found)."""
        found = torch.zeros(1, device=self.runtime.device)
        inv_scale = self.scaler._scale.double().reciprocal().float()  # as GradScaler.unscale_ computes it
        grads = [p.grad for p in self.optimizer.param_groups[0]["params"] if p.grad is not None]
        if grads:
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found, inv_scale)
        return found

    def _average_gradients(self):
        """All-reduce (mean) the gradients of the learnable parameters; a parameter with a gradient on some
        process only counts as zero elsewhere (as DDP treats unused parameters)."""
        dist = torch.distributed
        params = self.optimizer.param_groups[0]["params"]
        present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=self.runtime.device)
        dist.all_reduce(present, op=dist.ReduceOp.MAX)
        world = float(self.runtime.world_size)
        for p, has in zip(params, present.tolist()):
            if not has:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)
